package rollout

import (
	"math"
	"testing"

	"github.com/diplip/diplip/functions"
)

// A chain diff pairs the detections of a frame by class and IoU and compares their outputs:
// embeddings by cosine similarity (the p10 exact up to exactCosines pairs, then from the
// histogram, never above the exact value and within its bin), labels by the best one.
func TestChainTally(t *testing.T) {
	box := functions.Box{X2: 10, Y2: 10}
	far := functions.Box{X1: 50, Y1: 50, X2: 60, Y2: 60}
	p := chainFrame{{class: 0, box: box, emb: []float32{1, 0}, top1: -1}, {class: 2, box: far, top1: 7}, {class: 0, box: far, top1: -1}}
	c := chainFrame{{class: 2, box: far, top1: 8}, {class: 0, box: box, emb: []float32{1, 1}, top1: -1}, {class: 1, box: far, emb: []float32{0, 1}, top1: -1}}
	var tl chainTally
	tl.match(p, c, 0.5)
	s := tl.stats("det")
	if s.Detections != 2 || s.PrimaryEmbedded != 1 || s.CandidateEmbedded != 2 || s.Embedded != 1 || math.Abs(s.CosineMean-math.Sqrt2/2) > 1e-9 ||
		s.PrimaryLabeled != 1 || s.CandidateLabeled != 1 || s.Labeled != 1 || s.Top1Agreement != 0 || s.First != "det" {
		t.Fatalf("%+v", s)
	}

	// 10,000 cosines: 1 - c spread from 1e-6 to 1e-2; split over two tallies.
	var a, b chainTally
	var exact []float64
	for i := range 10_000 {
		c := 1 - math.Pow(10, -6+4*float64(i)/9_999)
		exact = append(exact, c)
		if i%2 == 0 {
			a.addCos(c)
		} else {
			b.addCos(c)
		}
	}
	if a.exact != nil || len(a.exact) == a.cosN {
		t.Fatalf("%d cosines kept exactly, want none past %d", len(a.exact), exactCosines)
	}
	a.add(&b)
	got := a.stats("det").CosineP10
	want := 1 - math.Pow(10, -6+4*float64(8_999)/9_999) // the 1,000th lowest of 10,000
	if got > want || want-got > (1-want)*0.13 {
		t.Fatalf("p10 from the histogram %.8f, exact %.8f", got, want)
	}
	var few chainTally
	for _, c := range exact[:100] { // descending: the 10th lowest is exact[90]
		few.addCos(c)
	}
	if got, want := few.stats("det").CosineP10, exact[90]; got != want {
		t.Fatalf("exact p10 %.10f, want %.10f", got, want)
	}
}
