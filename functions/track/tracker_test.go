package track

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the default config: %v", err)
	}
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"zero config", func(c *Config) { *c = Config{} }, "MatchIoU"},
		{"high above 1", func(c *Config) { c.HighThresh = 1.5 }, "HighThresh"},
		{"low negative", func(c *Config) { c.LowThresh = -0.1 }, "LowThresh"},
		{"low NaN", func(c *Config) { c.LowThresh = nan }, "LowThresh"},
		{"low above high", func(c *Config) { c.LowThresh = 0.6 }, "LowThresh"},
		{"new below high", func(c *Config) { c.NewTrackThresh = 0.4 }, "NewTrackThresh"},
		{"match IoU zero", func(c *Config) { c.MatchIoU = 0 }, "MatchIoU"},
		{"match IoU above 1", func(c *Config) { c.MatchIoU = 2 }, "MatchIoU"},
		{"low match IoU zero", func(c *Config) { c.LowMatchIoU = 0 }, "LowMatchIoU"},
		{"min hits zero", func(c *Config) { c.MinHits = 0 }, "MinHits"},
		{"max lost negative", func(c *Config) { c.MaxLost = -1 }, "MaxLost"},
		{"max lost huge", func(c *Config) { c.MaxLost = 1 << 30 }, "MaxLost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
			if _, err := New(cfg); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestTracker(t *testing.T) {
	person := func(x, y, vx, vy float64) mover { return mover{x: x, y: y, vx: vx, vy: vy, w: 40, h: 100} }
	between := func(a, b int) func(int) bool { return func(f int) bool { return f < a || f > b } }

	t.Run("first frame confirmed at once, later tracks after MinHits", func(t *testing.T) {
		tr := mustTracker(t, DefaultConfig())
		late := person(600, 300, 3, 0)
		late.visible = func(f int) bool { return f >= 5 }
		ms := []mover{person(100, 300, 5, 0), person(300, 300, -5, 0), late}
		frames, owner := scene(ms, 10, 0, 1)
		ids := trackIDs(t, tr, frames, owner, len(ms))
		if ids[0][0] == 0 || ids[1][0] == 0 {
			t.Fatalf("objects of the first frame not confirmed at once: %v %v", ids[0], ids[1])
		}
		if ids[2][4] != 0 || ids[2][5] != 3 {
			t.Fatalf("the late object: ids %v, want 0 in frame 5 and ID 3 from frame 6", ids[2])
		}
	})

	t.Run("a one-frame false positive spends no ID", func(t *testing.T) {
		tr := mustTracker(t, DefaultConfig())
		a := person(100, 300, 0, 0)
		ghost := person(800, 300, 0, 0)
		ghost.visible = func(f int) bool { return f == 3 }
		b := person(500, 300, 0, 0)
		b.visible = func(f int) bool { return f >= 6 }
		frames, owner := scene([]mover{a, ghost, b}, 10, 0, 2)
		ids := trackIDs(t, tr, frames, owner, 3)
		if stableID(t, "ghost", ids[1], 0) != 0 {
			t.Fatalf("the ghost got an ID: %v", ids[1])
		}
		if got := stableID(t, "b", ids[2], 4); got != 2 {
			t.Fatalf("b got ID %d, want 2: the ghost must not have used one", got)
		}
	})

	t.Run("crossing paths at constant velocity keep their IDs", func(t *testing.T) {
		for _, dy := range []float64{0, 20, 60} {
			tr := mustTracker(t, DefaultConfig())
			ms := []mover{person(100, 300, 8, 0), person(700, 300+dy, -8, 0)}
			frames, owner := scene(ms, 75, 1.5, 3)
			ids := trackIDs(t, tr, frames, owner, 2)
			a, b := stableID(t, "left-to-right", ids[0], 70), stableID(t, "right-to-left", ids[1], 70)
			if a == b {
				t.Fatalf("dy %v: both objects tracked as %d", dy, a)
			}
		}
	})

	t.Run("crossing with the far one hidden keeps the IDs", func(t *testing.T) {
		// As NMS would do: while the two overlap, only the near one is detected.
		near := person(100, 300, 8, 0)
		far := person(700, 304, -8, 0)
		far.visible = func(f int) bool {
			ax, ay := near.center(f)
			bx, by := far.center(f)
			return functions.IoU(boxAt(ax, ay, 40, 100), boxAt(bx, by, 40, 100)) < 0.2
		}
		tr := mustTracker(t, DefaultConfig())
		frames, owner := scene([]mover{near, far}, 75, 1, 4)
		ids := trackIDs(t, tr, frames, owner, 2)
		a, b := stableID(t, "near", ids[0], 74), stableID(t, "far", ids[1], 60)
		if a == b {
			t.Fatalf("both tracked as %d", a)
		}
	})

	t.Run("occlusion of 3 to 5 frames keeps the ID", func(t *testing.T) {
		for _, gap := range []int{3, 4, 5} {
			m := person(100, 300, 6, 2)
			m.visible = between(20, 19+gap)
			tr := mustTracker(t, DefaultConfig())
			frames, owner := scene([]mover{m, person(900, 500, -4, 0)}, 40, 1.5, uint64(gap))
			ids := trackIDs(t, tr, frames, owner, 2)
			stableID(t, "occluded", ids[0], 40-gap)
		}
	})

	t.Run("two objects swapping sides", func(t *testing.T) {
		// One passes above the other, partly overlapping, and both keep going.
		ms := []mover{person(200, 300, 10, 0), person(800, 340, -10, 0)}
		tr := mustTracker(t, DefaultConfig())
		frames, owner := scene(ms, 60, 2, 5)
		ids := trackIDs(t, tr, frames, owner, 2)
		a, b := stableID(t, "a", ids[0], 60), stableID(t, "b", ids[1], 60)
		if a == b {
			t.Fatalf("both tracked as %d", a)
		}
		ax, _ := ms[0].center(60)
		bx, _ := ms[1].center(60)
		if ax < bx {
			t.Fatal("the scene did not swap them")
		}
	})

	t.Run("low-score detections keep a track alive", func(t *testing.T) {
		m := person(100, 300, 5, 0)
		m.score = func(f int) float32 {
			if f > 10 && f <= 20 {
				return 0.3
			}
			return 0.9
		}
		frames, owner := scene([]mover{m}, 30, 1, 6)
		for _, tc := range []struct {
			name      string
			low       float32
			wantAlive bool
		}{{"second stage", 0.1, true}, {"second stage off", 0.5, false}} {
			cfg := DefaultConfig()
			cfg.LowThresh = tc.low
			tr := mustTracker(t, cfg)
			ids := trackIDs(t, tr, frames, owner, 1)
			alive := slices.IndexFunc(ids[0][10:20], func(v uint64) bool { return v == 0 }) < 0
			if alive != tc.wantAlive {
				t.Fatalf("%s: ids %v", tc.name, ids[0])
			}
			if tc.wantAlive {
				stableID(t, tc.name, ids[0], 30)
			}
		}
	})

	t.Run("lost for more than MaxLost frames gets a new ID", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxLost = 5
		for _, tc := range []struct {
			missing int
			same    bool
		}{{5, true}, {6, false}} {
			tr := mustTracker(t, cfg)
			b := boxAt(300, 300, 40, 100)
			d := []functions.Detection{{Score: 0.9, Box: b}}
			first := tr.Update(1, d).DetTracks[0]
			var removed []uint64
			for s := 2; s <= 1+tc.missing; s++ {
				removed = append(removed, tr.Update(uint64(s), nil).Removed...)
			}
			res := tr.Update(uint64(2+tc.missing), d)
			removed = append(removed, res.Removed...)
			again := res.DetTracks[0]
			if tc.same && (again != first || len(removed) != 0) {
				t.Fatalf("missing %d: ID %d then %d, removed %v", tc.missing, first, again, removed)
			}
			if !tc.same && (!slices.Equal(removed, []uint64{first}) || again == first) {
				t.Fatalf("missing %d: ID %d then %d, removed %v", tc.missing, first, again, removed)
			}
		}
	})

	t.Run("dropped frames predict forward by the gap", func(t *testing.T) {
		m := person(100, 300, 12, 0) // 4 frames move it by more than its width
		frames, _ := scene([]mover{m}, 30, 0, 7)
		tr := mustTracker(t, DefaultConfig())
		var id uint64
		for f := 1; f <= 30; f++ {
			if f > 10 && f < 15 {
				continue // frames 11-14 never arrive
			}
			got := tr.Update(uint64(f), frames[f-1]).DetTracks[0]
			if id == 0 {
				id = got
			}
			if got != id {
				t.Fatalf("frame %d: ID %d, want %d", f, got, id)
			}
		}
	})

	t.Run("a jump in sequence numbers ends the tracks", func(t *testing.T) {
		tr := mustTracker(t, DefaultConfig())
		d := []functions.Detection{{Score: 0.9, Box: boxAt(300, 300, 40, 100)}}
		tr.Update(5, d)
		tr.Update(6, d)
		res := tr.Update(6+1e9, d) // a gateway restart renumbers from the clock
		if !slices.Equal(res.Removed, []uint64{1}) || len(res.Tracks) != 0 || tr.Len() != 0 {
			t.Fatalf("removed %v, tracks %v, %d left", res.Removed, res.Tracks, tr.Len())
		}
		if got := tr.Update(7+1e9, d).DetTracks[0]; got != 2 {
			t.Fatalf("the new track is %d, want 2", got)
		}
	})

	t.Run("a stale frame is ignored", func(t *testing.T) {
		tr := mustTracker(t, DefaultConfig())
		d := []functions.Detection{{Score: 0.9, Box: boxAt(300, 300, 40, 100)}}
		tr.Update(10, d)
		before, _ := tr.MarshalState()
		for _, seq := range []uint64{10, 9, 0} {
			res := tr.Update(seq, []functions.Detection{{Score: 0.9, Box: boxAt(900, 300, 40, 100)}})
			if !res.Stale || len(res.Tracks) != 0 || !slices.Equal(res.DetTracks, []uint64{0}) {
				t.Fatalf("seq %d: %+v", seq, res)
			}
		}
		after, _ := tr.MarshalState()
		if string(before) != string(after) {
			t.Fatal("a stale frame changed the state")
		}
	})

	t.Run("classes", func(t *testing.T) {
		b := boxAt(300, 300, 40, 100)
		for _, agnostic := range []bool{false, true} {
			cfg := DefaultConfig()
			cfg.ClassAgnostic = agnostic
			tr := mustTracker(t, cfg)
			first := tr.Update(1, []functions.Detection{{ClassID: 0, Score: 0.9, Box: b}})
			tr.Update(2, []functions.Detection{{ClassID: 2, Score: 0.9, Box: b}})
			res := tr.Update(3, []functions.Detection{{ClassID: 2, Score: 0.9, Box: b}})
			same := res.DetTracks[0] == first.DetTracks[0]
			if same != agnostic {
				t.Fatalf("agnostic %v: IDs %d then %d", agnostic, first.DetTracks[0], res.DetTracks[0])
			}
			if res.Tracks[0].ClassID != 2 {
				t.Fatalf("agnostic %v: the track's class is %d, want the latest detection's", agnostic, res.Tracks[0].ClassID)
			}
		}
	})

	t.Run("IDs are never reused after Close", func(t *testing.T) {
		tr := mustTracker(t, DefaultConfig())
		d := []functions.Detection{{Score: 0.9, Box: boxAt(300, 300, 40, 100)}, {Score: 0.9, Box: boxAt(600, 300, 40, 100)}}
		tr.Update(1, d)
		if gone := tr.Close(); !slices.Equal(gone, []uint64{1, 2}) {
			t.Fatalf("Close returned %v", gone)
		}
		// The first frame after Close confirms at once, with the next IDs.
		if got := tr.Update(2, d).DetTracks; !slices.Equal(got, []uint64{3, 4}) {
			t.Fatalf("after Close: %v", got)
		}
	})

	t.Run("unusable detections are ignored", func(t *testing.T) {
		tr := mustTracker(t, DefaultConfig())
		nan := float32(math.NaN())
		inf := float32(math.Inf(1))
		dets := []functions.Detection{
			{Score: 0.9, Box: functions.Box{X1: nan, Y1: 0, X2: 10, Y2: 10}},
			{Score: 0.9, Box: functions.Box{X1: 0, Y1: 0, X2: inf, Y2: 10}},
			{Score: 0.9, Box: functions.Box{X1: 10, Y1: 10, X2: 10, Y2: 20}},
			{Score: 0.9, Box: functions.Box{X1: 10, Y1: 10, X2: 5, Y2: 20}},
			{Score: float32(math.NaN()), Box: boxAt(300, 300, 40, 100)},
			{Score: 0.05, Box: boxAt(500, 300, 40, 100)},
			{Score: 0.9, Box: boxAt(700, 300, 40, 100)},
		}
		for s := uint64(1); s <= 3; s++ {
			res := tr.Update(s, dets)
			if !slices.Equal(res.DetTracks, []uint64{0, 0, 0, 0, 0, 0, 1}) {
				t.Fatalf("frame %d: %v", s, res.DetTracks)
			}
		}
	})

	t.Run("the smoothed box follows a moving object", func(t *testing.T) {
		m := person(100, 300, 7, 3)
		frames, _ := scene([]mover{m}, 40, 3, 8)
		tr := mustTracker(t, DefaultConfig())
		var last Track
		for f, d := range frames {
			last = tr.Update(uint64(f+1), d).Tracks[0]
		}
		cx, cy := m.center(40)
		got := measure(last.Box)
		if math.Abs(got[0]-cx) > 3 || math.Abs(got[1]-cy) > 3 || math.Abs(got[3]-100) > 4 {
			t.Fatalf("box %v, want centre (%v,%v) height 100", last.Box, cx, cy)
		}
	})
}
