package rollout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

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
	// From and To bound a shadow diff's window: the frames whose results were written in
	// the last 5 minutes of the newest result read (From is zero for a replay's, which
	// covers the replay's whole window).
	From, To time.Time
	// Pending counts the frames one side has that wait for the other (in flight, not in
	// Report).
	Pending int
	// Chain, for a second stage's shadow or replay (compared with the live second stage),
	// compares the second stage's outputs on the detections both sides have.
	Chain *ChainStats
}

// DiffSide is where one side's results come from.
type DiffSide struct {
	// Kind is primary, shadow or replay (after: the live second stage a second stage's
	// shadow or replay is compared with); Name a replay's name.
	Kind, Name, Function string
	// Digests are the function digests its results came from.
	Digests []string
	Topic   string
	// Results is how many frames it has an ok result for in the compared window.
	Results int
}

// DiffShadow compares the stream's shadow with its primary over the last 5 minutes, and
// publishes the outcome as the diplip_shadow_* gauges. iou 0 means compare.DefaultIoU.
// The shadow of a second stage is compared with the live second stage (Diff.Chain).
//
// While the ShadowGauges loop runs, it answers from the loop's incremental diff of the
// shadow, after reading what is new since its last pass (cheap: each result is read
// once). Otherwise, or for another iou than the loop's, it reads the results written in
// the last 5 minutes (and a minute before, for the frames still waiting then) itself. On
// either path, frames one side has and the other has not reached yet are work in flight:
// they count once the other side gets past them, or after a minute.
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
	if iou == 0 {
		iou = compare.DefaultIoU
	}
	var j *join
	if iou == compare.DefaultIoU && s.diffs.loop() {
		j, err = s.shadowJoin(st, cand)
	} else {
		j, err = s.newShadowJoin(st, cand, iou)
	}
	if err != nil {
		return Diff{}, err
	}
	d, err := s.passDiff(ctx, st, cand, j)
	if err == nil && iou == compare.DefaultIoU {
		setShadowGauges(d)
	}
	return d, err
}

// DiffReplay compares the replay called name, of stream, with the stream's primary. iou 0
// means compare.DefaultIoU. It reads both results topics once, joining as it goes: it
// holds the frames waiting for their other side (at most 50,000), not the topics.
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
	if iou == 0 {
		iou = compare.DefaultIoU
	}
	cfg, err := s.joinConfigOf(st, cand, iou)
	if err != nil {
		return Diff{}, err
	}
	cfg.replay = true
	if cand.SecondStage() { // StartAt and StopAt are offsets of its input, not frames
		if cfg.startAt, cfg.stopAt, err = s.chainReplayWindow(ctx, st, cand); err != nil {
			return Diff{}, err
		}
	}
	return s.passDiff(ctx, st, cand, newJoin(cfg, ""))
}

// joinConfigOf is what a diff of candidate cand compares: the stream's results (a second
// stage's shadow or replay: the live second stage's) with cand's, on the frames from its
// StartAt to its StopAt.
func (s *Service) joinConfigOf(st wire.Stream, cand wire.Deployment, iou float64) (joinConfig, error) {
	cfg := joinConfig{topics: [2]string{st.ResultsTopic, cand.ResultsTopic(st)}, function: cand.Function, digest: cand.Digest,
		startAt: cand.StartAt, stopAt: cand.StopAt, iou: iou, maxPending: maxPending}
	if cand.SecondStage() {
		live, err := s.liveSecondStage(st, cand)
		if err != nil {
			return cfg, err
		}
		cfg.topics[primarySide], cfg.chain, cfg.maxPending = live, cand.AfterName(), maxChainPending
	}
	return cfg, nil
}

// shadowID tells a shadow deployment from the one it replaced.
func shadowID(d wire.Deployment) string {
	return fmt.Sprint(d.Key(), d.Digest, d.Generation, d.StartAt)
}

// shadowJoin is the loop's join of the stream's shadow, made when it is new.
func (s *Service) shadowJoin(st wire.Stream, cand wire.Deployment) (*join, error) {
	return s.diffs.get(st.Name, shadowID(cand), func() (*join, error) {
		return s.newShadowJoin(st, cand, compare.DefaultIoU)
	})
}

// newShadowJoin is a join of a shadow with its primary that starts at the results written
// in the last shadowWindow + pendingAge.
func (s *Service) newShadowJoin(st wire.Stream, cand wire.Deployment, iou float64) (*join, error) {
	cfg, err := s.joinConfigOf(st, cand, iou)
	if err != nil {
		return nil, err
	}
	cfg.window, cfg.bucket, cfg.maxAge = shadowWindow, shadowBucket, pendingAge
	j := newJoin(cfg, shadowID(cand))
	since := time.Now().Add(-shadowWindow - pendingAge)
	for side, topic := range j.cfg.topics {
		offs, err := s.cfg.Kafka.OffsetsAt(topic, since)
		if err != nil {
			return nil, errorf(Upstream, "kafka: reading %s: %w", topic, err)
		}
		j.initial[side] = offs
	}
	return j, nil
}

