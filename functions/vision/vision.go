// Package vision decodes frames with OpenCV (gocv) and lays them out as a model's input
// tensor, as a function spec describes. It is the only place diplip touches pixels on the
// inference path; it knows nothing of models or runtimes.
package vision

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // DecodeConfig for JPEG headers
	_ "image/png"  // and PNG headers
	"math"

	"gocv.io/x/gocv"

	"github.com/diplip/diplip/functions"
)

// MaxPixels bounds a frame's decoded size (width × height): a small file can declare a
// huge image, and decoding it would exhaust memory. 8K UHD is 33 megapixels.
const MaxPixels = 40_000_000

// ErrCorruptFrame is wrapped by every error about a frame that cannot be decoded.
var ErrCorruptFrame = errors.New("corrupt frame")

// Decode decodes JPEG or PNG bytes into a BGR image. The caller closes the Mat. The
// header is read first, so an oversize image is refused before any pixel is decoded.
func Decode(b []byte) (gocv.Mat, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("%w: %d bytes are not a JPEG or PNG image: %v", ErrCorruptFrame, len(b), err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width*cfg.Height > MaxPixels {
		return gocv.Mat{}, fmt.Errorf("%w: %s declares %dx%d pixels; at most %d are accepted", ErrCorruptFrame, format, cfg.Width, cfg.Height, MaxPixels)
	}
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	if err != nil {
		return gocv.Mat{}, fmt.Errorf("%w: %v", ErrCorruptFrame, err)
	}
	if m.Empty() {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("%w: OpenCV could not decode the %s image (%d bytes; truncated?)", ErrCorruptFrame, format, len(b))
	}
	return m, nil
}

// TensorLen is the number of float32 values one frame takes in the input tensor.
func TensorLen(in functions.Input) int { return 3 * in.Width * in.Height }

// Fill resizes a BGR image as the spec says (bilinear) and writes it into dst, which
// holds TensorLen(in) values, in the spec's layout and channel order, with
// value = (pixel*scale - mean) / std and padding where the letterbox leaves canvas. It
// returns where the image went, to map boxes back.
func Fill(m gocv.Mat, in functions.Input, dst []float32) (functions.Geometry, error) {
	if m.Empty() || m.Type() != gocv.MatTypeCV8UC3 {
		return functions.Geometry{}, fmt.Errorf("vision: want a non-empty 8-bit BGR image, got type %v", m.Type())
	}
	if len(dst) != TensorLen(in) {
		return functions.Geometry{}, fmt.Errorf("vision: destination holds %d values, the input needs %d", len(dst), TensorLen(in))
	}
	g := functions.Fit(in, m.Cols(), m.Rows())
	src := m
	if g.W != m.Cols() || g.H != m.Rows() {
		resized := gocv.NewMat()
		defer resized.Close()
		gocv.Resize(m, &resized, image.Pt(g.W, g.H), 0, 0, gocv.InterpolationLinear)
		src = resized
	}
	if !src.IsContinuous() {
		c := src.Clone()
		defer c.Close()
		src = c
	}
	pix, err := src.DataPtrUint8()
	if err != nil {
		return functions.Geometry{}, fmt.Errorf("vision: %w", err)
	}

	// lut[c][p] is the tensor value of pixel value p in tensor channel c, and srcCh[c] the
	// BGR channel feeding tensor channel c.
	var lut [3][256]float32
	var padv [3]float32
	srcCh := [3]int{0, 1, 2}
	if in.Channels == "RGB" {
		srcCh = [3]int{2, 1, 0}
	}
	for c := range 3 {
		a, b := *in.Scale/in.Std[c], -in.Mean[c]/in.Std[c]
		for p := range 256 {
			lut[c][p] = float32(p)*a + b
		}
		padv[c] = *in.Pad*a + b
	}

	W, H := in.Width, in.Height
	plane := W * H
	nchw := in.Layout == "NCHW"
	// Padding first, only where the image does not cover the canvas.
	if g.W != W || g.H != H {
		for i := range plane {
			for c := range 3 {
				if nchw {
					dst[c*plane+i] = padv[c]
				} else {
					dst[i*3+c] = padv[c]
				}
			}
		}
	}
	for y := range g.H {
		row := pix[y*g.W*3 : (y+1)*g.W*3]
		base := (y+g.OffY)*W + g.OffX
		for x := range g.W {
			px := row[x*3 : x*3+3]
			i := base + x
			if nchw {
				dst[i] = lut[0][px[srcCh[0]]]
				dst[plane+i] = lut[1][px[srcCh[1]]]
				dst[2*plane+i] = lut[2][px[srcCh[2]]]
			} else {
				dst[i*3] = lut[0][px[srcCh[0]]]
				dst[i*3+1] = lut[1][px[srcCh[1]]]
				dst[i*3+2] = lut[2][px[srcCh[2]]]
			}
		}
	}
	return g, nil
}

// Crop returns the part of m inside box (source pixels, rounded outwards and clipped to
// the image) as a Mat of its own (the caller closes it), and the rectangle it took.
func Crop(m gocv.Mat, box functions.Box) (gocv.Mat, image.Rectangle, error) {
	r := image.Rect(int(math.Floor(float64(box.X1))), int(math.Floor(float64(box.Y1))),
		int(math.Ceil(float64(box.X2))), int(math.Ceil(float64(box.Y2)))).Intersect(image.Rect(0, 0, m.Cols(), m.Rows()))
	if r.Empty() || !finiteBox(box) {
		return gocv.Mat{}, r, fmt.Errorf("crop %v: no pixel of the %dx%d frame inside it", box, m.Cols(), m.Rows())
	}
	roi := m.Region(r)
	defer roi.Close()
	return roi.Clone(), r, nil
}

func finiteBox(b functions.Box) bool {
	for _, v := range []float32{b.X1, b.Y1, b.X2, b.Y2} {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}
