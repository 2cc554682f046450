package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/track"
)

// runTracker measures the tracker stage's cost per frame as a runner pays it: a camera's
// track.Camera (tracker and a counting line) updated with n detections of people walking
// on smooth paths, plus encoding its checkpoint, over frames frames after a warm-up.
func runTracker(n, frames int) (Row, error) {
	cc := track.DefaultCounterConfig()
	cc.Zones = []track.Zone{{Name: "line", Line: []track.Point{{X: 0, Y: 540}, {X: 1919, Y: 540}}}}
	cam, err := track.NewCamera(track.DefaultConfig(), cc)
	if err != nil {
		return Row{}, err
	}
	dets := walkers(n, frames+100)
	var times, encode []float64
	var size int
	for f, d := range dets {
		t0 := time.Now()
		cam.Update(uint64(f+1), d)
		t1 := time.Now()
		b, err := cam.MarshalState()
		if err != nil {
			return Row{}, err
		}
		if f >= 100 { // after the warm-up: the tracks exist, as in a running camera
			times = append(times, ms(t1.Sub(t0)))
			encode = append(encode, ms(time.Since(t1)))
			size = len(b)
		}
	}
	return Row{Scenario: fmt.Sprintf("tracker-%d", n), P50: Percentile(times, 0.5), P95: Percentile(times, 0.95),
		P99: Percentile(times, 0.99), Note: fmt.Sprintf("ms per frame to track %d detections and count a line; the checkpoint (%d bytes) takes p50 %.3f ms more",
			n, size, Percentile(encode, 0.5))}, nil
}

// walkers renders n people on ellipses over a 1920×1080 frame (one detection in ten
// low-score, one in forty missing), frames frames long.
func walkers(n, frames int) [][]functions.Detection {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	type path struct{ cx, cy, ax, ay, phase float64 }
	paths := make([]path, n)
	for i := range paths {
		paths[i] = path{cx: 200 + rng.Float64()*1520, cy: 200 + rng.Float64()*680,
			ax: 50 + rng.Float64()*500, ay: 20 + rng.Float64()*300, phase: rng.Float64() * 2 * math.Pi}
	}
	out := make([][]functions.Detection, frames)
	for f := range out {
		a := 2 * math.Pi * float64(f) / 600
		for _, p := range paths {
			r := rng.Float64()
			if r < 0.025 {
				continue
			}
			score := float32(0.6 + 0.4*rng.Float64())
			if r < 0.125 {
				score = 0.2 + 0.2*rng.Float32()
			}
			x, y := p.cx+p.ax*math.Cos(a+p.phase), p.cy+p.ay*math.Sin(a+p.phase)
			out[f] = append(out[f], functions.Detection{Score: score, Label: "person",
				Box: functions.Box{X1: float32(x - 20), Y1: float32(y - 50), X2: float32(x + 20), Y2: float32(y + 50)}})
		}
	}
	return out
}
