package rollout

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// A replay of a second stage (`diplip replay S --fn REF --after FIRST`) runs the function
// over FIRST's stored results, the stream's results topic, not over the frames: its
// deployment is a replay (role replay, its own group and results topic, StopAt, done when
// committed) with After set, so the scaler and the runners treat it as a second stage
// (input: the results topic; the frames read back by the offsets the results name; crops).
// Its window is that topic's: --from and --to are offsets-for-time there, and StartAt,
// StopAt and Total count its records. Why not both stages: the first stage's results are
// stored already, they are what the live second stage saw (track ids included), and the
// first stage is most of the work; a plain replay of FIRST replays the first stage.

// replayAfter checks a second stage's replay request (its first stage has a primary on
// st; the classes are the first stage's labels) and returns planned with its selection:
// the request's, or the live second stage's of the same function after the same first
// stage when the request names none.
func (s *Service) replayAfter(ctx context.Context, st wire.Stream, fn wire.Function, req ReplayRequest, planned Request) (Request, error) {
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return planned, err
	}
	first, err := firstStage(deps, st.Name, req.After)
	if err != nil {
		return planned, err
	}
	planned.After, planned.Classes, planned.MinSize, planned.MaxPerFrame = req.After, req.Classes, req.MinSize, req.MaxPerFrame
	if len(req.Classes) > 0 || req.MinSize != 0 || req.MaxPerFrame != 0 {
		return planned, s.checkClasses(ctx, first, req.Classes)
	}
	live, err := s.cfg.Store.DeploymentByKey(ctx, wire.AfterKey(fn.Name, st.Name, req.After))
	switch {
	case err == nil && live.After != nil:
		planned.Classes, planned.MinSize, planned.MaxPerFrame = live.After.Classes, live.After.MinSize, live.After.MaxPerFrame
	case err != nil && !errors.Is(err, controlplane.ErrNotFound):
		return planned, err
	}
	return planned, nil
}

// retentionWindow is RetentionWindow for a topic that may be written in transactions (a
// results topic of an exactly-once first stage): a partition's first or last offset may
// hold a transaction marker or an aborted record, so its first and last committed records
// are looked for further in, twice as far each time.
func (s *Service) retentionWindow(ctx context.Context, topic string) (kafkaclient.Window, error) {
	start, end, err := s.cfg.Kafka.Offsets(topic)
	if err != nil {
		return kafkaclient.Window{}, err
	}
	w := kafkaclient.Window{Start: start, End: end}
	for p, from := range start {
		to := end[p]
		var first, last *sarama.ConsumerMessage
		for lo, k := from, int64(16); first == nil && lo < to; k *= 2 {
			hi := min(lo+k, to)
			err := s.cfg.Kafka.ReadRange(ctx, topic, p, lo, hi, func(m *sarama.ConsumerMessage) error {
				first = m
				return errFound
			})
			if err != nil && !errors.Is(err, errFound) {
				return w, err
			}
			lo = hi
		}
		if first == nil {
			continue // nothing committed in the partition
		}
		for hi, k := to, int64(16); last == nil && hi > first.Offset; k *= 2 {
			lo := max(first.Offset, hi-k)
			err := s.cfg.Kafka.ReadRange(ctx, topic, p, lo, hi, func(m *sarama.ConsumerMessage) error {
				last = m
				return nil
			})
			if err != nil {
				return w, err
			}
			hi = lo
		}
		if w.First.IsZero() || first.Timestamp.Before(w.First) {
			w.First = first.Timestamp
		}
		if last.Timestamp.After(w.Last) {
			w.Last = last.Timestamp
		}
	}
	return w, nil
}

var errFound = errors.New("found")

// sourceExtent is the span of frames a second stage's replay has results for: per frames
// partition, from the lowest source offset of its results to one past the highest. A
// diff of the replay compares the live second stage's results on those frames.
func (s *Service) sourceExtent(ctx context.Context, topic, function, digest string) (from, to map[int32]int64, err error) {
	start, end, err := s.cfg.Kafka.Offsets(topic)
	if err != nil {
		return nil, nil, err
	}
	from, to = map[int32]int64{}, map[int32]int64{}
	for p, off := range start {
		err := s.cfg.Kafka.ReadRange(ctx, topic, p, off, end[p], func(m *sarama.ConsumerMessage) error {
			var r wire.Result
			if json.Unmarshal(m.Value, &r) != nil || r.Function != function || r.Digest != digest {
				return nil
			}
			src := r.Source
			if lo, seen := from[src.Partition]; !seen || src.Offset < lo {
				from[src.Partition] = src.Offset
			}
			to[src.Partition] = max(to[src.Partition], src.Offset+1)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return from, to, nil
}
