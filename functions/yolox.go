package functions

import (
	"fmt"
	"math"
)

// yoloxStrides are the YOLOX heads' strides, in the order their rows appear in the output.
var yoloxStrides = [...]int{8, 16, 32}

// YOLOXRows is the number of output rows a YOLOX model with a w×h input produces.
func YOLOXRows(w, h int) int {
	n := 0
	for _, s := range yoloxStrides {
		n += (w / s) * (h / s)
	}
	return n
}

// DecodeYOLOX turns one image's raw YOLOX output (rows × cols, row-major, as exported by
// YOLOX's export_onnx.py without decoding in the graph) into detections in canvas
// pixels, keeping those scoring at least scoreThreshold. Rows run stride 8, 16, then 32,
// each grid y-outer, x-inner; a row is [tx, ty, tw, th, obj, class scores...] with obj and
// class scores already sigmoid-ed. No NMS is applied here.
func DecodeYOLOX(out []float32, cols, w, h int, scoreThreshold float32) ([]Detection, error) {
	rows := YOLOXRows(w, h)
	if cols < 6 {
		return nil, fmt.Errorf("yolox output has %d values per row: want 5 + at least one class", cols)
	}
	if len(out) != rows*cols {
		return nil, fmt.Errorf("yolox output has %d values: a %dx%d input gives %d rows × %d = %d",
			len(out), w, h, rows, cols, rows*cols)
	}
	var dets []Detection
	row := 0
	for _, s := range yoloxStrides {
		gw, gh := w/s, h/s
		for gy := 0; gy < gh; gy++ {
			for gx := 0; gx < gw; gx++ {
				r := out[row*cols : (row+1)*cols]
				row++
				obj := r[4]
				if obj < scoreThreshold { // score = obj × class ≤ obj
					continue
				}
				best, bestScore := 0, float32(-1)
				for k, c := range r[5:] {
					if c > bestScore {
						best, bestScore = k, c
					}
				}
				score := obj * bestScore
				if score < scoreThreshold {
					continue
				}
				fs := float32(s)
				cx, cy := (r[0]+float32(gx))*fs, (r[1]+float32(gy))*fs
				bw := float32(math.Exp(float64(r[2]))) * fs
				bh := float32(math.Exp(float64(r[3]))) * fs
				dets = append(dets, Detection{ClassID: best, Score: score,
					Box: Box{cx - bw/2, cy - bh/2, cx + bw/2, cy + bh/2}})
			}
		}
	}
	return dets, nil
}
