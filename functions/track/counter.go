package track

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Anchor is the point of a track's box that the Counter follows.
type Anchor string

const (
	// AnchorBottom is the middle of the box's bottom edge: where a person's feet or a
	// car's wheels touch the ground, so lines and zones drawn on the floor work
	// whatever the object's height. The default.
	AnchorBottom Anchor = "bottom"
	// AnchorCenter is the box's centre, for objects seen from above.
	AnchorCenter Anchor = "center"
)

// CounterConfig sets up a Counter. Start from DefaultCounterConfig and add the zones.
type CounterConfig struct {
	Zones []Zone `json:"zones" yaml:"zones"`
	// Anchor: the point of the (Kalman-smoothed) box that must cross. "" means bottom.
	Anchor Anchor `json:"anchor,omitempty" yaml:"anchor,omitempty"`
	// The hysteresis band: a point counts as on one side of a line (or inside or
	// outside a polygon) only once it is at least max(MarginPx, MarginFrac × box
	// height) pixels from the line (the polygon's edge). A side change is counted when
	// the point reaches that distance on the new side, once; jitter inside the band
	// counts nothing. Defaults 4 pixels and 0.05 of the box height.
	MarginPx   float64 `json:"margin_px" yaml:"margin_px"`
	MarginFrac float64 `json:"margin_frac" yaml:"margin_frac"`
}

// DefaultCounterConfig has no zones and the documented defaults.
func DefaultCounterConfig() CounterConfig {
	return CounterConfig{Anchor: AnchorBottom, MarginPx: 4, MarginFrac: 0.05}
}

// Validate checks every zone, and that the names are unique.
func (c CounterConfig) Validate() error {
	seen := map[string]bool{}
	for i, z := range c.Zones {
		if err := z.Validate(); err != nil {
			if z.Name == "" {
				return fmt.Errorf("%w (zone %d)", err, i)
			}
			return err
		}
		if seen[z.Name] {
			return fmt.Errorf("track: zone %q is defined twice", z.Name)
		}
		seen[z.Name] = true
	}
	switch {
	case c.Anchor != "" && c.Anchor != AnchorBottom && c.Anchor != AnchorCenter:
		return fmt.Errorf("track: Anchor %q is neither %q nor %q", c.Anchor, AnchorBottom, AnchorCenter)
	case !(c.MarginPx >= 0) || math.IsInf(c.MarginPx, 0):
		return fmt.Errorf("track: MarginPx %v is not a distance (finite, 0 or more)", c.MarginPx)
	case !(c.MarginFrac >= 0 && c.MarginFrac <= 1):
		return fmt.Errorf("track: MarginFrac %v is not in [0, 1]", c.MarginFrac)
	}
	return nil
}

// EventKind says what happened at a zone.
type EventKind string

const (
	Crossed EventKind = "crossed" // a line, in Direction
	Entered EventKind = "entered" // a polygon
	Left    EventKind = "left"    // a polygon
)

// Direction of a line crossing; see Zone.
type Direction string

const (
	In  Direction = "in"
	Out Direction = "out"
)

// Event is one count.
type Event struct {
	Seq       uint64    `json:"seq"`
	Zone      string    `json:"zone"`
	Kind      EventKind `json:"kind"`
	Direction Direction `json:"direction,omitempty"` // crossings only
	TrackID   uint64    `json:"track_id"`
	ClassID   int       `json:"class_id"`
	Label     string    `json:"label,omitempty"`
	Point     Point     `json:"point"` // the anchor when it happened; zero for a removal
}

// ZoneCount is the running count of one class at one zone.
type ZoneCount struct {
	Zone    string `json:"zone"`
	ClassID int    `json:"class_id"`
	Label   string `json:"label,omitempty"`
	In      int    `json:"in,omitempty"`      // lines
	Out     int    `json:"out,omitempty"`     // lines
	Entered int    `json:"entered,omitempty"` // polygons
	Left    int    `json:"left,omitempty"`    // polygons
	Inside  int    `json:"inside,omitempty"`  // polygons: the occupancy now
}

