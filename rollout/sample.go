package rollout

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/wire"
)

// A sample is a set of a stream's recorded frames spread evenly over a window, for work
// that needs the stream's own pictures but not all of them: `diplip fn quantize`
// calibrates an INT8 model on them and checks it on others from the same window.

// SampleRequest asks for N frames of Stream between From and To (RFC 3339; default the
// whole retained window).
type SampleRequest struct {
	Stream   string
	N        int
	From, To string
}

// SampledFrame is one frame of a sample: where it is in the stream's frames topic (read
// it with GET /v1/streams/STREAM/frames/PARTITION/OFFSET), its camera and ingest time.
type SampledFrame struct {
	Source wire.Source
	Camera string
	Time   time.Time
}

// Sample is what SampleFrames found: the frames, how many the window holds, and the
// times the stream retains.
type Sample struct {
	Frames      []SampledFrame
	Held        int64
	First, Last time.Time
}

// MaxSample is the most frames one sample names.
const MaxSample = 5000

// SampleFrames picks up to req.N committed frames of the stream spread evenly over the
// window (by position: each partition gives its share of the window's frames, and each
// pick is the first committed frame at or after an even step). A window that holds fewer
// frames gives them all; the caller says so. Transaction markers and aborted frames are
// never picked.
func (s *Service) SampleFrames(ctx context.Context, req SampleRequest) (Sample, error) {
	var none Sample
	if req.N < 1 || req.N > MaxSample {
		return none, errorf(Invalid, "n %d: want 1 to %d frames", req.N, MaxSample)
	}
	st, err := s.Stream(ctx, req.Stream)
	if err != nil {
		return none, err
	}
	from, to, err := parseWindow(req.From, req.To)
	if err != nil {
		return none, err
	}
	start, stop, total, err := s.window(ctx, inputOf(st, "frames", "frame", st.Topic), ReplayRequest{From: req.From, To: req.To}, from, to)
	if err != nil {
		return none, err
	}
	win, err := s.cfg.Kafka.RetentionWindow(ctx, st.Topic)
	if err != nil {
		return none, errorf(Upstream, "kafka: %w", err)
	}
	out := Sample{Held: total, First: win.First, Last: win.Last}
	if total == 0 {
		return out, nil
	}
	// Even steps over the window's frames laid end to end, partition by partition.
	parts := slices.Sorted(maps.Keys(stop))
	picks := min(int64(req.N), total)
	seen := map[wire.Source]bool{}
	for i := range picks {
		at := (2*i + 1) * total / (2 * picks) // the middle of the i-th of picks equal parts
		for _, p := range parts {
			n := stop[p] - start[p]
			if at >= n {
				at -= n
				continue
			}
			f, ok, err := s.firstCommitted(ctx, st.Topic, p, start[p]+at, stop[p])
			if err != nil {
				return none, err
			}
			if ok && !seen[f.Source] {
				seen[f.Source] = true
				out.Frames = append(out.Frames, f)
			}
			break
		}
	}
	return out, nil
}

// firstCommitted reads the first committed record of topic's partition p in [from, end).
func (s *Service) firstCommitted(ctx context.Context, topic string, p int32, from, end int64) (SampledFrame, bool, error) {
	var f SampledFrame
	found := errors.New("found")
	err := s.cfg.Kafka.ReadRange(ctx, topic, p, from, end, func(m *sarama.ConsumerMessage) error {
		f = SampledFrame{Source: wire.Source{Partition: m.Partition, Offset: m.Offset}, Camera: string(m.Key), Time: m.Timestamp}
		return found
	})
	switch {
	case errors.Is(err, found):
		return f, true, nil
	case err != nil:
		return f, false, errorf(Upstream, "kafka: reading partition %d of %s: %w", p, topic, err)
	}
	return f, false, nil
}

// parseWindow reads a window's bounds (RFC 3339; empty: open at that end).
func parseWindow(fromS, toS string) (from, to time.Time, err error) {
	if fromS != "" {
		if from, err = time.Parse(time.RFC3339, fromS); err != nil {
			return from, to, errorf(Invalid, "from %q: want an RFC 3339 time like 2026-11-26T10:00:00Z", fromS)
		}
	}
	if toS != "" {
		if to, err = time.Parse(time.RFC3339, toS); err != nil {
			return from, to, errorf(Invalid, "to %q: want an RFC 3339 time like 2026-11-26T10:05:00Z", toS)
		}
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, errorf(Invalid, "from %s is not before to %s", fromS, toS)
	}
	return from, to, nil
}
