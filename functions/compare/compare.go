// Package compare compares two sets of detection results of the same frames, a primary
// and a candidate (a shadow deployment, a replay of a new model version): per class,
// detections are matched by IoU and class, and the candidate is scored against the
// primary (precision, recall, F1, mean IoU of matches, count deltas), with the frames only
// one side has and each side's latency percentiles.
//
// It is pure logic on its own small input types: it knows nothing of Kafka, results
// topics or the API (the gateway reads the topics and converts).
package compare

import (
	"cmp"
	"math"
	"slices"

	"github.com/diplip/diplip/functions"
)

// DefaultIoU is the IoU at or above which two detections of the same class match.
const DefaultIoU = 0.5

// Detection is one detected object.
type Detection struct {
	Class int
	Label string
	Box   functions.Box
}

// Frame is one side's result for one frame, identified by camera and sequence.
type Frame struct {
	Camera     string
	Seq        uint64
	Detections []Detection
	// LatencyMs is the side's latency for this frame; negative: unknown (left out of the
	// percentiles).
	LatencyMs float64
}

// ClassStats are the candidate's scores against the primary for one class, or for all.
type ClassStats struct {
	Class int
	Label string
	// Primary and Candidate count the detections of each side on the compared frames.
	Primary, Candidate int
	// Matched counts pairs (same class, IoU ≥ the threshold), each detection in one pair.
	Matched int
	// Precision is Matched/Candidate, Recall Matched/Primary, F1 their harmonic mean; each
	// is 1 when its denominator is 0 (nothing to get wrong).
	Precision, Recall, F1 float64
	// MeanIoU is the mean IoU of the matched pairs; 0 without matches.
	MeanIoU float64
	// CountDelta is Candidate - Primary.
	CountDelta int
}

// Latency holds a side's latency percentiles in milliseconds.
type Latency struct {
	P50, P99 float64
	Frames   int // frames with a known latency
}

// Report is the outcome of Compare.
type Report struct {
	// Frames is how many frames both sides have.
	Frames int
	// OnlyPrimary and OnlyCandidate count frames only one side has.
	OnlyPrimary, OnlyCandidate int
	// Classes holds one entry per class either side detected, by class id.
	Classes []ClassStats
	// Overall adds every class up (MeanIoU over all matches).
	Overall ClassStats
	// Latency of each side, over the frames both sides have.
	Primary, Candidate Latency
}

type frameKey struct {
	camera string
	seq    uint64
}

// Compare scores candidate against primary. Frames are matched by (camera, seq); a frame
// listed twice on a side counts once (the last one). iou ≤ 0 means DefaultIoU.
func Compare(primary, candidate []Frame, iou float64) Report {
	prim := index(primary)
	cand := index(candidate)
	t := NewTally(iou)
	t.exactAll = true // every frame is in memory already: exact percentiles
	for k, p := range prim {
		c, ok := cand[k]
		if !ok {
			t.OnlyPrimary++
			continue
		}
		t.Match(p, c)
	}
	for k := range cand {
		if _, ok := prim[k]; !ok {
			t.OnlyCandidate++
		}
	}
	return t.Report()
}

func index(frames []Frame) map[frameKey]Frame {
	m := make(map[frameKey]Frame, len(frames))
	for _, f := range frames {
		m[frameKey{f.Camera, f.Seq}] = f
	}
	return m
}

// Tally is Compare one frame at a time, for frames joined elsewhere (a stream of results
// too large to hold): Match scores a frame both sides have, OnlyPrimary and OnlyCandidate
// count the others, Add sums tallies (the buckets of a sliding window), Report scores.
// Its size does not grow with the frames it counts, but for the latencies: it keeps each
// side's first ExactLatencies values, and a histogram of log-spaced buckets 1% wide
// beyond that, from which the percentiles come (within 1%) once there are more.
type Tally struct {
	// Frames is how many frames both sides have; OnlyPrimary and OnlyCandidate count
	// frames only one side has.
	Frames, OnlyPrimary, OnlyCandidate int

	iou        float32
	classes    map[int]*acc
	total      acc
	latP, latC latencies
	exactAll   bool
}

