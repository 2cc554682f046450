package rollout

import (
	"context"
	"math"
	"slices"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/wire"
)

// A diff of a second stage's shadow or replay compares its enriched results with the live
// second stage's (its results topic), frame by frame (the frame's source partition and
// offset) through the same join as any diff. Both sides carry the first stage's
// detections, so the detection scores say whether they saw the same ones; what differs is
// the second stage's output on each: ChainStats pairs the detections of the frames both
// have (same class, IoU ≥ the diff's, the first stage's boxes being the same) and compares
// their embeddings (cosine similarity) or labels (top-1 agreement).

// maxChainPending bounds the frames a chain diff holds waiting for their other side: they
// carry their embeddings (1 KB a detection for 256 values), so fewer than maxPending.
const maxChainPending = 10_000

// exactCosines is how many cosine similarities a chain diff keeps for an exact p10; past
// it, the p10 comes from a histogram of 1 - cosine in 20 log-spaced bins a decade.
const (
	exactCosines = 4096
	cosBins      = 160
)

// ChainStats compare a second stage's output on the detections both sides have. The
// field names and types are api.DiffChain's, so the gateway converts one to the other.
type ChainStats struct {
	// First is the first stage the second stage runs after.
	First string
	// Detections is how many detections of the frames both sides have were paired.
	Detections int
	// PrimaryEmbedded and CandidateEmbedded count the detections of those frames that got
	// an embedding on each side; Embedded the pairs with one on both, whose cosine
	// similarity has mean CosineMean and 10th percentile CosineP10.
	PrimaryEmbedded, CandidateEmbedded, Embedded int
	CosineMean, CosineP10                        float64
	// PrimaryLabeled and CandidateLabeled count the detections that got labels on each
	// side; Labeled the pairs with labels on both, Top1Agreement the share of them whose
	// best label is the same (0 without pairs).
	PrimaryLabeled, CandidateLabeled, Labeled int
	Top1Agreement                             float64
}

// chainDet is a detection as a chain diff compares it.
type chainDet struct {
	class int
	box   functions.Box
	emb   []float32
	top1  int // the best label's class id; -1: no labels
}

type chainFrame []chainDet

// chainTally is a chain diff's counts over some frames.
type chainTally struct {
	detections, embP, embC, labP, labC, labeled, agree int
	cosN                                               int
	cosSum                                             float64
	exact                                              []float64 // every cosine while cosN ≤ exactCosines, else nil
	hist                                               [cosBins]int
}

// chainFrameOf is r's detections for a chain diff; nil unless the join compares a chain.
func (j *join) chainFrameOf(r *wire.Result) chainFrame {
	if j.cfg.chain == "" {
		return nil
	}
	f := make(chainFrame, len(r.Detections))
	for i, d := range r.Detections {
		f[i] = chainDet{class: d.ClassID, box: functions.Box(d.Box), emb: d.Embedding, top1: -1}
		if len(d.Labels) > 0 {
			f[i].top1 = d.Labels[0].ClassID
		}
	}
	return f
}

// match counts a frame both sides have in its bucket's tallies.
func (j *join) match(w *waiting) {
	j.tally(w.at).Match(*w.sides[primarySide], *w.sides[candidateSide])
	if j.cfg.chain == "" {
		return
	}
	b := j.bucketOf(w.at)
	t, ok := j.chains[b]
	if !ok {
		t = &chainTally{}
		j.chains[b] = t
	}
	t.match(w.chain[primarySide], w.chain[candidateSide], float32(j.cfg.iou))
}

// match pairs p's detections with c's (same class, the highest IoU at or above iou) and
// counts their outputs.
func (t *chainTally) match(p, c chainFrame, iou float32) {
	for _, d := range p {
		t.embP, t.labP = t.embP+btoi(d.emb != nil), t.labP+btoi(d.top1 >= 0)
	}
	for _, d := range c {
		t.embC, t.labC = t.embC+btoi(d.emb != nil), t.labC+btoi(d.top1 >= 0)
	}
	used := make([]bool, len(c))
	for _, a := range p {
		best, bi := iou, -1
		for i, b := range c {
			if v := functions.IoU(a.box, b.box); !used[i] && b.class == a.class && v >= best {
				best, bi = v, i
			}
		}
		if bi < 0 {
			continue
		}
		used[bi], t.detections = true, t.detections+1
		b := c[bi]
		if a.emb != nil && len(a.emb) == len(b.emb) {
			t.addCos(cosine(a.emb, b.emb))
		}
		if a.top1 >= 0 && b.top1 >= 0 {
			t.labeled, t.agree = t.labeled+1, t.agree+btoi(a.top1 == b.top1)
		}
	}
}