// memo is what the counter remembers of one track at one zone.
type memo struct {
	// Side is the side the track was last counted on, outside the band: for lines -1
	// left, +1 right; for polygons -1 outside, +1 inside; 0 not known yet.
	Side int8 `json:"side,omitempty"`
	// Lines only: Raw is the sign of the latest position off the line itself, Prev
	// that position, and ViaSeg whether the latest change of Raw went through the
	// segment (rather than round one of its ends).
	Raw    int8  `json:"raw,omitempty"`
	Prev   Point `json:"prev"`
	ViaSeg bool  `json:"via_seg,omitempty"`
	// Polygons only, while inside: the class the track entered as, so that it leaves
	// the same occupancy it joined even if a class-agnostic tracker relabels it.
	ClassID int    `json:"class_id,omitempty"`
	Label   string `json:"label,omitempty"`
}

type countKey struct {
	zone  int
	class int
}

// Counter turns tracks into line crossings, zone entries and exits, running counts and
// occupancy. It remembers, per track and zone, the side the track was last counted on,
// until the track is passed to Remove (a Camera does that with the tracker's removed
// IDs; a Counter used alone must too, or that memory grows). Like the Tracker it is
// per camera and not safe for concurrent use.
type Counter struct {
	cfg    CounterConfig
	counts map[countKey]*ZoneCount
	tracks map[uint64][]memo // parallel to cfg.Zones
}

// NewCounter returns a counter with nothing counted, or cfg.Validate's error.
func NewCounter(cfg CounterConfig) (*Counter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Anchor == "" {
		cfg.Anchor = AnchorBottom
	}
	cfg.Zones = slices.Clone(cfg.Zones)
	return &Counter{cfg: cfg, counts: map[countKey]*ZoneCount{}, tracks: map[uint64][]memo{}}, nil
}

// Config returns the counter's configuration.
func (c *Counter) Config() CounterConfig { return c.cfg }

func (c *Counter) anchor(t Track) Point {
	b := t.Box
	x := float64(b.X1+b.X2) / 2
	if c.cfg.Anchor == AnchorCenter {
		return Point{x, float64(b.Y1+b.Y2) / 2}
	}
	return Point{x, float64(b.Y2)}
}

// Update follows the tracks matched in frame seq (a Tracker's Result.Tracks) and
// returns the events, in the order of the tracks and then of the zones. A track first
// seen inside a polygon counts as entering it, so that entered − left is always the
// occupancy; a track first seen near a line is not counted until it crosses.
func (c *Counter) Update(seq uint64, tracks []Track) []Event {
	var events []Event
	for _, t := range tracks {
		ms, ok := c.tracks[t.ID]
		if !ok {
			ms = make([]memo, len(c.cfg.Zones))
			c.tracks[t.ID] = ms
		}
		p := c.anchor(t)
		margin := max(c.cfg.MarginPx, c.cfg.MarginFrac*float64(t.Box.Y2-t.Box.Y1))
		for zi, z := range c.cfg.Zones {
			ev := Event{Seq: seq, Zone: z.Name, TrackID: t.ID, ClassID: t.ClassID, Label: t.Label, Point: p}
			m := &ms[zi]
			if z.IsLine() {
				if dir, ok := m.observeLine(z.Line[0], z.Line[1], p, margin); ok {
					ev.Kind, ev.Direction = Crossed, dir
					c.count(zi, t.ClassID, t.Label, func(n *ZoneCount) {
						if dir == In {
							n.In++
						} else {
							n.Out++
						}
					})
					events = append(events, ev)
				}
				continue
			}
			inside := inPolygon(z.Polygon, p)
			if edgeDistance(z.Polygon, p) < margin {
				continue // in the band: keep what was known
			}
			s := int8(-1)
			if inside {
				s = 1
			}
			switch {
			case s == m.Side, m.Side == 0 && s < 0:
				m.Side = s
			case s > 0:
				m.Side, m.ClassID, m.Label = s, t.ClassID, t.Label
				c.count(zi, t.ClassID, t.Label, func(n *ZoneCount) { n.Entered++; n.Inside++ })
				ev.Kind = Entered
				events = append(events, ev)
			default:
				events = append(events, c.leave(seq, zi, t.ID, m, p))
			}
		}
	}
	return events
}