// ExactLatencies is how many latencies per side a Tally keeps as they are.
const ExactLatencies = 1024

// NewTally returns an empty tally matching detections at iou (≤ 0: DefaultIoU).
func NewTally(iou float64) *Tally {
	if iou <= 0 {
		iou = DefaultIoU
	}
	return &Tally{iou: float32(iou), classes: map[int]*acc{}}
}

// Match scores one frame both sides have.
func (t *Tally) Match(p, c Frame) {
	t.Frames++
	if p.LatencyMs >= 0 {
		t.latP.add(p.LatencyMs, t.exactAll)
	}
	if c.LatencyMs >= 0 {
		t.latC.add(c.LatencyMs, t.exactAll)
	}
	matchFrame(p.Detections, c.Detections, t.iou, t.classes, &t.total)
}

// Add adds o's counts to t (the IoU is t's).
func (t *Tally) Add(o *Tally) {
	t.Frames += o.Frames
	t.OnlyPrimary += o.OnlyPrimary
	t.OnlyCandidate += o.OnlyCandidate
	for id, a := range o.classes {
		b, ok := t.classes[id]
		if !ok {
			b = &acc{}
			t.classes[id] = b
		}
		b.add(a)
	}
	t.total.add(&o.total)
	t.latP.merge(&o.latP, t.exactAll)
	t.latC.merge(&o.latC, t.exactAll)
}

// Report scores what t counted.
func (t *Tally) Report() Report {
	rep := Report{Frames: t.Frames, OnlyPrimary: t.OnlyPrimary, OnlyCandidate: t.OnlyCandidate}
	ids := make([]int, 0, len(t.classes))
	for id := range t.classes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		rep.Classes = append(rep.Classes, t.classes[id].stats(id))
	}
	rep.Overall = t.total.stats(-1)
	rep.Primary, rep.Candidate = t.latP.percentiles(), t.latC.percentiles()
	return rep
}

// latencies holds one side's latencies: all of them while there are at most
// ExactLatencies (or exactAll), and a histogram of every one.
type latencies struct {
	n     int
	exact []float64 // the n values while they fit; dropped after
	hist  map[int32]int
}

// logStep is the width of a latency histogram bucket: 1%.
var logStep = math.Log(1.01)

func (l *latencies) add(v float64, exactAll bool) {
	if l.n == len(l.exact) && (exactAll || l.n < ExactLatencies) {
		l.exact = append(l.exact, v)
	} else {
		l.exact = nil
	}
	l.n++
	if l.hist == nil {
		l.hist = map[int32]int{}
	}
	l.hist[bucketOf(v)]++
}

func bucketOf(v float64) int32 {
	if v <= 0 {
		return math.MinInt32
	}
	return int32(math.Floor(math.Log(v) / logStep))
}

func (l *latencies) merge(o *latencies, exactAll bool) {
	if o.n == 0 {
		return
	}
	if l.n == len(l.exact) && o.n == len(o.exact) && (exactAll || l.n+o.n <= ExactLatencies) {
		l.exact = append(l.exact, o.exact...)
	} else {
		l.exact = nil
	}
	l.n += o.n
	if l.hist == nil {
		l.hist = map[int32]int{}
	}
	for b, k := range o.hist {
		l.hist[b] += k
	}
}

// percentiles are the nearest-rank 50th and 99th: exact while every value is kept, else
// the geometric middle of the histogram bucket holding that rank.
func (l *latencies) percentiles() Latency {
	if l.n == 0 {
		return Latency{}
	}
	if l.n == len(l.exact) {
		v := slices.Clone(l.exact)
		return latency(v)
	}
	bs := make([]int32, 0, len(l.hist))
	for b := range l.hist {
		bs = append(bs, b)
	}
	slices.Sort(bs)
	at := func(q float64) float64 {
		rank := min(max(int(math.Ceil(q/100*float64(l.n))), 1), l.n)
		seen := 0
		for _, b := range bs {
			if seen += l.hist[b]; seen >= rank {
				if b == math.MinInt32 {
					return 0
				}
				return math.Exp((float64(b) + 0.5) * logStep)
			}
		}
		return 0
	}
	return Latency{P50: at(50), P99: at(99), Frames: l.n}
}

