package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// maxDiffResults bounds the results one side of a diff reads from its topic.
const maxDiffResults = 200_000

// Diff is a candidate's results (a shadow's or a replay's) compared frame by frame with
// the primary's on the same frames.
type Diff struct {
	Stream string
	// IoU is the threshold at which two detections of the same class match.
	IoU                float64
	Primary, Candidate DiffSide
	// Report holds the scores. Each class has a label ("class N" when its function names
	// none); Overall's is "all".
	Report compare.Report
}

// DiffSide is where one side's results come from.
type DiffSide struct {
	// Kind is primary, shadow or replay; Name a replay's name.
	Kind, Name, Function string
	// Digests are the function digests its results came from.
	Digests []string
	Topic   string
	// Results is how many ok results it has on the compared window.
	Results int
}

// DiffShadow compares the stream's shadow with its primary, and publishes the outcome as
// the diplip_shadow_* gauges. iou 0 means compare.DefaultIoU.
func (s *Service) DiffShadow(ctx context.Context, stream string, iou float64) (Diff, error) {
	st, err := s.Stream(ctx, stream)
	if err != nil {
		return Diff{}, err
	}
	cand, err := s.cfg.Store.Shadow(ctx, st.Name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return Diff{}, errorf(Invalid, "stream %q has no shadow; deploy one with: diplip fn deploy REF --stream %s --shadow", st.Name, st.Name)
	}
	if err != nil {
		return Diff{}, err
	}
	d, err := s.diff(ctx, st, cand, iou)
	if err == nil {
		setShadowGauges(d)
	}
	return d, err
}

// DiffReplay compares the replay called name, of stream, with the stream's primary. iou 0
// means compare.DefaultIoU.
func (s *Service) DiffReplay(ctx context.Context, stream, name string, iou float64) (Diff, error) {
	st, err := s.Stream(ctx, stream)
	if err != nil {
		return Diff{}, err
	}
	cand, err := s.Replay(ctx, name)
	if err != nil {
		return Diff{}, err
	}
	if cand.Stream != st.Name {
		return Diff{}, errorf(Invalid, "replay %q is of stream %q, not %q", name, cand.Stream, st.Name)
	}
	return s.diff(ctx, st, cand, iou)
}

// side is one side's results on the compared window, by frame position.
type side struct {
	frames  []compare.Frame
	pos     []wire.Source
	digests []string
	last    map[int32]int64 // the highest frame offset per partition
}

// diff reads both results topics and compares: the primary's are the stream's results of
// the candidate's function; both are limited to frames at or after the candidate's start
// (and, for a replay, before its end); a shadow's diff also stops at the last frame both
// sides got to, so work in flight does not count as missing.
func (s *Service) diff(ctx context.Context, st wire.Stream, cand wire.Deployment, iou float64) (Diff, error) {
	if iou == 0 {
		iou = compare.DefaultIoU
	}
	replay := cand.Role == wire.RoleReplay
	latency := func(r *wire.Result) float64 {
		if replay { // a replayed frame's end to end is mostly its age
			return r.Timings.Decode + r.Timings.Preprocess + r.Timings.Infer
		}
		return r.Timings.EndToEnd
	}
	in := func(src wire.Source) bool {
		if start, ok := cand.StartAt[src.Partition]; ok && src.Offset < start {
			return false
		}
		if end, ok := cand.StopAt[src.Partition]; ok && src.Offset >= end {
			return false
		}
		return true
	}
	read := func(topic string, keep func(*wire.Result) bool) (*side, error) {
		sd := &side{last: map[int32]int64{}}
		err := s.cfg.Kafka.ReadTopic(ctx, topic, maxDiffResults, func(m *sarama.ConsumerMessage) error {
			var r wire.Result
			if json.Unmarshal(m.Value, &r) != nil || r.Status != wire.StatusOK || r.Function != cand.Function || !in(r.Source) || !keep(&r) {
				return nil
			}
			f := compare.Frame{Camera: r.Camera, Seq: r.Seq, LatencyMs: latency(&r)}
			for _, d := range r.Detections {
				f.Detections = append(f.Detections, compare.Detection{Class: d.ClassID, Label: d.Label, Box: functions.Box(d.Box)})
			}
			sd.frames, sd.pos = append(sd.frames, f), append(sd.pos, r.Source)
			if !slices.Contains(sd.digests, r.Digest) {
				sd.digests = append(sd.digests, r.Digest)
			}
			if off, ok := sd.last[r.Source.Partition]; !ok || r.Source.Offset > off {
				sd.last[r.Source.Partition] = r.Source.Offset
			}
			return nil
		})
		if errors.Is(err, kafkaclient.ErrTooManyRecords) {
			return nil, errorf(TooLarge, "%w", err)
		}
		if err != nil {
			return nil, errorf(Upstream, "kafka: reading %s: %w", topic, err)
		}
		return sd, nil
	}
	candTopic := cand.ResultsTopic(st)
	c, err := read(candTopic, func(r *wire.Result) bool { return r.Digest == cand.Digest })
	if err != nil {
		return Diff{}, err
	}
	p, err := read(st.ResultsTopic, func(*wire.Result) bool { return true })
	if err != nil {
		return Diff{}, err
	}
	if !replay {
		upTo := map[int32]int64{}
		for part, off := range p.last {
			if co, ok := c.last[part]; ok {
				upTo[part] = min(off, co)
			} else {
				upTo[part] = -1
			}
		}
		for part := range c.last {
			if _, ok := p.last[part]; !ok {
				upTo[part] = -1
			}
		}
		p.frames = upToFrames(p, upTo)
		c.frames = upToFrames(c, upTo)
	}
	rep := compare.Compare(p.frames, c.frames, iou)
	rep.Overall.Label = label(rep.Overall)
	for i := range rep.Classes {
		rep.Classes[i].Label = label(rep.Classes[i])
	}
	if p.digests == nil {
		p.digests = []string{}
	}
	return Diff{Stream: st.Name, IoU: iou, Report: rep,
		Primary: DiffSide{Kind: "primary", Function: cand.Function, Digests: p.digests, Topic: st.ResultsTopic, Results: len(p.frames)},
		Candidate: DiffSide{Kind: string(cand.Role), Name: cand.ReplayName(), Function: cand.Function, Digests: []string{cand.Digest},
			Topic: candTopic, Results: len(c.frames)},
	}, nil
}

