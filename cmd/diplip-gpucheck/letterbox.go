package main

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	_ "image/jpeg" // the shared photos are JPEG
	_ "image/png"  // and PNG
	"math"

	"github.com/diplip/diplip/functions"
)

// decodeImage decodes a JPEG or PNG with Go's own decoders (no OpenCV: this program
// links only libc) into RGBA.
func decodeImage(b []byte) (*image.RGBA, error) {
	m, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%d bytes are not a JPEG or PNG image: %w", len(b), err)
	}
	if r, ok := m.(*image.RGBA); ok && r.Rect.Min == (image.Point{}) {
		return r, nil
	}
	r := image.NewRGBA(image.Rect(0, 0, m.Bounds().Dx(), m.Bounds().Dy()))
	draw.Draw(r, r.Rect, m, m.Bounds().Min, draw.Src)
	return r, nil
}

// fillTensor resizes img as the spec's input says (bilinear, with OpenCV's INTER_LINEAR
// pixel-centre convention) into the letterbox or stretch canvas and writes it into dst
// (3·W·H values) in the spec's layout and channel order, value = (pixel*scale - mean) /
// std, padding where the image does not cover the canvas. It returns where the image
// went, to map boxes back. Go's JPEG decoder rounds differently from libjpeg, so values
// differ slightly from functions/vision's; the check compares devices on the same
// tensors, so that does not matter there.
func fillTensor(img *image.RGBA, in functions.Input, dst []float32) (functions.Geometry, error) {
	W, H := in.Width, in.Height
	if len(dst) != 3*W*H {
		return functions.Geometry{}, fmt.Errorf("destination holds %d values, the input needs %d", len(dst), 3*W*H)
	}
	sw, sh := img.Rect.Dx(), img.Rect.Dy()
	if sw <= 0 || sh <= 0 {
		return functions.Geometry{}, fmt.Errorf("empty image")
	}
	g := functions.Fit(in, sw, sh)
	// rgb[c] is the source channel (R=0, G=1, B=2 in RGBA) feeding tensor channel c.
	rgb := [3]int{0, 1, 2}
	if in.Channels == "BGR" {
		rgb = [3]int{2, 1, 0}
	}
	var a, b, pad [3]float32
	for c := range 3 {
		a[c], b[c] = *in.Scale/in.Std[c], -in.Mean[c]/in.Std[c]
		pad[c] = *in.Pad*a[c] + b[c]
	}
	plane := W * H
	set := func(i, c int, v float32) {
		if in.Layout == "NHWC" {
			dst[i*3+c] = v
		} else {
			dst[c*plane+i] = v
		}
	}
	for i := range plane {
		for c := range 3 {
			set(i, c, pad[c])
		}
	}
	// Source coordinate of a destination pixel: (d + 0.5)·(src/dst) - 0.5, clamped.
	fx, fy := float64(sw)/float64(g.W), float64(sh)/float64(g.H)
	type tap struct {
		i0, i1 int
		w1     float32
	}
	taps := func(n, src int, f float64) []tap {
		t := make([]tap, n)
		for d := range n {
			s := (float64(d)+0.5)*f - 0.5
			s = max(s, 0)
			i0 := min(int(math.Floor(s)), src-1)
			i1 := min(i0+1, src-1)
			t[d] = tap{i0, i1, float32(s - float64(i0))}
		}
		return t
	}
	xs, ys := taps(g.W, sw, fx), taps(g.H, sh, fy)
	pix, stride := img.Pix, img.Stride
	for y, ty := range ys {
		r0, r1 := pix[ty.i0*stride:], pix[ty.i1*stride:]
		base := (y+g.OffY)*W + g.OffX
		for x, tx := range xs {
			for c := range 3 {
				k := rgb[c]
				p00, p01 := float32(r0[tx.i0*4+k]), float32(r0[tx.i1*4+k])
				p10, p11 := float32(r1[tx.i0*4+k]), float32(r1[tx.i1*4+k])
				top := p00 + (p01-p00)*tx.w1
				bot := p10 + (p11-p10)*tx.w1
				p := top + (bot-top)*ty.w1
				set(base+x, c, p*a[c]+b[c])
			}
		}
	}
	return g, nil
}