func (t *chainTally) addCos(c float64) {
	t.cosN++
	t.cosSum += c
	t.hist[cosBin(c)]++
	if t.cosN <= exactCosines && len(t.exact) == t.cosN-1 {
		t.exact = append(t.exact, c)
	} else {
		t.exact = nil
	}
}

// add adds o's counts to t's.
func (t *chainTally) add(o *chainTally) {
	if len(t.exact) == t.cosN && len(o.exact) == o.cosN && t.cosN+o.cosN <= exactCosines {
		t.exact = append(t.exact, o.exact...)
	} else {
		t.exact = nil
	}
	t.detections, t.embP, t.embC, t.labP, t.labC = t.detections+o.detections, t.embP+o.embP, t.embC+o.embC, t.labP+o.labP, t.labC+o.labC
	t.labeled, t.agree, t.cosN, t.cosSum = t.labeled+o.labeled, t.agree+o.agree, t.cosN+o.cosN, t.cosSum+o.cosSum
	for i, n := range o.hist {
		t.hist[i] += n
	}
}

// stats are t's counts as a report: the p10 exact while every cosine is kept, else the
// lower edge of its histogram bin (never above the exact value).
func (t *chainTally) stats(first string) *ChainStats {
	s := &ChainStats{First: first, Detections: t.detections, PrimaryEmbedded: t.embP, CandidateEmbedded: t.embC, Embedded: t.cosN,
		PrimaryLabeled: t.labP, CandidateLabeled: t.labC, Labeled: t.labeled}
	if t.labeled > 0 {
		s.Top1Agreement = float64(t.agree) / float64(t.labeled)
	}
	if t.cosN == 0 {
		return s
	}
	s.CosineMean = t.cosSum / float64(t.cosN)
	if len(t.exact) == t.cosN {
		s.CosineP10 = compare.Percentile(slices.Sorted(slices.Values(t.exact)), 10)
		return s
	}
	rank := int(math.Ceil(0.1 * float64(t.cosN))) // the rank-th lowest cosine: the highest bins of 1 - cosine first
	for i := cosBins - 1; i >= 0; i-- {
		if rank -= t.hist[i]; rank <= 0 {
			s.CosineP10 = max(-1, 1-math.Pow(10, float64(i)/20-7))
			break
		}
	}
	return s
}

// chainReport sums the chain tallies of the join's window; nil unless it compares a chain.
func (j *join) chainReport() *ChainStats {
	if j.cfg.chain == "" {
		return nil
	}
	sum := &chainTally{}
	for _, t := range j.chains {
		sum.add(t)
	}
	return sum.stats(j.cfg.chain)
}

// cosBin is the histogram bin of cosine similarity c: 0 for 1 - c below 1e-7, then 20 a
// decade of 1 - c (bin i holds 1 - c below 10^(i/20 - 7)).
func cosBin(c float64) int {
	d := 1 - c
	if d < 1e-7 {
		return 0
	}
	return min(cosBins-1, 1+int((math.Log10(d)+7)*20))
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// liveSecondStage is the results topic a second stage's shadow or replay is compared
// with: the live second stage's, of the same function after the same first stage.
// NotFound when that topic is gone (the live second stage was undeployed, or never ran).
func (s *Service) liveSecondStage(st wire.Stream, cand wire.Deployment) (string, error) {
	topic := wire.AfterResultsTopic(st.Name, cand.AfterName(), cand.Function)
	ok, err := s.cfg.Kafka.TopicExists(topic)
	switch {
	case err != nil:
		return topic, errorf(Upstream, "kafka: %w", err)
	case !ok:
		return topic, errorf(NotFound, "no live second stage %s after %s on stream %q to compare with (its results topic %s does not exist)",
			cand.Function, cand.AfterName(), st.Name, topic)
	}
	return topic, nil
}

// chainReplayWindow is the frames a second stage's replay is compared on: per frames
// partition of st, from the lowest source offset of its results to past the highest
// (none on a partition it has no result of).
func (s *Service) chainReplayWindow(ctx context.Context, st wire.Stream, cand wire.Deployment) (from, to map[int32]int64, err error) {
	from, to, err = s.sourceExtent(ctx, cand.ResultsTopic(st), cand.Function, cand.Digest)
	if err != nil {
		return nil, nil, errorf(Upstream, "kafka: reading %s: %w", cand.ResultsTopic(st), err)
	}
	for p := range st.Partitions {
		if _, ok := to[p]; !ok {
			from[p], to[p] = 0, 0
		}
	}
	return from, to, nil
}