// label names a class's scores: "all" for every class, "class N" when the function
// names none.
func label(c compare.ClassStats) string {
	switch {
	case c.Class < 0:
		return "all"
	case c.Label == "":
		return fmt.Sprintf("class %d", c.Class)
	}
	return c.Label
}

// upToFrames keeps the frames at or before upTo on their partition.
func upToFrames(sd *side, upTo map[int32]int64) []compare.Frame {
	var out []compare.Frame
	for i, f := range sd.frames {
		if end, ok := upTo[sd.pos[i].Partition]; ok && sd.pos[i].Offset <= end {
			out = append(out, f)
		}
	}
	return out
}

// setShadowGauges publishes a shadow diff as the diplip_shadow_* gauges.
func setShadowGauges(d Diff) {
	metrics.ForgetShadow(d.Stream) // classes that are gone leave no stale series
	for _, c := range append([]compare.ClassStats{d.Report.Overall}, d.Report.Classes...) {
		metrics.ShadowPrecision.WithLabelValues(d.Stream, c.Label).Set(c.Precision)
		metrics.ShadowRecall.WithLabelValues(d.Stream, c.Label).Set(c.Recall)
		metrics.ShadowF1.WithLabelValues(d.Stream, c.Label).Set(c.F1)
		metrics.ShadowMeanIoU.WithLabelValues(d.Stream, c.Label).Set(c.MeanIoU)
		metrics.ShadowCountDelta.WithLabelValues(d.Stream, c.Label).Set(float64(c.CountDelta))
	}
	metrics.ShadowFrames.WithLabelValues(d.Stream, "both").Set(float64(d.Report.Frames))
	metrics.ShadowFrames.WithLabelValues(d.Stream, "only_primary").Set(float64(d.Report.OnlyPrimary))
	metrics.ShadowFrames.WithLabelValues(d.Stream, "only_shadow").Set(float64(d.Report.OnlyCandidate))
	for _, l := range []struct {
		side string
		lat  compare.Latency
	}{{"primary", d.Report.Primary}, {"shadow", d.Report.Candidate}} {
		metrics.ShadowLatency.WithLabelValues(d.Stream, l.side, "0.5").Set(l.lat.P50 / 1000)
		metrics.ShadowLatency.WithLabelValues(d.Stream, l.side, "0.99").Set(l.lat.P99 / 1000)
	}
}

// ShadowGauges keeps the diplip_shadow_* gauges of every stream's shadow up to date: each
// interval it computes the shadows' diffs (a GET of a shadow diff also updates them), and
// drops the series of shadows that are gone. Its owner runs it.
type ShadowGauges struct {
	svc      *Service
	interval time.Duration
}

// ShadowGauges returns the gauges' loop over s, every interval (default 15 s).
func (s *Service) ShadowGauges(interval time.Duration) *ShadowGauges {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	return &ShadowGauges{svc: s, interval: interval}
}

// Run updates the gauges every interval until ctx ends; it returns nil then.
func (g *ShadowGauges) Run(ctx context.Context) error {
	s := g.svc
	t := time.NewTicker(g.interval)
	defer t.Stop()
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		deps, err := s.cfg.Store.Deployments(ctx)
		if err != nil {
			s.log.Warn("shadow diffs: listing deployments", "err", err)
			continue
		}
		now := map[string]bool{}
		for _, d := range deps {
			if d.Role != wire.RoleShadow {
				continue
			}
			now[d.Stream] = true
			st, err := s.cfg.Store.Stream(ctx, d.Stream)
			if err != nil {
				continue
			}
			diff, err := s.diff(ctx, st, d, compare.DefaultIoU)
			if err != nil {
				s.log.Warn("shadow diff failed", "stream", d.Stream, "err", err)
				continue
			}
			setShadowGauges(diff)
		}
		for stream := range seen {
			if !now[stream] {
				metrics.ForgetShadow(stream)
			}
		}
		seen = now
	}
}