// acc accumulates one class's counts.
type acc struct {
	label                       string
	primary, candidate, matched int
	iouSum                      float64
}

func (a *acc) add(o *acc) {
	if a.label == "" {
		a.label = o.label
	}
	a.primary += o.primary
	a.candidate += o.candidate
	a.matched += o.matched
	a.iouSum += o.iouSum
}

func (a *acc) stats(class int) ClassStats {
	s := ClassStats{Class: class, Label: a.label, Primary: a.primary, Candidate: a.candidate, Matched: a.matched,
		CountDelta: a.candidate - a.primary}
	s.Precision = ratio(a.matched, a.candidate)
	s.Recall = ratio(a.matched, a.primary)
	if s.Precision+s.Recall > 0 {
		s.F1 = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
	}
	if a.matched > 0 {
		s.MeanIoU = a.iouSum / float64(a.matched)
	}
	return s
}

func ratio(n, d int) float64 {
	if d == 0 {
		return 1
	}
	return float64(n) / float64(d)
}

// matchFrame matches one frame's detections greedily, highest IoU first, within each class.
func matchFrame(p, c []Detection, thresh float32, classes map[int]*acc, total *acc) {
	get := func(d Detection) *acc {
		a, ok := classes[d.Class]
		if !ok {
			a = &acc{}
			classes[d.Class] = a
		}
		if a.label == "" {
			a.label = d.Label
		}
		return a
	}
	for _, d := range p {
		get(d).primary++
		total.primary++
	}
	for _, d := range c {
		get(d).candidate++
		total.candidate++
	}
	type pair struct {
		i, j int
		iou  float32
	}
	var pairs []pair
	for i, a := range p {
		for j, b := range c {
			if a.Class != b.Class {
				continue
			}
			if v := functions.IoU(a.Box, b.Box); v >= thresh {
				pairs = append(pairs, pair{i, j, v})
			}
		}
	}
	// Highest IoU first; ties by position, so the outcome does not depend on map order.
	slices.SortFunc(pairs, func(x, y pair) int {
		if c := cmp.Compare(y.iou, x.iou); c != 0 {
			return c
		}
		if c := cmp.Compare(x.i, y.i); c != 0 {
			return c
		}
		return cmp.Compare(x.j, y.j)
	})
	usedP, usedC := make([]bool, len(p)), make([]bool, len(c))
	for _, pr := range pairs {
		if usedP[pr.i] || usedC[pr.j] {
			continue
		}
		usedP[pr.i], usedC[pr.j] = true, true
		a := classes[p[pr.i].Class]
		a.matched++
		a.iouSum += float64(pr.iou)
		total.matched++
		total.iouSum += float64(pr.iou)
	}
}

// latency returns the nearest-rank 50th and 99th percentiles.
func latency(v []float64) Latency {
	if len(v) == 0 {
		return Latency{}
	}
	slices.Sort(v)
	return Latency{P50: Percentile(v, 50), P99: Percentile(v, 99), Frames: len(v)}
}

// Percentile is the nearest-rank percentile q (0..100) of sorted values.
func Percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// FromResult is a function's result for one frame as Compare takes it (latency unknown).
func FromResult(camera string, seq uint64, r functions.FrameResult) Frame {
	f := Frame{Camera: camera, Seq: seq, LatencyMs: -1, Detections: make([]Detection, 0, len(r.Detections))}
	for _, d := range r.Detections {
		f.Detections = append(f.Detections, Detection{Class: d.ClassID, Label: d.Label, Box: d.Box})
	}
	return f
}
