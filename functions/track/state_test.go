package track

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions"
)

// busyScene has people crossing a door line both ways and walking through a lobby,
// one occluded for a few frames, one detected weakly for a while, one appearing late.
func busyScene() ([][]functions.Detection, CounterConfig) {
	weak := mover{x: 700, y: 200, vx: -1, vy: 6, w: 40, h: 100, score: func(f int) float32 {
		if f > 30 && f < 45 {
			return 0.3
		}
		return 0.8
	}}
	hidden := mover{x: 300, y: 800, vx: 1, vy: -5, w: 40, h: 100, visible: func(f int) bool { return f < 50 || f > 54 }}
	late := mover{x: 150, y: 650, vx: 6, vy: 0, w: 50, h: 120, visible: func(f int) bool { return f >= 20 }}
	car := mover{x: 1200, y: 300, vx: -2, vy: 5, w: 160, h: 90, class: 2}
	ms := []mover{
		{x: 100, y: 200, vx: 4, vy: 5, w: 40, h: 100}, weak, hidden, late, car,
		{x: 900, y: 700, vx: -5, vy: -2, w: 40, h: 100},
	}
	frames, _ := scene(ms, 120, 2, 99)
	cc := DefaultCounterConfig()
	cc.Zones = []Zone{
		{Name: "door", Line: []Point{{50, 500}, {1300, 500}}},
		{Name: "lobby", Polygon: []Point{{100, 550}, {800, 550}, {800, 900}, {100, 900}}},
	}
	return frames, cc
}

func mustCamera(t testing.TB, cc CounterConfig) *Camera {
	t.Helper()
	cam, err := NewCamera(DefaultConfig(), cc)
	if err != nil {
		t.Fatal(err)
	}
	return cam
}

