package compare_test

import (
	"math"
	"testing"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
)

func det(class int, x1, y1, x2, y2 float32) compare.Detection {
	return compare.Detection{Class: class, Box: functions.Box{X1: x1, Y1: y1, X2: x2, Y2: y2}}
}

func frame(cam string, seq uint64, lat float64, ds ...compare.Detection) compare.Frame {
	return compare.Frame{Camera: cam, Seq: seq, LatencyMs: lat, Detections: ds}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCompare(t *testing.T) {
	person := det(0, 0, 0, 10, 10)
	car := det(2, 100, 100, 200, 150)
	for _, tc := range []struct {
		name                 string
		primary, candidate   []compare.Frame
		frames, onlyP, onlyC int
		overall              compare.ClassStats // Class, Label ignored
		classes              int
	}{
		{"identical results", []compare.Frame{frame("a", 1, 5, person, car), frame("a", 2, 5, car)},
			[]compare.Frame{frame("a", 1, 5, person, car), frame("a", 2, 5, car)}, 2, 0, 0,
			compare.ClassStats{Primary: 3, Candidate: 3, Matched: 3, Precision: 1, Recall: 1, F1: 1, MeanIoU: 1}, 2},
		{"nothing on either side is perfect agreement", []compare.Frame{frame("a", 1, 5)}, []compare.Frame{frame("a", 1, 5)}, 1, 0, 0,
			compare.ClassStats{Precision: 1, Recall: 1, F1: 1}, 0},
		{"the candidate misses one", []compare.Frame{frame("a", 1, 5, person, car)}, []compare.Frame{frame("a", 1, 5, car)}, 1, 0, 0,
			compare.ClassStats{Primary: 2, Candidate: 1, Matched: 1, Precision: 1, Recall: 0.5, F1: 2.0 / 3, MeanIoU: 1, CountDelta: -1}, 2},
		{"the candidate adds one", []compare.Frame{frame("a", 1, 5, car)}, []compare.Frame{frame("a", 1, 5, car, person)}, 1, 0, 0,
			compare.ClassStats{Primary: 1, Candidate: 2, Matched: 1, Precision: 0.5, Recall: 1, F1: 2.0 / 3, MeanIoU: 1, CountDelta: 1}, 2},
		{"same box, other class: no match", []compare.Frame{frame("a", 1, 5, det(0, 0, 0, 10, 10))}, []compare.Frame{frame("a", 1, 5, det(1, 0, 0, 10, 10))}, 1, 0, 0,
			compare.ClassStats{Primary: 1, Candidate: 1, Precision: 0, Recall: 0, F1: 0}, 2},
		{"IoU below 0.5: no match", []compare.Frame{frame("a", 1, 5, det(0, 0, 0, 10, 10))}, []compare.Frame{frame("a", 1, 5, det(0, 5, 0, 15, 10))}, 1, 0, 0,
			compare.ClassStats{Primary: 1, Candidate: 1}, 1}, // IoU 1/3
		{"IoU at 0.6: a match with its IoU", []compare.Frame{frame("a", 1, 5, det(0, 0, 0, 10, 10))}, []compare.Frame{frame("a", 1, 5, det(0, 0, 0, 10, 6))}, 1, 0, 0,
			compare.ClassStats{Primary: 1, Candidate: 1, Matched: 1, Precision: 1, Recall: 1, F1: 1, MeanIoU: 0.6}, 1},
		{"frames only one side has are not scored", []compare.Frame{frame("a", 1, 5, car), frame("a", 2, 5, car), frame("b", 1, 5, car)},
			[]compare.Frame{frame("a", 1, 5, car), frame("a", 3, 5, person)}, 1, 2, 1,
			compare.ClassStats{Primary: 1, Candidate: 1, Matched: 1, Precision: 1, Recall: 1, F1: 1, MeanIoU: 1}, 1},
		{"the best IoU wins a contested box", []compare.Frame{frame("a", 1, 5, det(0, 0, 0, 10, 10), det(0, 0, 0, 10, 8))},
			[]compare.Frame{frame("a", 1, 5, det(0, 0, 0, 10, 9))}, 1, 0, 0,
			compare.ClassStats{Primary: 2, Candidate: 1, Matched: 1, Precision: 1, Recall: 0.5, F1: 2.0 / 3, MeanIoU: 0.9, CountDelta: -1}, 1},
		{"a duplicate frame counts once", []compare.Frame{frame("a", 1, 5, car), frame("a", 1, 5, car)}, []compare.Frame{frame("a", 1, 5, car)}, 1, 0, 0,
			compare.ClassStats{Primary: 1, Candidate: 1, Matched: 1, Precision: 1, Recall: 1, F1: 1, MeanIoU: 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := compare.Compare(tc.primary, tc.candidate, 0)
			if r.Frames != tc.frames || r.OnlyPrimary != tc.onlyP || r.OnlyCandidate != tc.onlyC || len(r.Classes) != tc.classes {
				t.Fatalf("frames %d only %d/%d classes %d; want %d only %d/%d classes %d", r.Frames, r.OnlyPrimary, r.OnlyCandidate,
					len(r.Classes), tc.frames, tc.onlyP, tc.onlyC, tc.classes)
			}
			o, w := r.Overall, tc.overall
			if o.Primary != w.Primary || o.Candidate != w.Candidate || o.Matched != w.Matched || o.CountDelta != w.CountDelta ||
				!near(o.Precision, w.Precision) || !near(o.Recall, w.Recall) || !near(o.F1, w.F1) || math.Abs(o.MeanIoU-w.MeanIoU) > 1e-6 {
				t.Fatalf("overall %+v; want %+v", o, w)
			}
		})
	}
}

// Per class: a class the candidate lost entirely has recall 0 and the right delta, while
// the other stays perfect.
func TestComparePerClass(t *testing.T) {
	p := []compare.Frame{frame("a", 1, 5, det(0, 0, 0, 10, 10), det(2, 50, 50, 90, 90), det(2, 0, 50, 40, 90))}
	c := []compare.Frame{frame("a", 1, 5, det(0, 0, 0, 10, 10))}
	r := compare.Compare(p, c, 0.5)
	if len(r.Classes) != 2 {
		t.Fatalf("classes %+v", r.Classes)
	}
	person, car := r.Classes[0], r.Classes[1]
	if person.Class != 0 || person.Precision != 1 || person.Recall != 1 || person.CountDelta != 0 {
		t.Fatalf("person %+v", person)
	}
	if car.Class != 2 || car.Recall != 0 || car.Precision != 1 || car.CountDelta != -2 || car.F1 != 0 {
		t.Fatalf("car %+v", car)
	}
}

func TestLatencyPercentiles(t *testing.T) {
	var p, c []compare.Frame
	for i := range 100 {
		p = append(p, frame("a", uint64(i), float64(i+1)))
		c = append(c, frame("a", uint64(i), float64(2*(i+1))))
	}
	c[0].LatencyMs = -1 // unknown: left out
	r := compare.Compare(p, c, 0)
	if r.Primary.P50 != 50 || r.Primary.P99 != 99 || r.Primary.Frames != 100 {
		t.Fatalf("primary latency %+v", r.Primary)
	}
	if r.Candidate.P50 != 102 || r.Candidate.P99 != 200 || r.Candidate.Frames != 99 {
		t.Fatalf("candidate latency %+v", r.Candidate)
	}
	if compare.Percentile(nil, 50) != 0 {
		t.Fatal("percentile of nothing")
	}
}

// A Tally fed frame by frame, in two halves added up, scores as Compare does; beyond
// ExactLatencies a side's percentiles come from the histogram, within 1%.
func TestTallyIsCompareFrameByFrame(t *testing.T) {
	person, car := det(0, 0, 0, 10, 10), det(2, 100, 100, 200, 150)
	var p, c []compare.Frame
	for i := range 3000 {
		p = append(p, frame("a", uint64(i), float64(i+1), person, car))
		ds := []compare.Detection{person}
		if i%3 == 0 {
			ds = append(ds, det(2, 100, 100, 200, 200))
		}
		c = append(c, frame("a", uint64(i), float64(i+1), ds...))
	}
	want := compare.Compare(p, c, 0)
	a, b := compare.NewTally(0), compare.NewTally(0)
	for i := range p {
		if i < len(p)/2 {
			a.Match(p[i], c[i])
		} else {
			b.Match(p[i], c[i])
		}
	}
	a.OnlyPrimary++
	a.Add(b)
	got := a.Report()
	if got.Frames != want.Frames || got.OnlyPrimary != 1 || len(got.Classes) != len(want.Classes) || got.Overall != want.Overall {
		t.Fatalf("tally %+v\nwant %+v", got, want)
	}
	for i := range got.Classes {
		if got.Classes[i] != want.Classes[i] {
			t.Fatalf("class %+v, want %+v", got.Classes[i], want.Classes[i])
		}
	}
	if want.Primary.P50 != 1500 || want.Primary.P99 != 2970 {
		t.Fatalf("exact percentiles %+v", want.Primary)
	}
	if l := got.Primary; l.Frames != 3000 || math.Abs(l.P50-1500)/1500 > 0.01 || math.Abs(l.P99-2970)/2970 > 0.01 {
		t.Fatalf("histogram percentiles %+v, want within 1%% of %+v", l, want.Primary)
	}
	small := compare.NewTally(0)
	small.Match(p[0], c[0])
	small.Match(p[1], c[1])
	if l := small.Report().Primary; l.P50 != 1 || l.P99 != 2 {
		t.Fatalf("few latencies are exact: %+v", l)
	}
}
