package functions

import (
	"cmp"
	"slices"
)

// Box is an axis-aligned box in pixels: (X1,Y1) top-left, (X2,Y2) bottom-right.
type Box struct {
	X1 float32 `json:"x1"`
	Y1 float32 `json:"y1"`
	X2 float32 `json:"x2"`
	Y2 float32 `json:"y2"`
}

func (b Box) area() float32 {
	if b.X2 <= b.X1 || b.Y2 <= b.Y1 {
		return 0
	}
	return (b.X2 - b.X1) * (b.Y2 - b.Y1)
}

// IoU is the intersection over union of two boxes, 0 when either is empty.
func IoU(a, b Box) float32 {
	inter := Box{max(a.X1, b.X1), max(a.Y1, b.Y1), min(a.X2, b.X2), min(a.Y2, b.Y2)}.area()
	union := a.area() + b.area() - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

// Detection is one object found in a frame.
type Detection struct {
	ClassID int     `json:"class_id"`
	Label   string  `json:"label,omitempty"`
	Score   float32 `json:"score"`
	Box     Box     `json:"box"`
}

// NMS is greedy non-maximum suppression: it keeps the highest-scoring detection, drops
// every remaining one that overlaps it by more than iouThreshold (only within its class
// unless classAgnostic), and repeats. The result is sorted by score, highest first.
func NMS(dets []Detection, iouThreshold float32, classAgnostic bool) []Detection {
	sorted := slices.Clone(dets)
	slices.SortStableFunc(sorted, func(a, b Detection) int { return cmp.Compare(b.Score, a.Score) })
	kept := sorted[:0:0]
	for _, d := range sorted {
		suppressed := false
		for _, k := range kept {
			if (classAgnostic || k.ClassID == d.ClassID) && IoU(k.Box, d.Box) > iouThreshold {
				suppressed = true
				break
			}
		}
		if !suppressed {
			kept = append(kept, d)
		}
	}
	return kept
}

// Geometry maps between a source image and the model's input canvas, as the spec's
// resize mode placed it there.
type Geometry struct {
	SrcW, SrcH int     // the source image
	ScaleX     float32 // canvas pixels per source pixel, horizontally
	ScaleY     float32 // and vertically (equal to ScaleX for letterbox)
	W, H       int     // the resized image inside the canvas
	OffX, OffY int     // where it starts in the canvas
}

// Fit computes where a srcW×srcH image goes in the input canvas. Letterbox keeps the
// aspect ratio (r = min(W/srcW, H/srcH), size truncated as YOLOX's reference does) and
// anchors the image top-left or centred; stretch fills the canvas.
func Fit(in Input, srcW, srcH int) Geometry {
	g := Geometry{SrcW: srcW, SrcH: srcH}
	if in.Resize == "stretch" {
		g.ScaleX, g.ScaleY = float32(in.Width)/float32(srcW), float32(in.Height)/float32(srcH)
		g.W, g.H = in.Width, in.Height
		return g
	}
	r := min(float32(in.Width)/float32(srcW), float32(in.Height)/float32(srcH))
	g.ScaleX, g.ScaleY = r, r
	g.W, g.H = max(1, int(float32(srcW)*r)), max(1, int(float32(srcH)*r))
	if in.Anchor == "center" {
		g.OffX, g.OffY = (in.Width-g.W)/2, (in.Height-g.H)/2
	}
	return g
}

// ToSource maps a box from canvas pixels to source pixels, clipped to the source image.
func (g Geometry) ToSource(b Box) Box {
	clip := func(v float32, hi int) float32 { return min(max(v, 0), float32(hi)) }
	return Box{
		X1: clip((b.X1-float32(g.OffX))/g.ScaleX, g.SrcW),
		Y1: clip((b.Y1-float32(g.OffY))/g.ScaleY, g.SrcH),
		X2: clip((b.X2-float32(g.OffX))/g.ScaleX, g.SrcW),
		Y2: clip((b.Y2-float32(g.OffY))/g.ScaleY, g.SrcH),
	}
}
