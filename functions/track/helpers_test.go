package track

import (
	"math/rand/v2"
	"testing"

	"github.com/diplip/diplip/functions"
)

// mover is a synthetic object moving at constant velocity: its box centre is at
// (x, y) + (vx, vy)·(f-1) in frame f (1-based).
type mover struct {
	x, y, vx, vy, w, h float64
	class              int
	score              func(f int) float32 // nil: 0.9
	visible            func(f int) bool    // nil: always
}

func (m mover) center(f int) (float64, float64) {
	return m.x + m.vx*float64(f-1), m.y + m.vy*float64(f-1)
}

func boxAt(cx, cy, w, h float64) functions.Box {
	return functions.Box{X1: float32(cx - w/2), Y1: float32(cy - h/2), X2: float32(cx + w/2), Y2: float32(cy + h/2)}
}

// scene renders frames 1..n of the movers as detections, with uniform noise of ±noise
// pixels on every box edge; owner[f][i] is the mover of detection i of frame f+1.
// The detections of a frame are shuffled, so that nothing depends on their order.
func scene(ms []mover, n int, noise float64, seed uint64) (frames [][]functions.Detection, owner [][]int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	jit := func() float32 { return float32((rng.Float64()*2 - 1) * noise) }
	for f := 1; f <= n; f++ {
		var dets []functions.Detection
		var own []int
		for i, m := range ms {
			if m.visible != nil && !m.visible(f) {
				continue
			}
			s := float32(0.9)
			if m.score != nil {
				s = m.score(f)
			}
			cx, cy := m.center(f)
			b := boxAt(cx, cy, m.w, m.h)
			b.X1, b.Y1, b.X2, b.Y2 = b.X1+jit(), b.Y1+jit(), b.X2+jit(), b.Y2+jit()
			dets = append(dets, functions.Detection{ClassID: m.class, Label: label(m.class), Score: s, Box: b})
			own = append(own, i)
		}
		rng.Shuffle(len(dets), func(a, b int) { dets[a], dets[b] = dets[b], dets[a]; own[a], own[b] = own[b], own[a] })
		frames = append(frames, dets)
		owner = append(owner, own)
	}
	return frames, owner
}

func label(class int) string {
	switch class {
	case 0:
		return "person"
	case 2:
		return "car"
	}
	return ""
}

// trackIDs runs a tracker over the frames (seq = frame number) and returns, per mover,
// the track ID its detection got in each frame (0: none, or not visible).
func trackIDs(t *testing.T, tr *Tracker, frames [][]functions.Detection, owner [][]int, movers int) [][]uint64 {
	t.Helper()
	ids := make([][]uint64, movers)
	for i := range ids {
		ids[i] = make([]uint64, len(frames))
	}
	for f, dets := range frames {
		res := tr.Update(uint64(f+1), dets)
		if len(res.DetTracks) != len(dets) {
			t.Fatalf("frame %d: %d DetTracks for %d detections", f+1, len(res.DetTracks), len(dets))
		}
		for i, id := range res.DetTracks {
			ids[owner[f][i]][f] = id
		}
		for _, tk := range res.Tracks {
			if res.DetTracks[tk.Det] != tk.ID {
				t.Fatalf("frame %d: track %d says detection %d, which maps to %d", f+1, tk.ID, tk.Det, res.DetTracks[tk.Det])
			}
		}
	}
	return ids
}

// stableID checks that a mover kept one ID over the frames where it had one, and had
// one in at least `want` frames; it returns the ID.
func stableID(t *testing.T, name string, ids []uint64, want int) uint64 {
	t.Helper()
	var id uint64
	n := 0
	for f, v := range ids {
		if v == 0 {
			continue
		}
		n++
		if id == 0 {
			id = v
		} else if v != id {
			t.Fatalf("%s: ID %d in frame %d, was %d (ids %v)", name, v, f+1, id, ids)
		}
	}
	if n < want {
		t.Fatalf("%s: tracked in %d frames, want at least %d (ids %v)", name, n, want, ids)
	}
	return id
}

func mustTracker(t testing.TB, cfg Config) *Tracker {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
