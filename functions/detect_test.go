package functions

import (
	"math"
	"testing"
)

func near(a, b, tol float32) bool { return float32(math.Abs(float64(a-b))) <= tol }

func TestIoU(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b Box
		want float32
	}{
		{"same", Box{0, 0, 10, 10}, Box{0, 0, 10, 10}, 1},
		{"disjoint", Box{0, 0, 10, 10}, Box{20, 20, 30, 30}, 0},
		{"half overlap", Box{0, 0, 10, 10}, Box{5, 0, 15, 10}, 50.0 / 150},
		{"inside", Box{0, 0, 10, 10}, Box{0, 0, 5, 5}, 0.25},
		{"empty", Box{0, 0, 0, 0}, Box{0, 0, 0, 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IoU(tc.a, tc.b); !near(got, tc.want, 1e-6) {
				t.Fatalf("IoU = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNMS(t *testing.T) {
	person := func(score float32, x float32) Detection {
		return Detection{ClassID: 0, Score: score, Box: Box{x, 0, x + 10, 10}}
	}
	dets := []Detection{
		person(0.5, 1),  // overlaps the 0.9 box by 9/11: suppressed
		person(0.9, 0),  // kept
		person(0.7, 50), // far away: kept
		{ClassID: 2, Score: 0.6, Box: Box{0, 0, 10, 10}}, // same place, other class
	}
	got := NMS(dets, 0.45, false)
	if len(got) != 3 || got[0].Score != 0.9 || got[1].Score != 0.7 || got[2].ClassID != 2 {
		t.Fatalf("class-aware NMS kept %+v", got)
	}
	got = NMS(dets, 0.45, true)
	if len(got) != 2 || got[0].Score != 0.9 || got[1].Score != 0.7 {
		t.Fatalf("class-agnostic NMS kept %+v", got)
	}
	if dets[0].Score != 0.5 {
		t.Fatal("NMS reordered its input")
	}
}

func TestFitAndToSource(t *testing.T) {
	in := Input{Width: 416, Height: 416, Resize: "letterbox", Anchor: "top-left"}
	g := Fit(in, 768, 576) // the sample video's frame size
	if g.W != 416 || g.H != 312 || g.OffX != 0 || g.OffY != 0 || !near(g.ScaleX, 416.0/768, 1e-6) {
		t.Fatalf("top-left letterbox of 768x576: %+v", g)
	}
	b := g.ToSource(Box{0, 0, 208, 156})
	if !near(b.X2, 384, 0.01) || !near(b.Y2, 288, 0.01) {
		t.Fatalf("half the canvas maps to %+v, want (0,0)-(384,288)", b)
	}
	if b := g.ToSource(Box{-10, -10, 500, 500}); b != (Box{0, 0, 768, 576}) {
		t.Fatalf("not clipped to the source: %+v", b)
	}

	in.Anchor = "center"
	g = Fit(in, 768, 576)
	if g.OffX != 0 || g.OffY != 52 {
		t.Fatalf("centred letterbox offsets: %+v", g)
	}
	if b := g.ToSource(Box{0, 52, 416, 364}); !near(b.X2, 768, 0.01) || !near(b.Y1, 0, 0.01) || !near(b.Y2, 576, 0.01) {
		t.Fatalf("centred: image area maps to %+v", b)
	}

	in.Resize = "stretch"
	g = Fit(in, 832, 208)
	if b := g.ToSource(Box{0, 0, 416, 416}); b != (Box{0, 0, 832, 208}) {
		t.Fatalf("stretch: canvas maps to %+v", b)
	}
}

func TestDecodeYOLOX(t *testing.T) {
	const w, h, cols = 64, 32, 5 + 3
	rows := YOLOXRows(w, h)
	if rows != 8*4+4*2+2*1 {
		t.Fatalf("YOLOXRows(64,32) = %d", rows)
	}
	out := make([]float32, rows*cols)
	// One confident class-2 object in the stride-16 grid at cell (gx=1, gy=1): that level
	// starts after the 8x4 stride-8 rows, and the cell is row 1*4+1 within it.
	r := out[(32+1*4+1)*cols:]
	r[0], r[1], r[2], r[3], r[4] = 0.5, 0.25, float32(math.Log(2)), 0, 0.9
	r[5+2] = 0.8
	r[5+0] = 0.1
	// A weak one that the threshold drops.
	out[4], out[5] = 0.2, 0.9

	dets, err := DecodeYOLOX(out, cols, w, h, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	if len(dets) != 1 {
		t.Fatalf("got %d detections, want 1: %+v", len(dets), dets)
	}
	d := dets[0]
	// cx = (0.5+1)*16 = 24, cy = (0.25+1)*16 = 20, w = 2*16 = 32, h = 16
	want := Box{8, 12, 40, 28}
	if d.ClassID != 2 || !near(d.Score, 0.72, 1e-6) || !near(d.Box.X1, want.X1, 1e-4) || !near(d.Box.Y1, want.Y1, 1e-4) ||
		!near(d.Box.X2, want.X2, 1e-4) || !near(d.Box.Y2, want.Y2, 1e-4) {
		t.Fatalf("decoded %+v, want class 2 score 0.72 box %+v", d, want)
	}

	if _, err := DecodeYOLOX(out[:len(out)-1], cols, w, h, 0.3); err == nil {
		t.Fatal("a short output was accepted")
	}
}
