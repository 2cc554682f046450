package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// maxDiffResults bounds the results one side of a diff reads from its topic.
const maxDiffResults = 200_000

// diff serves GET /v1/streams/{stream}/diff?replay=NAME or ?shadow=1 (&iou=0.5): the
// candidate's results compared frame by frame with the primary's.
func (s *Server) diff(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stream(r.Context(), r.PathValue("stream"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	replay, shadow := q.Get("replay"), q.Get("shadow") == "1" || q.Get("shadow") == "true"
	if (replay == "") == !shadow {
		return errorf(http.StatusBadRequest, "want one of ?replay=NAME or ?shadow=1")
	}
	iou := compare.DefaultIoU
	if v := q.Get("iou"); v != "" {
		if iou, err = strconv.ParseFloat(v, 64); err != nil || iou <= 0 || iou > 1 {
			return errorf(http.StatusBadRequest, "iou %q: want a number in (0, 1]", v)
		}
	}
	var cand wire.Deployment
	if shadow {
		cand, err = s.cfg.Store.Shadow(r.Context(), st.Name)
		if errors.Is(err, controlplane.ErrNotFound) {
			return errorf(http.StatusBadRequest, "stream %q has no shadow; deploy one with: diplip fn deploy REF --stream %s --shadow", st.Name, st.Name)
		}
	} else {
		cand, err = s.replay(r.Context(), replay)
		if err == nil && cand.Stream != st.Name {
			return errorf(http.StatusBadRequest, "replay %q is of stream %q, not %q", replay, cand.Stream, st.Name)
		}
	}
	if err != nil {
		return err
	}
	d, err := s.computeDiff(r.Context(), st, cand, iou)
	if err != nil {
		return err
	}
	if shadow {
		setShadowGauges(d)
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// side is one side's results on the compared window, by frame position.
type side struct {
	frames  []compare.Frame
	pos     []wire.Source
	digests []string
	last    map[int32]int64 // the highest frame offset per partition
}

// computeDiff reads both results topics and compares: the primary's are the stream's
// results of the candidate's function; both are limited to frames at or after the
// candidate's start (and, for a replay, before its end); a shadow's diff also stops at the
// last frame both sides got to, so work in flight does not count as missing.
func (s *Server) computeDiff(ctx context.Context, st wire.Stream, cand wire.Deployment, iou float64) (api.Diff, error) {
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
			return nil, errorf(http.StatusUnprocessableEntity, "%v", err)
		}
		if err != nil {
			return nil, errorf(http.StatusBadGateway, "kafka: reading %s: %v", topic, err)
		}
		return sd, nil
	}
	candTopic := cand.ResultsTopic(st)
	c, err := read(candTopic, func(r *wire.Result) bool { return r.Digest == cand.Digest })
	if err != nil {
		return api.Diff{}, err
	}
	p, err := read(st.ResultsTopic, func(*wire.Result) bool { return true })
	if err != nil {
		return api.Diff{}, err
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
	kind := string(cand.Role)
	out := api.Diff{Stream: st.Name, IoU: iou, Frames: rep.Frames, OnlyPrimary: rep.OnlyPrimary, OnlyCandidate: rep.OnlyCandidate,
		Primary: api.DiffSide{Kind: "primary", Function: cand.Function, Digests: nonNil(p.digests), Topic: st.ResultsTopic,
			Results: len(p.frames), LatencyP50Ms: rep.Primary.P50, LatencyP99Ms: rep.Primary.P99},
		Candidate: api.DiffSide{Kind: kind, Name: cand.ReplayName(), Function: cand.Function, Digests: []string{cand.Digest},
			Topic: candTopic, Results: len(c.frames), LatencyP50Ms: rep.Candidate.P50, LatencyP99Ms: rep.Candidate.P99},
		Classes: []api.DiffClass{}, Overall: apiDiffClass(rep.Overall)}
	for _, cl := range rep.Classes {
		out.Classes = append(out.Classes, apiDiffClass(cl))
	}
	return out, nil
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

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// setShadowGauges publishes a shadow diff as the diplip_shadow_* gauges.
func setShadowGauges(d api.Diff) {
	metrics.ForgetShadow(d.Stream) // classes that are gone leave no stale series
	for _, c := range append([]api.DiffClass{d.Overall}, d.Classes...) {
		metrics.ShadowPrecision.WithLabelValues(d.Stream, c.Label).Set(c.Precision)
		metrics.ShadowRecall.WithLabelValues(d.Stream, c.Label).Set(c.Recall)
		metrics.ShadowF1.WithLabelValues(d.Stream, c.Label).Set(c.F1)
		metrics.ShadowMeanIoU.WithLabelValues(d.Stream, c.Label).Set(c.MeanIoU)
		metrics.ShadowCountDelta.WithLabelValues(d.Stream, c.Label).Set(float64(c.CountDelta))
	}
	metrics.ShadowFrames.WithLabelValues(d.Stream, "both").Set(float64(d.Frames))
	metrics.ShadowFrames.WithLabelValues(d.Stream, "only_primary").Set(float64(d.OnlyPrimary))
	metrics.ShadowFrames.WithLabelValues(d.Stream, "only_shadow").Set(float64(d.OnlyCandidate))
	for _, l := range []struct {
		side     string
		p50, p99 float64
	}{{"primary", d.Primary.LatencyP50Ms, d.Primary.LatencyP99Ms}, {"shadow", d.Candidate.LatencyP50Ms, d.Candidate.LatencyP99Ms}} {
		metrics.ShadowLatency.WithLabelValues(d.Stream, l.side, "0.5").Set(l.p50 / 1000)
		metrics.ShadowLatency.WithLabelValues(d.Stream, l.side, "0.99").Set(l.p99 / 1000)
	}
}

// RunShadowDiffs computes every stream's shadow diff every interval and publishes it as
// the diplip_shadow_* gauges, until ctx ends. Its owner (the node) runs it next to Run;
// a GET of a shadow diff also updates the gauges.
func (s *Server) RunShadowDiffs(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	t := time.NewTicker(interval)
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
			diff, err := s.computeDiff(ctx, st, d, compare.DefaultIoU)
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
