package ingest

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"strconv"
	"strings"
)

// maxCropPixels bounds the frame a crop decodes (the push limit is 40 megapixels).
const maxCropPixels = 40_000_000

// CropJPEG cuts box ("x1,y1,x2,y2" in source-image pixels, clamped to the frame) out of a
// JPEG frame and encodes it again: the snapshot of one object that a sink's event names.
func CropJPEG(frame []byte, box string) ([]byte, error) {
	parts := strings.Split(box, ",")
	if len(parts) != 4 {
		return nil, fmt.Errorf("box %q: want x1,y1,x2,y2", box)
	}
	var v [4]int
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("box %q: want four numbers x1,y1,x2,y2", box)
		}
		v[i] = int(math.Round(max(-1e6, min(f, 1e6))))
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(frame))
	if err != nil || cfg.Width*cfg.Height > maxCropPixels {
		return nil, fmt.Errorf("the frame is not a JPEG that can be cropped")
	}
	img, err := jpeg.Decode(bytes.NewReader(frame))
	if err != nil {
		return nil, fmt.Errorf("decoding the frame: %w", err)
	}
	r := image.Rect(v[0], v[1], v[2], v[3]).Intersect(img.Bounds())
	if r.Empty() {
		return nil, fmt.Errorf("box %q is outside the %dx%d frame", box, img.Bounds().Dx(), img.Bounds().Dy())
	}
	sub, ok := img.(interface {
		SubImage(image.Rectangle) image.Image
	})
	if !ok {
		return nil, fmt.Errorf("the frame's image type cannot be cropped")
	}
	var out bytes.Buffer
	if err := jpeg.Encode(&out, sub.SubImage(r), &jpeg.Options{Quality: 90}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