// passDiff reads what is new to j and answers its window.
func (s *Service) passDiff(ctx context.Context, st wire.Stream, cand wire.Deployment, j *join) (Diff, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.pass(ctx, s.cfg.Kafka); err != nil {
		return Diff{}, errorf(Upstream, "kafka: reading %s and %s: %w", j.cfg.topics[0], j.cfg.topics[1], err)
	}
	if j.cfg.replay {
		j.resolve(resolveAll)
	}
	rep, digests, from, to := j.report()
	rep.Overall.Label = label(rep.Overall)
	for i := range rep.Classes {
		rep.Classes[i].Label = label(rep.Classes[i])
	}
	base := "primary"
	if cand.SecondStage() {
		base = string(wire.RoleAfter)
	}
	return Diff{Stream: st.Name, IoU: j.cfg.iou, Report: rep, From: from, To: to, Pending: len(j.pending), Chain: j.chainReport(),
		Primary: DiffSide{Kind: base, Function: cand.Function, Digests: digests, Topic: j.cfg.topics[primarySide],
			Results: rep.Frames + rep.OnlyPrimary},
		Candidate: DiffSide{Kind: string(cand.Role), Name: cand.ReplayName(), Function: cand.Function, Digests: []string{cand.Digest},
			Topic: j.cfg.topics[candidateSide], Results: rep.Frames + rep.OnlyCandidate},
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
	metrics.ShadowFrames.WithLabelValues(d.Stream, "pending").Set(float64(d.Pending))
	for _, l := range []struct {
		side string
		lat  compare.Latency
	}{{"primary", d.Report.Primary}, {"shadow", d.Report.Candidate}} {
		metrics.ShadowLatency.WithLabelValues(d.Stream, l.side, "0.5").Set(l.lat.P50 / 1000)
		metrics.ShadowLatency.WithLabelValues(d.Stream, l.side, "0.99").Set(l.lat.P99 / 1000)
	}
}

// ShadowGauges keeps the diplip_shadow_* gauges of every stream's shadow up to date over
// a sliding window of the last 5 minutes. It keeps one incremental diff per shadow: its
// own position on each partition of the primary's and the shadow's results topics (read
// committed; each pass reads only what is new, starting 6 minutes back for a new
// shadow); a join of the two sides' results by frame (the frame's partition and offset)
// that holds a frame waiting for its other side until that side gets past it in the
// frame's partition, or a minute later in time, or the 50,000 waiting frames need its
// place: then it counts as one side's only; and the scores of the joined frames in
// buckets of 10 s, the older ones dropped. A stream's size sets no limit. A GET of a
// shadow diff answers from the same diffs while the loop runs. Its owner runs it.
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
	s.diffs.mu.Lock()
	s.diffs.running++
	s.diffs.mu.Unlock()
	defer func() {
		s.diffs.mu.Lock()
		if s.diffs.running--; s.diffs.running == 0 {
			s.diffs.joins = nil
		}
		s.diffs.mu.Unlock()
	}()
	t := time.NewTicker(g.interval)
	defer t.Stop()
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now, err := g.Pass(ctx)
		if err != nil {
			s.log.Warn("shadow diffs: listing deployments", "err", err)
			continue
		}
		for stream := range seen {
			if !now[stream] {
				metrics.ForgetShadow(stream)
			}
		}
		seen = now
	}
}

// Pass brings every shadow's diff and gauges up to date once, and drops the diffs of
// shadows that are gone; it returns the streams that have a shadow.
func (g *ShadowGauges) Pass(ctx context.Context) (map[string]bool, error) {
	s := g.svc
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return nil, err
	}
	now := map[string]bool{}
	for _, d := range deps {
		if d.Role == wire.RoleShadow {
			now[d.Stream] = true
		}
	}
	s.diffs.keep(now)
	for _, d := range deps {
		if d.Role != wire.RoleShadow {
			continue
		}
		st, err := s.cfg.Store.Stream(ctx, d.Stream)
		if err != nil {
			continue
		}
		j, err := s.shadowJoin(st, d)
		if err == nil {
			var diff Diff
			if diff, err = s.passDiff(ctx, st, d, j); err == nil {
				setShadowGauges(diff)
			}
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("shadow diff failed", "stream", d.Stream, "err", err)
		}
	}
	return now, nil
}

// shadowDiffs are the incremental diffs of the streams' shadows, which the shadow-gauge
// loop keeps (its zero value is ready).
type shadowDiffs struct {
	mu      sync.Mutex
	running int              // ShadowGauges loops running
	joins   map[string]*join // by stream
}

// loop reports whether a ShadowGauges loop runs, so the joins are kept current.
func (d *shadowDiffs) loop() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running > 0
}

// get returns the stream's join if it compares the deployment id, or a new one made.
func (d *shadowDiffs) get(stream, id string, create func() (*join, error)) (*join, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if j, ok := d.joins[stream]; ok && j.id == id {
		return j, nil
	}
	j, err := create()
	if err != nil {
		return nil, err
	}
	if d.joins == nil {
		d.joins = map[string]*join{}
	}
	d.joins[stream] = j
	return j, nil
}

// keep drops the joins of streams not in keep.
func (d *shadowDiffs) keep(keep map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	maps.DeleteFunc(d.joins, func(stream string, _ *join) bool { return !keep[stream] })
}
