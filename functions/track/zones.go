package track

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// MaxCoord bounds zone coordinates: no camera frame is wider or taller than this many
// pixels, so a larger value is a typo or a unit mistake.
const MaxCoord = 16384

// Point is a position in source-image pixels: x to the right, y down, (0,0) the
// top-left corner of the frame.
type Point struct {
	X float64 `json:"x" yaml:"x"`
	Y float64 `json:"y" yaml:"y"`
}

// Zone is a counting line or an area of the image; exactly one of Line and Polygon is
// set.
//
// A Line is the directed segment Line[0] → Line[1]. An object crosses it "in" when it
// moves from the left-hand side to the right-hand side of the segment as drawn on the
// image, walking from Line[0] towards Line[1], and "out" the other way. With y down,
// for a line drawn left to right, (0,500) → (1920,500), walking down the image is
// "in"; reverse the points to swap the directions.
//
// A Polygon is an area, its vertices in order (either winding), the edge from the last
// back to the first implied; objects entering and leaving it are counted and those
// inside make its occupancy. A self-intersecting polygon is read by the even-odd rule.
type Zone struct {
	Name    string  `json:"name" yaml:"name"`
	Line    []Point `json:"line,omitempty" yaml:"line,omitempty"`
	Polygon []Point `json:"polygon,omitempty" yaml:"polygon,omitempty"`
}

// IsLine tells lines from polygons.
func (z Zone) IsLine() bool { return len(z.Line) > 0 }

// Validate names the zone and what is wrong with it.
func (z Zone) Validate() error {
	name := fmt.Sprintf("zone %q", z.Name)
	if z.Name == "" {
		return errors.New("track: a zone has no name")
	}
	switch {
	case len(z.Line) > 0 && len(z.Polygon) > 0:
		return fmt.Errorf("track: %s has both a line and a polygon; give one", name)
	case len(z.Line) == 0 && len(z.Polygon) == 0:
		return fmt.Errorf("track: %s has neither a line nor a polygon", name)
	case len(z.Line) > 0 && len(z.Line) != 2:
		return fmt.Errorf("track: %s: a line has exactly 2 points, this one has %d", name, len(z.Line))
	case len(z.Polygon) > 0 && len(z.Polygon) < 3:
		return fmt.Errorf("track: %s: a polygon needs at least 3 points, this one has %d", name, len(z.Polygon))
	}
	pts, what := z.Line, "line"
	if !z.IsLine() {
		pts, what = z.Polygon, "polygon"
	}
	for i, p := range pts {
		for _, c := range []struct {
			axis string
			v    float64
		}{{"x", p.X}, {"y", p.Y}} {
			switch {
			case math.IsNaN(c.v) || math.IsInf(c.v, 0):
				return fmt.Errorf("track: %s: %s point %d: %s is %v", name, what, i, c.axis, c.v)
			case c.v < 0 || c.v > MaxCoord:
				return fmt.Errorf("track: %s: %s point %d: %s %v is outside [0, %d] source pixels", name, what, i, c.axis, c.v, MaxCoord)
			}
		}
	}
	if z.IsLine() && z.Line[0] == z.Line[1] {
		return fmt.Errorf("track: %s: the line's two points are the same", name)
	}
	if !z.IsLine() && polygonArea(z.Polygon) == 0 {
		return fmt.Errorf("track: %s: the polygon has no area (its points are on one line)", name)
	}
	return nil
}

func (z Zone) equal(o Zone) bool {
	return z.Name == o.Name && slices.Equal(z.Line, o.Line) && slices.Equal(z.Polygon, o.Polygon)
}

// lineSide is the signed distance of p from the infinite line through a → b: positive
// on the right-hand side as drawn on the image (y down), negative on the left.
func lineSide(a, b, p Point) float64 {
	dx, dy := b.X-a.X, b.Y-a.Y
	return (dx*(p.Y-a.Y) - dy*(p.X-a.X)) / math.Hypot(dx, dy)
}

// crossesSegment reports whether the move p0 → p1, which goes from one side of the
// infinite line through a → b to the other, passes through the segment a–b itself
// rather than beside one of its ends.
func crossesSegment(a, b, p0, p1 Point) bool {
	d0, d1 := lineSide(a, b, p0), lineSide(a, b, p1)
	if d0 == d1 {
		return false
	}
	t := d0 / (d0 - d1)
	x := Point{p0.X + t*(p1.X-p0.X), p0.Y + t*(p1.Y-p0.Y)}
	dx, dy := b.X-a.X, b.Y-a.Y
	u := ((x.X-a.X)*dx + (x.Y-a.Y)*dy) / (dx*dx + dy*dy)
	return u >= 0 && u <= 1
}

// inPolygon is the even-odd ray-casting test.
func inPolygon(poly []Point, p Point) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (a.Y > p.Y) != (b.Y > p.Y) && p.X < (b.X-a.X)*(p.Y-a.Y)/(b.Y-a.Y)+a.X {
			in = !in
		}
	}
	return in
}

// edgeDistance is the distance from p to the nearest edge of the polygon.
func edgeDistance(poly []Point, p Point) float64 {
	best := math.Inf(1)
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		best = min(best, segmentDistance(poly[j], poly[i], p))
	}
	return best
}

func segmentDistance(a, b, p Point) float64 {
	dx, dy := b.X-a.X, b.Y-a.Y
	u := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		u = min(max(((p.X-a.X)*dx+(p.Y-a.Y)*dy)/l, 0), 1)
	}
	return math.Hypot(p.X-(a.X+u*dx), p.Y-(a.Y+u*dy))
}

// polygonArea is the absolute shoelace area.
func polygonArea(poly []Point) float64 {
	s := 0.0
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		s += poly[j].X*poly[i].Y - poly[i].X*poly[j].Y
	}
	return math.Abs(s) / 2
}
