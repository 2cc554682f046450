package track

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions"
)

func TestCounterValidate(t *testing.T) {
	line := []Point{{100, 500}, {900, 500}}
	square := []Point{{100, 100}, {400, 100}, {400, 400}, {100, 400}}
	for _, tc := range []struct {
		name  string
		zones []Zone
		edit  func(*CounterConfig)
		want  []string // all in the error
	}{
		{"no name", []Zone{{Line: line}}, nil, []string{"no name", "zone 0"}},
		{"line of 1 point", []Zone{{Name: "door", Line: line[:1]}}, nil, []string{`"door"`, "2 points", "has 1"}},
		{"line of 3 points", []Zone{{Name: "door", Line: append(slices.Clone(line), Point{5, 5})}}, nil, []string{`"door"`, "has 3"}},
		{"polygon of 2 points", []Zone{{Name: "lobby", Polygon: square[:2]}}, nil, []string{`"lobby"`, "at least 3", "has 2"}},
		{"both", []Zone{{Name: "x", Line: line, Polygon: square}}, nil, []string{`"x"`, "both"}},
		{"neither", []Zone{{Name: "x"}}, nil, []string{`"x"`, "neither"}},
		{"negative", []Zone{{Name: "door", Line: []Point{{-1, 5}, {10, 5}}}}, nil, []string{`"door"`, "point 0", "x -1", "outside"}},
		{"too large", []Zone{{Name: "lobby", Polygon: []Point{{0, 0}, {10, 0}, {10, 20000}}}}, nil, []string{`"lobby"`, "point 2", "y 20000"}},
		{"NaN", []Zone{{Name: "door", Line: []Point{{1, 5}, {10, math.NaN()}}}}, nil, []string{`"door"`, "point 1", "y is NaN"}},
		{"Inf", []Zone{{Name: "door", Line: []Point{{math.Inf(1), 5}, {10, 5}}}}, nil, []string{`"door"`, "x is +Inf"}},
		{"degenerate line", []Zone{{Name: "door", Line: []Point{{10, 5}, {10, 5}}}}, nil, []string{`"door"`, "same"}},
		{"flat polygon", []Zone{{Name: "lobby", Polygon: []Point{{0, 0}, {10, 10}, {20, 20}}}}, nil, []string{`"lobby"`, "no area"}},
		{"duplicate names", []Zone{{Name: "a", Line: line}, {Name: "a", Polygon: square}}, nil, []string{`"a"`, "twice"}},
		{"anchor", nil, func(c *CounterConfig) { c.Anchor = "top" }, []string{"Anchor", "top"}},
		{"margin", nil, func(c *CounterConfig) { c.MarginPx = -1 }, []string{"MarginPx"}},
		{"margin NaN", nil, func(c *CounterConfig) { c.MarginFrac = math.NaN() }, []string{"MarginFrac"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultCounterConfig()
			cfg.Zones = tc.zones
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			_, err := NewCounter(cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	cfg := DefaultCounterConfig()
	cfg.Zones = []Zone{{Name: "door", Line: line}, {Name: "lobby", Polygon: square}, {Name: "edge", Line: []Point{{0, 0}, {MaxCoord, MaxCoord}}}}
	if _, err := NewCounter(cfg); err != nil {
		t.Fatalf("valid zones: %v", err)
	}
}

// walk produces one track's boxes (40×100, bottom-centre at the given points) as the
// tracker would report them.
func walk(id uint64, class int, pts ...Point) []Track {
	var out []Track
	for _, p := range pts {
		out = append(out, Track{ID: id, ClassID: class, Label: label(class), Box: boxAt(p.X, p.Y-50, 40, 100)})
	}
	return out
}

// path interpolates n points from a to b, both included.
func path(a, b Point, n int) []Point {
	out := make([]Point, n)
	for i := range n {
		f := float64(i) / float64(n-1)
		out[i] = Point{a.X + f*(b.X-a.X), a.Y + f*(b.Y-a.Y)}
	}
	return out
}

// feed gives the counter one track per frame and returns the events.
func feed(c *Counter, tracks []Track) []Event {
	var evs []Event
	for i, tk := range tracks {
		evs = append(evs, c.Update(uint64(i+1), []Track{tk})...)
	}
	return evs
}

func kinds(evs []Event) []string {
	var out []string
	for _, e := range evs {
		s := e.Zone + ":" + string(e.Kind)
		if e.Direction != "" {
			s += ":" + string(e.Direction)
		}
		out = append(out, s)
	}
	return out
}

func mustCounter(t testing.TB, zones ...Zone) *Counter {
	t.Helper()
	cfg := DefaultCounterConfig()
	cfg.Zones = zones
	c, err := NewCounter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCounterLine(t *testing.T) {
	door := Zone{Name: "door", Line: []Point{{100, 500}, {900, 500}}} // drawn left to right
	rng := rand.New(rand.NewPCG(1, 2))
	jitter := func(pts []Point, px float64) []Point {
		out := slices.Clone(pts)
		for i := range out {
			out[i].X += (rng.Float64()*2 - 1) * px
			out[i].Y += (rng.Float64()*2 - 1) * px
		}
		return out
	}
	concat := func(parts ...[]Point) []Point { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name string
		zone Zone
		pts  []Point
		want []string
	}{
		{"walking down the image is in", door, path(Point{500, 300}, Point{500, 700}, 20), []string{"door:crossed:in"}},
		{"walking up the image is out", door, path(Point{500, 700}, Point{500, 300}, 20), []string{"door:crossed:out"}},
		{"reversing the line reverses the direction", Zone{Name: "door", Line: []Point{{900, 500}, {100, 500}}},
			path(Point{500, 300}, Point{500, 700}, 20), []string{"door:crossed:out"}},
		{"a vertical line: right-hand side of a downward line is the image's left", Zone{Name: "gate", Line: []Point{{500, 100}, {500, 900}}},
			path(Point{700, 400}, Point{300, 400}, 20), []string{"gate:crossed:in"}},
		{"beside the segment is no crossing", door, path(Point{1000, 300}, Point{1000, 700}, 20), nil},
		{"round the end of the segment is no crossing", door,
			concat(path(Point{500, 300}, Point{1000, 300}, 10), path(Point{1000, 300}, Point{1000, 700}, 10), path(Point{1000, 700}, Point{500, 700}, 10)), nil},
		{"a big jump across counts", door, []Point{{500, 300}, {500, 300}, {520, 800}}, []string{"door:crossed:in"}},
		{"standing on the line with jitter for 30 frames, then on: once", door,
			concat(path(Point{500, 300}, Point{500, 500}, 10), jitter(slices.Repeat([]Point{{500, 500}}, 30), 3), path(Point{500, 500}, Point{500, 800}, 10)),
			[]string{"door:crossed:in"}},
		{"standing on the line with jitter, then back: nothing", door,
			concat(path(Point{500, 300}, Point{500, 500}, 10), jitter(slices.Repeat([]Point{{500, 500}}, 30), 3), path(Point{500, 500}, Point{500, 300}, 10)),
			nil},
		{"jitter around the line with nearly the band's size: once", door,
			concat(path(Point{500, 300}, Point{500, 496}, 10), []Point{{500, 504}, {500, 497}, {500, 505}, {500, 496}, {500, 503}, {500, 498}}, path(Point{500, 510}, Point{500, 700}, 5)),
			[]string{"door:crossed:in"}},
		{"first seen on the line: nothing until it crosses", door,
			concat(path(Point{500, 501}, Point{500, 800}, 10), path(Point{500, 800}, Point{500, 300}, 10)),
			[]string{"door:crossed:out"}},
		{"in then out then in", door,
			concat(path(Point{500, 300}, Point{500, 700}, 8), path(Point{500, 700}, Point{500, 300}, 8), path(Point{500, 300}, Point{500, 700}, 8)),
			[]string{"door:crossed:in", "door:crossed:out", "door:crossed:in"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCounter(t, tc.zone)
			got := kinds(feed(c, walk(7, 0, tc.pts...)))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCounterCounts(t *testing.T) {
	door := Zone{Name: "door", Line: []Point{{100, 500}, {900, 500}}}
	c := mustCounter(t, door)
	down, up := path(Point{300, 300}, Point{300, 700}, 10), path(Point{600, 700}, Point{600, 300}, 10)
	person1, person2, car := walk(1, 0, down...), walk(2, 0, up...), walk(3, 2, down...)
	var evs []Event
	for f := range 10 {
		evs = append(evs, c.Update(uint64(f+1), []Track{person1[f], person2[f], car[f]})...)
	}
	if len(evs) != 3 {
		t.Fatalf("events %v", evs)
	}
	for _, e := range evs {
		if e.TrackID == 0 || e.Seq == 0 || e.Point.Y < 500-50 || e.Point.Y > 500+50 {
			t.Fatalf("event %+v", e)
		}
	}
	want := []ZoneCount{
		{Zone: "door", ClassID: 0, Label: "person", In: 1, Out: 1},
		{Zone: "door", ClassID: 2, Label: "car", In: 1},
	}
	if got := c.Counts(); !slices.Equal(got, want) {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
}

func TestCounterPolygon(t *testing.T) {
	lobby := Zone{Name: "lobby", Polygon: []Point{{200, 200}, {600, 200}, {600, 600}, {200, 600}}}
	concat := func(parts ...[]Point) []Point { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name   string
		pts    []Point
		want   []string
		inside int
	}{
		{"walk through", path(Point{100, 400}, Point{800, 400}, 30), []string{"lobby:entered", "lobby:left"}, 0},
		{"walk in and stay", path(Point{100, 400}, Point{400, 400}, 30), []string{"lobby:entered"}, 1},
		{"first seen inside counts as entered", path(Point{400, 400}, Point{450, 400}, 5), []string{"lobby:entered"}, 1},
		{"first seen outside counts nothing", path(Point{100, 400}, Point{150, 400}, 5), nil, 0},
		{"standing on the edge with jitter: once", concat(path(Point{100, 400}, Point{200, 400}, 10),
			[]Point{{197, 400}, {203, 400}, {198, 401}, {202, 399}, {199, 400}, {201, 400}, {200, 400}}, path(Point{200, 400}, Point{400, 400}, 10)),
			[]string{"lobby:entered"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCounter(t, lobby)
			got := kinds(feed(c, walk(4, 0, tc.pts...)))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
			if occ := c.Occupancy("lobby"); occ != tc.inside {
				t.Fatalf("occupancy %d, want %d", occ, tc.inside)
			}
			left := c.Close(99)
			if len(left) != tc.inside || c.Occupancy("lobby") != 0 {
				t.Fatalf("Close: %v, occupancy %d", left, c.Occupancy("lobby"))
			}
			for _, n := range c.Counts() {
				if n.Entered-n.Left != n.Inside {
					t.Fatalf("counts %+v: entered - left != inside", n)
				}
			}
		})
	}

	t.Run("removed tracks leave, keeping the class they entered as", func(t *testing.T) {
		c := mustCounter(t, lobby)
		c.Update(1, walk(1, 0, Point{400, 400}))
		c.Update(2, walk(1, 2, Point{410, 400})) // relabelled by a class-agnostic tracker
		c.Update(2, walk(2, 2, Point{300, 300}))
		if got := c.Occupancy("lobby"); got != 2 {
			t.Fatalf("occupancy %d", got)
		}
		evs := c.Remove(3, []uint64{1, 42})
		if len(evs) != 1 || evs[0].Kind != Left || evs[0].ClassID != 0 || evs[0].TrackID != 1 {
			t.Fatalf("events %+v", evs)
		}
		want := []ZoneCount{
			{Zone: "lobby", ClassID: 0, Label: "person", Entered: 1, Left: 1},
			{Zone: "lobby", ClassID: 2, Label: "car", Entered: 1, Inside: 1},
		}
		if got := c.Counts(); !slices.Equal(got, want) {
			t.Fatalf("counts %+v, want %+v", got, want)
		}
	})
}

func TestCameraEndToEnd(t *testing.T) {
	cc := DefaultCounterConfig()
	cc.Zones = []Zone{
		{Name: "door", Line: []Point{{100, 500}, {900, 500}}},
		{Name: "lobby", Polygon: []Point{{0, 520}, {1000, 520}, {1000, 1000}, {0, 1000}}},
	}
	cam, err := NewCamera(DefaultConfig(), cc)
	if err != nil {
		t.Fatal(err)
	}
	// Walks down into the lobby, stands on the door line for 30 frames on the way.
	m := mover{x: 400, y: 300, vx: 0, vy: 5, w: 40, h: 100}
	frames, _ := scene([]mover{m}, 30, 2, 11) // the bottom edge from 350 to 495
	rng := rand.New(rand.NewPCG(5, 5))
	jit := func() float64 { return rng.Float64()*6 - 3 }
	var all []Event
	for f, d := range frames {
		all = append(all, cam.Update(uint64(f+1), d).Events...)
	}
	for f := 31; f <= 60; f++ { // bottom edge on the line: the box's centre at y=450
		d := []functions.Detection{{Score: 0.9, Label: "person", Box: boxAt(400+jit(), 450+jit(), 40, 100)}}
		all = append(all, cam.Update(uint64(f), d).Events...)
	}
	for f := 61; f <= 100; f++ {
		y := 450 + 6*float64(f-60)
		all = append(all, cam.Update(uint64(f), []functions.Detection{{Score: 0.9, Label: "person", Box: boxAt(400, y, 40, 100)}}).Events...)
	}
	if got, want := kinds(all), []string{"door:crossed:in", "lobby:entered"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if cam.Counter().Occupancy("lobby") != 1 {
		t.Fatal("not in the lobby")
	}
	if got := kinds(cam.Close()); !slices.Equal(got, []string{"lobby:left"}) {
		t.Fatalf("Close: %v", got)
	}
	if cam.Counter().Occupancy("lobby") != 0 || cam.Tracker().Len() != 0 {
		t.Fatal("Close left something")
	}
}