func mustMarshal(t testing.TB, m interface{ MarshalState() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckpointRoundTrip(t *testing.T) {
	frames, cc := busyScene()
	whole := mustCamera(t, cc)
	var want []Frame
	events := 0
	for f, d := range frames {
		fr := whole.Update(uint64(f+1), d)
		want = append(want, fr)
		events += len(fr.Events)
	}
	if events < 6 || whole.Tracker().nextID < 6 {
		t.Fatalf("the scene is too quiet to test anything: %d events, %d IDs", events, whole.Tracker().nextID-1)
	}
	t.Logf("uninterrupted: %d events, %d track IDs, counts %+v", events, whole.Tracker().nextID-1, whole.Counter().Counts())
	final := mustMarshal(t, whole)

	for _, k := range []int{1, 13, 40, 52, 77, 119} {
		t.Run("camera split after frame "+itoa(k), func(t *testing.T) {
			a := mustCamera(t, cc)
			for f := range k {
				a.Update(uint64(f+1), frames[f])
			}
			blob := mustMarshal(t, a)
			b := mustCamera(t, cc)
			if err := b.UnmarshalState(blob); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(mustMarshal(t, b), blob) {
				t.Fatal("restoring and marshalling again changed the state")
			}
			for f := k; f < len(frames); f++ {
				got := b.Update(uint64(f+1), frames[f])
				if !reflect.DeepEqual(got, want[f]) {
					t.Fatalf("frame %d:\n got %+v\nwant %+v", f+1, got, want[f])
				}
			}
			if !slices.Equal(mustMarshal(t, b), final) {
				t.Fatal("the final states differ")
			}
			if !slices.Equal(b.Counter().Counts(), whole.Counter().Counts()) {
				t.Fatal("the counts differ")
			}
		})
	}

	t.Run("tracker and counter separately", func(t *testing.T) {
		const k = 52
		a := mustCamera(t, cc)
		for f := range k {
			a.Update(uint64(f+1), frames[f])
		}
		tr, ct := mustTracker(t, DefaultConfig()), mustCounter(t, cc.Zones...)
		if err := tr.UnmarshalState(mustMarshal(t, a.Tracker())); err != nil {
			t.Fatal(err)
		}
		if err := ct.UnmarshalState(mustMarshal(t, a.Counter())); err != nil {
			t.Fatal(err)
		}
		for f := k; f < len(frames); f++ {
			res := tr.Update(uint64(f+1), frames[f])
			evs := append(ct.Update(uint64(f+1), res.Tracks), ct.Remove(uint64(f+1), res.Removed)...)
			if !reflect.DeepEqual(Frame{res, evs}, want[f]) {
				t.Fatalf("frame %d differs", f+1)
			}
		}
	})

	t.Run("frames redelivered after a restore are ignored", func(t *testing.T) {
		const k = 60
		a := mustCamera(t, cc)
		for f := range k {
			a.Update(uint64(f+1), frames[f])
		}
		b := mustCamera(t, cc)
		if err := b.UnmarshalState(mustMarshal(t, a)); err != nil {
			t.Fatal(err)
		}
		for f := k - 5; f < len(frames); f++ { // the consumer rewinds a little
			got := b.Update(uint64(f+1), frames[f])
			if f < k != got.Stale || (f >= k && !reflect.DeepEqual(got, want[f])) {
				t.Fatalf("frame %d: stale %v", f+1, got.Stale)
			}
		}
	})
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// edit decodes a blob, changes it and encodes it again.
func edit(t *testing.T, blob []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(blob, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCorruptState(t *testing.T) {
	frames, cc := busyScene()
	src := mustCamera(t, cc)
	for f := range 60 {
		src.Update(uint64(f+1), frames[f])
	}
	blob := mustMarshal(t, src)
	tracker := func(m map[string]any) map[string]any { return m["tracker"].(map[string]any) }
	counter := func(m map[string]any) map[string]any { return m["counter"].(map[string]any) }
	firstTrack := func(m map[string]any) map[string]any {
		return tracker(m)["tracks"].([]any)[0].(map[string]any)
	}
	confirmed := func(m map[string]any) []map[string]any {
		var out []map[string]any
		for _, s := range tracker(m)["tracks"].([]any) {
			if s := s.(map[string]any); s["id"] != nil {
				out = append(out, s)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		data func() []byte
		want string
	}{
		{"empty", func() []byte { return nil }, "corrupt"},
		{"not JSON", func() []byte { return []byte("\x00\x01garbage") }, "corrupt"},
		{"truncated", func() []byte { return blob[:len(blob)/2] }, "corrupt"},
		{"trailing garbage", func() []byte { return append(slices.Clone(blob), "}x"...) }, "corrupt"},
		{"null", func() []byte { return []byte("null") }, "version none"},
		{"an array", func() []byte { return []byte("[1,2]") }, "corrupt"},
		{"no version", func() []byte { return edit(t, blob, func(m map[string]any) { delete(m, "v") }) }, "version none"},
		{"next version", func() []byte { return edit(t, blob, func(m map[string]any) { m["v"] = 2 }) }, "version 2"},
		{"version as a string", func() []byte { return edit(t, blob, func(m map[string]any) { m["v"] = "1" }) }, "corrupt"},
		{"inner version", func() []byte { return edit(t, blob, func(m map[string]any) { tracker(m)["v"] = 0 }) }, "versions 0"},
		{"next_id 0", func() []byte { return edit(t, blob, func(m map[string]any) { tracker(m)["next_id"] = 0 }) }, "next_id"},
		{"an ID not below next_id", func() []byte { return edit(t, blob, func(m map[string]any) { tracker(m)["next_id"] = 2 }) }, "not below next_id"},
		{"a repeated ID", func() []byte {
			return edit(t, blob, func(m map[string]any) { c := confirmed(m); c[1]["id"] = c[0]["id"] })
		}, "repeated"},
		{"an unknown track state", func() []byte { return edit(t, blob, func(m map[string]any) { firstTrack(m)["state"] = 7 }) }, "unknown state"},
		{"a null track", func() []byte {
			return edit(t, blob, func(m map[string]any) { tracker(m)["tracks"].([]any)[0] = nil })
		}, "null"},
		{"zero hits", func() []byte { return edit(t, blob, func(m map[string]any) { firstTrack(m)["hits"] = 0 }) }, "hits"},
		{"a track from the future", func() []byte { return edit(t, blob, func(m map[string]any) { firstTrack(m)["last_seq"] = 1e9 }) }, "last_seq"},
		{"a huge filter value", func() []byte {
			return edit(t, blob, func(m map[string]any) { firstTrack(m)["kf"].(map[string]any)["mean"].([]any)[0] = 1e300 })
		}, "mean"},
		{"a number that does not fit", func() []byte {
			return []byte(strings.Replace(string(blob), `"next_id":`, `"next_id":1e999,"x":`, 1))
		}, "corrupt"},
		{"a negative count", func() []byte {
			return edit(t, blob, func(m map[string]any) { counter(m)["counts"].([]any)[0].(map[string]any)["in"] = -1 })
		}, "negative"},
		{"counts for an undefined zone", func() []byte {
			return edit(t, blob, func(m map[string]any) { counter(m)["counts"].([]any)[0].(map[string]any)["zone"] = "nowhere" })
		}, "does not define"},
		{"a bad side", func() []byte {
			return edit(t, blob, func(m map[string]any) {
				counter(m)["tracks"].([]any)[0].(map[string]any)["zones"].([]any)[0].(map[string]any)["side"] = 5
			})
		}, "side 5"},
		{"the counter follows a track the tracker lacks", func() []byte {
			return edit(t, blob, func(m map[string]any) { counter(m)["tracks"].([]any)[0].(map[string]any)["id"] = 9999 })
		}, "does not have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := mustCamera(t, cc)
			for f := range 5 {
				cam.Update(uint64(f+1), frames[f])
			}
			before := mustMarshal(t, cam)
			err := cam.UnmarshalState(tc.data())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if !slices.Equal(mustMarshal(t, cam), before) {
				t.Fatal("a refused state changed the camera")
			}
		})
	}

	t.Run("tracker and counter alone", func(t *testing.T) {
		tr, ct := mustTracker(t, DefaultConfig()), mustCounter(t, cc.Zones...)
		for _, b := range [][]byte{nil, []byte(`{"v":3}`), []byte(`{"v":1,"next_id":0}`), blob[:10]} {
			if tr.UnmarshalState(b) == nil {
				t.Errorf("the tracker accepted %q", b)
			}
		}
		for _, b := range [][]byte{nil, []byte(`{"v":3}`), []byte(`{"v":1,"counts":[{"zone":"x"}]}`), blob[:10]} {
			if ct.UnmarshalState(b) == nil {
				t.Errorf("the counter accepted %q", b)
			}
		}
	})
}

func TestCounterStateAcrossZoneChanges(t *testing.T) {
	door := Zone{Name: "door", Line: []Point{{100, 500}, {900, 500}}}
	lobby := Zone{Name: "lobby", Polygon: []Point{{200, 200}, {600, 200}, {600, 600}, {200, 600}}}
	old := mustCounter(t, door, lobby)
	feed(old, walk(1, 0, path(Point{400, 300}, Point{400, 550}, 10)...)) // inside the lobby, across the door
	blob := mustMarshal(t, old)

	t.Run("same zones", func(t *testing.T) {
		c := mustCounter(t, lobby, door) // order does not matter
		if err := c.UnmarshalState(blob); err != nil {
			t.Fatal(err)
		}
		if c.Occupancy("lobby") != 1 || len(c.Counts()) != 2 {
			t.Fatalf("counts %+v", c.Counts())
		}
		// The track is known: walking back up is one "out", and leaving the lobby one "left".
		evs := c.Update(11, walk(1, 0, Point{400, 150}))
		if got := kinds(evs); !slices.Equal(got, []string{"lobby:left", "door:crossed:out"}) {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("a zone removed, a zone moved", func(t *testing.T) {
		moved := Zone{Name: "lobby", Polygon: []Point{{200, 200}, {700, 200}, {700, 600}, {200, 600}}}
		c := mustCounter(t, moved)
		if err := c.UnmarshalState(blob); err != nil {
			t.Fatal(err)
		}
		want := []ZoneCount{{Zone: "lobby", ClassID: 0, Label: "person", Entered: 1}}
		if got := c.Counts(); !slices.Equal(got, want) {
			t.Fatalf("counts %+v, want %+v", got, want)
		}
	})
}

func FuzzUnmarshalState(f *testing.F) {
	frames, cc := busyScene()
	cam, err := NewCamera(DefaultConfig(), cc)
	if err != nil {
		f.Fatal(err)
	}
	for i := range 50 {
		cam.Update(uint64(i+1), frames[i])
	}
	blob, _ := cam.MarshalState()
	tblob, _ := cam.Tracker().MarshalState()
	cblob, _ := cam.Counter().MarshalState()
	for _, s := range [][]byte{blob, tblob, cblob, nil, []byte(`{"v":1}`), []byte(`{"v":1,"tracker":{"v":1,"next_id":1},"counter":{"v":1}}`)} {
		f.Add(s)
	}
	dets := frames[50]
	f.Fuzz(func(t *testing.T, data []byte) {
		cam, err := NewCamera(DefaultConfig(), cc)
		if err != nil {
			t.Fatal(err)
		}
		tr := mustTracker(t, DefaultConfig())
		ct := mustCounter(t, cc.Zones...)
		if cam.UnmarshalState(data) == nil {
			seq, _ := cam.Tracker().LastSeq()
			for i := range uint64(3) {
				cam.Update(seq+1+i, dets)
			}
			cam.Close()
			if _, err := cam.MarshalState(); err != nil {
				t.Fatalf("a restored camera cannot be saved again: %v", err)
			}
		}
		if tr.UnmarshalState(data) == nil {
			seq, _ := tr.LastSeq()
			tr.Update(seq+1, dets)
			tr.Update(seq+40, dets)
			if _, err := tr.MarshalState(); err != nil {
				t.Fatalf("a restored tracker cannot be saved again: %v", err)
			}
		}
		if ct.UnmarshalState(data) == nil {
			ct.Update(1, []Track{{ID: 1, Box: boxAt(400, 400, 40, 100)}})
			ct.Close(2)
		}
	})
}
