package main

import (
	"image"
	"image/color"
	"math"
	"testing"

	"github.com/diplip/diplip/functions"
)

func f32(v float32) *float32 { return &v }

// A 2×1 image of one colour letterboxed top-left into a 4×4 canvas: scale 2, so it
// fills the top 4×2 and the rest is padding; NCHW in BGR order, value = p*scale.
func TestFillTensorLetterboxNCHWBGR(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 2, 1))
	img.Set(0, 0, color.RGBA{R: 30, G: 20, B: 10, A: 255})
	img.Set(1, 0, color.RGBA{R: 30, G: 20, B: 10, A: 255})
	in := functions.Input{Width: 4, Height: 4, Layout: "NCHW", Channels: "BGR", Resize: "letterbox", Anchor: "top-left",
		Pad: f32(114), Scale: f32(0.5), Mean: []float32{0, 0, 0}, Std: []float32{1, 1, 1}}
	dst := make([]float32, 48)
	g, err := fillTensor(img, in, dst)
	if err != nil {
		t.Fatal(err)
	}
	if g.W != 4 || g.H != 2 || g.OffX != 0 || g.OffY != 0 {
		t.Fatalf("geometry %+v, want the image resized to 4x2 at (0,0)", g)
	}
	for c, want := range []float32{5, 10, 15} { // B, G, R at scale 0.5
		for i := range 16 {
			exp := want
			if i >= 8 { // rows 2 and 3 are padding
				exp = 57
			}
			if v := dst[c*16+i]; v != exp {
				t.Fatalf("channel %d value %d = %v, want %v", c, i, v, exp)
			}
		}
	}
}

// Bilinear with pixel centres: a 2×1 black-white ramp stretched to 4×1 gives OpenCV's
// INTER_LINEAR values 0, 63.75, 191.25, 255; NHWC RGB with mean and std.
func TestFillTensorStretchNHWCBilinear(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 2, 1))
	img.Set(0, 0, color.RGBA{A: 255})
	img.Set(1, 0, color.RGBA{R: 255, G: 255, B: 255, A: 255})
	in := functions.Input{Width: 4, Height: 1, Layout: "NHWC", Channels: "RGB", Resize: "stretch",
		Pad: f32(0), Scale: f32(1), Mean: []float32{0, 0, 0}, Std: []float32{1, 1, 255}}
	dst := make([]float32, 12)
	if _, err := fillTensor(img, in, dst); err != nil {
		t.Fatal(err)
	}
	for x, want := range []float32{0, 63.75, 191.25, 255} {
		if dst[x*3] != want || dst[x*3+1] != want || math.Abs(float64(dst[x*3+2]-want/255)) > 1e-6 {
			t.Fatalf("pixel %d = %v, want [%v %v %v]", x, dst[x*3:x*3+3], want, want, want/255)
		}
	}
	if _, err := fillTensor(img, in, make([]float32, 5)); err == nil {
		t.Fatal("a destination of the wrong size was accepted")
	}
}