// observeLine takes the track's next position relative to the line a → b and reports
// a crossing when the track reaches the far side of the band after going through the
// segment.
func (m *memo) observeLine(a, b, p Point, margin float64) (Direction, bool) {
	d := lineSide(a, b, p)
	if d != 0 {
		s := int8(1)
		if d < 0 {
			s = -1
		}
		if m.Raw != 0 && s != m.Raw {
			m.ViaSeg = crossesSegment(a, b, m.Prev, p)
		}
		m.Raw, m.Prev = s, p
	}
	if math.Abs(d) < margin || d == 0 {
		return "", false
	}
	s := m.Raw
	switch {
	case m.Side == 0 || m.Side == s:
		m.Side = s
		return "", false
	case !m.ViaSeg: // it went round an end of the line
		m.Side = s
		return "", false
	}
	m.Side = s
	if s > 0 {
		return In, true
	}
	return Out, true
}

// leave counts a track out of a polygon it was counted in.
func (c *Counter) leave(seq uint64, zi int, id uint64, m *memo, p Point) Event {
	c.count(zi, m.ClassID, m.Label, func(n *ZoneCount) { n.Left++; n.Inside-- })
	ev := Event{Seq: seq, Zone: c.cfg.Zones[zi].Name, Kind: Left, TrackID: id, ClassID: m.ClassID, Label: m.Label, Point: p}
	m.Side, m.ClassID, m.Label = -1, 0, ""
	return ev
}

func (c *Counter) count(zi, class int, label string, f func(*ZoneCount)) {
	k := countKey{zi, class}
	n := c.counts[k]
	if n == nil {
		n = &ZoneCount{Zone: c.cfg.Zones[zi].Name, ClassID: class, Label: label}
		c.counts[k] = n
	}
	if n.Label == "" {
		n.Label = label
	}
	f(n)
}

// Remove forgets tracks that have ended (a Tracker's Result.Removed, or its Close),
// returning a left event for each polygon they were inside.
func (c *Counter) Remove(seq uint64, ids []uint64) []Event {
	var events []Event
	for _, id := range ids {
		ms, ok := c.tracks[id]
		if !ok {
			continue
		}
		for zi := range ms {
			if ms[zi].Side > 0 && !c.cfg.Zones[zi].IsLine() {
				events = append(events, c.leave(seq, zi, id, &ms[zi], Point{}))
			}
		}
		delete(c.tracks, id)
	}
	return events
}

// Close forgets every track, as Remove would, in ID order.
func (c *Counter) Close(seq uint64) []Event {
	return c.Remove(seq, sortedIDs(c.tracks))
}

// Counts returns the running counts, by zone in configuration order, then by class.
func (c *Counter) Counts() []ZoneCount {
	out := make([]ZoneCount, 0, len(c.counts))
	keys := make([]countKey, 0, len(c.counts))
	for k := range c.counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b countKey) int {
		return cmp.Or(cmp.Compare(a.zone, b.zone), cmp.Compare(a.class, b.class))
	})
	for _, k := range keys {
		out = append(out, *c.counts[k])
	}
	return out
}

// Occupancy is the number of tracks inside the polygon zone now, all classes; 0 for a
// line or an unknown name.
func (c *Counter) Occupancy(zone string) int {
	n := 0
	for k, v := range c.counts {
		if c.cfg.Zones[k.zone].Name == zone {
			n += v.Inside
		}
	}
	return n
}
