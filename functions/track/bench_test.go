package track

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/diplip/diplip/functions"
)

// benchFrames renders n people moving smoothly over a 1920×1080 frame, each on its own
// ellipse at up to ~6 px/frame, periodic over the returned frames so that a benchmark
// can loop over them without teleports. One detection in ten is low-score and one in
// forty is missing, so every association stage has work.
func benchFrames(n int) [][]functions.Detection {
	const period = 600
	rng := rand.New(rand.NewPCG(uint64(n), 42))
	type path struct{ cx, cy, ax, ay, phase float64 }
	paths := make([]path, n)
	for i := range paths {
		paths[i] = path{
			cx: 200 + rng.Float64()*1520, cy: 200 + rng.Float64()*680,
			ax: 50 + rng.Float64()*500, ay: 20 + rng.Float64()*150, phase: rng.Float64() * 2 * math.Pi,
		}
	}
	frames := make([][]functions.Detection, period)
	for f := range frames {
		a := 2 * math.Pi * float64(f) / period
		for _, p := range paths {
			r := rng.Float64()
			if r < 0.025 {
				continue
			}
			score := float32(0.6 + 0.4*rng.Float64())
			if r < 0.125 {
				score = 0.2 + 0.2*rng.Float32()
			}
			x := p.cx + p.ax*math.Cos(a+p.phase) + rng.Float64()*3 - 1.5
			y := p.cy + p.ay*math.Sin(a+p.phase) + rng.Float64()*3 - 1.5
			frames[f] = append(frames[f], functions.Detection{Score: score, Label: "person", Box: boxAt(x, y, 40, 100)})
		}
		rng.Shuffle(len(frames[f]), func(i, j int) { frames[f][i], frames[f][j] = frames[f][j], frames[f][i] })
	}
	return frames
}

// reportPercentiles adds the per-frame p50 and p99 to the benchmark's output.
func reportPercentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	if len(d) == 0 {
		return
	}
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns/frame")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns/frame")
}

func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("dets=%d", n), func(b *testing.B) {
			frames := benchFrames(n)
			tr := mustTracker(b, DefaultConfig())
			for f, d := range frames { // warm up: the tracks exist, as in a running camera
				tr.Update(uint64(f+1), d)
			}
			seq := uint64(len(frames))
			times := make([]time.Duration, 0, b.N)
			tracks := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				seq++
				start := time.Now()
				res := tr.Update(seq, frames[i%len(frames)])
				times = append(times, time.Since(start))
				tracks += len(res.Tracks)
			}
			b.StopTimer()
			reportPercentiles(b, times)
			b.ReportMetric(float64(tracks)/float64(b.N), "tracks/frame")
			b.ReportMetric(float64(tr.nextID-1), "ids")
		})
	}
}

func BenchmarkCameraUpdate(b *testing.B) {
	frames := benchFrames(50)
	cc := DefaultCounterConfig()
	cc.Zones = []Zone{
		{Name: "door", Line: []Point{{100, 540}, {1800, 540}}},
		{Name: "gate", Line: []Point{{960, 50}, {960, 1030}}},
		{Name: "lobby", Polygon: []Point{{200, 200}, {900, 200}, {900, 700}, {200, 700}}},
	}
	cam := mustCamera(b, cc)
	for f, d := range frames {
		cam.Update(uint64(f+1), d)
	}
	seq := uint64(len(frames))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		seq++
		cam.Update(seq, frames[i%len(frames)])
	}
	b.StopTimer()
	blob, _ := cam.MarshalState()
	b.ReportMetric(float64(len(blob)), "state-bytes")
}

// BenchmarkAssignCrowd is the worst case of the solver: n tracks all overlapping n
// detections, one connected cluster.
func BenchmarkAssignCrowd(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			cost := make([]float64, n*n)
			for i := range cost {
				cost[i] = rng.Float64() * 0.8
			}
			b.ReportAllocs()
			for b.Loop() {
				assign(cost, n, n, 0.7)
			}
		})
	}
}
