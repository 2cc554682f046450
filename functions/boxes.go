package functions

import (
	"fmt"
	"math"
)

// boxesScoresDecoder decodes SSD-style exports (UltraFace, SSD MobileNet, many custom
// heads whose anchors are decoded in the graph): one tensor of boxes [A, 4] and one of
// scores [A, C] (spec.Output.Tensors in that order), boxes in spec.Output.Boxes's format,
// scores through spec.Output.Activation, with an optional background column that is no
// class; then NMS.
type boxesScoresDecoder struct{}

// detrDecoder decodes DETR-style set predictions (RT-DETR, DETR, D-FINE): per query a box
// (normalised cx, cy, w, h by default) and class logits (sigmoid by default; DETR's
// softmax has a last no-object column). Either one tensor [Q, 4+C] (boxes then scores, as
// Ultralytics' RT-DETR export gives, with activation none) or two, [boxes, logits]:
// [Q, 4] and [Q, C]. No NMS: queries do not repeat objects.
type detrDecoder struct{}

func (boxesScoresDecoder) CheckOutputs(spec *Spec, outputs []TensorInfo) error {
	if len(outputs) != 2 {
		return fmt.Errorf("the boxes-scores decoder reads two outputs, boxes then scores; the spec names %d", len(outputs))
	}
	bx, sc := outputs[0], outputs[1]
	if sh := bx.Shape; len(sh) != 3 || (sh[2] >= 0 && sh[2] != 4) {
		return fmt.Errorf("output %q (the boxes, first in output.tensors): the boxes-scores decoder wants %s; the model gives %v", bx.Name, wantDims("anchors", 4), sh)
	}
	if sh := sc.Shape; len(sh) != 3 || (sh[1] >= 0 && bx.Shape[1] >= 0 && sh[1] != bx.Shape[1]) || (sh[2] >= 0 && sh[2] < minColumns(spec)) {
		return fmt.Errorf("output %q (the scores, second in output.tensors): the boxes-scores decoder wants %s, as many rows as the boxes %v; the model gives %v",
			sc.Name, wantDims(bx.Shape[1], "classes"), bx.Shape, sh)
	}
	return nil
}

func (detrDecoder) CheckOutputs(spec *Spec, outputs []TensorInfo) error {
	switch len(outputs) {
	case 1:
		if sh := outputs[0].Shape; len(sh) != 3 || (sh[2] >= 0 && sh[2] < 4+minColumns(spec)) {
			return fmt.Errorf("output %q: the detr decoder with one output wants %s (boxes then scores); the model gives %v", outputs[0].Name, wantDims("queries", "4+classes"), sh)
		}
	case 2:
		bx, lg := outputs[0], outputs[1]
		if sh := bx.Shape; len(sh) != 3 || (sh[2] >= 0 && sh[2] != 4) {
			return fmt.Errorf("output %q (the boxes, first in output.tensors): the detr decoder wants %s; the model gives %v", bx.Name, wantDims("queries", 4), sh)
		}
		if sh := lg.Shape; len(sh) != 3 || (sh[1] >= 0 && bx.Shape[1] >= 0 && sh[1] != bx.Shape[1]) || (sh[2] >= 0 && sh[2] < minColumns(spec)) {
			return fmt.Errorf("output %q (the logits, second in output.tensors): the detr decoder wants %s; the model gives %v", lg.Name, wantDims(bx.Shape[1], "classes"), sh)
		}
	default:
		return fmt.Errorf("the detr decoder reads one output [N queries 4+classes] or two, boxes then logits; the spec names %d", len(outputs))
	}
	return nil
}

// minColumns is the fewest score columns that hold one class.
func minColumns(spec *Spec) int64 {
	if b := spec.Output.Boxes; b != nil && b.Background != "none" {
		return 2
	}
	return 1
}

func (boxesScoresDecoder) Decode(spec *Spec, outputs []Tensor, g Geometry, labels []string) (FrameResult, error) {
	if len(outputs) != 2 {
		return FrameResult{}, fmt.Errorf("boxes-scores: %d outputs, want 2", len(outputs))
	}
	dets, err := decodeBoxScores(spec, outputs[0], outputs[1], 0)
	if err != nil {
		return FrameResult{}, err
	}
	return FrameResult{Detections: finish(spec, dets, g, labels, true)}, nil
}

func (detrDecoder) Decode(spec *Spec, outputs []Tensor, g Geometry, labels []string) (FrameResult, error) {
	var dets []Detection
	var err error
	switch len(outputs) {
	case 1:
		dets, err = decodeBoxScores(spec, outputs[0], outputs[0], 4)
	case 2:
		dets, err = decodeBoxScores(spec, outputs[0], outputs[1], 0)
	default:
		err = fmt.Errorf("detr: %d outputs, want 1 or 2", len(outputs))
	}
	if err != nil {
		return FrameResult{}, err
	}
	return FrameResult{Detections: finish(spec, dets, g, labels, false)}, nil
}

// decodeBoxScores reads per-row boxes (the first 4 values of each of bx's rows) and
// scores (sc's values from column first on; bx and sc may be one [rows 4+C] tensor)
// into detections in canvas pixels, keeping those scoring at least the threshold.
func decodeBoxScores(spec *Spec, bx Tensor, sc Tensor, first int) ([]Detection, error) {
	for _, o := range []Tensor{bx, sc} {
		if err := checkLen(o); err != nil {
			return nil, err
		}
		if len(o.Shape) != 2 {
			return nil, fmt.Errorf("output %q has shape %v per frame: want [rows values]", o.Name, o.Shape)
		}
	}
	rows, bw := int(bx.Shape[0]), int(bx.Shape[1])
	sw := int(sc.Shape[1])
	if bw < 4 || int(sc.Shape[0]) != rows || sw-first < int(minColumns(spec)) {
		return nil, fmt.Errorf("boxes %q %v and scores %q %v: want [rows 4] and [rows classes]", bx.Name, bx.Shape, sc.Name, sc.Shape)
	}
	b := spec.Output.Boxes
	W, H := float32(spec.Input.Width), float32(spec.Input.Height)
	sx, sy := float32(1), float32(1)
	if *b.Normalized {
		sx, sy = W, H
	}
	cols := sw - first
	lo, hi := 0, cols // the class columns among the score columns
	switch b.Background {
	case "first":
		lo = 1
	case "last":
		hi = cols - 1
	}
	thr := *spec.Output.ScoreThreshold
	buf := make([]float32, cols)
	var dets []Detection
	for r := range rows {
		activate(spec.Output.Activation, buf, sc.Data[r*sw+first:(r+1)*sw])
		best, bestScore := 0, float32(math.Inf(-1))
		for k := lo; k < hi; k++ {
			if buf[k] > bestScore {
				best, bestScore = k-lo, buf[k]
			}
		}
		if !(bestScore >= thr) {
			continue
		}
		v := bx.Data[r*bw : r*bw+4]
		var box Box
		switch b.Format {
		case "cxcywh":
			box = Box{(v[0] - v[2]/2) * sx, (v[1] - v[3]/2) * sy, (v[0] + v[2]/2) * sx, (v[1] + v[3]/2) * sy}
		case "yxyx":
			box = Box{v[1] * sx, v[0] * sy, v[3] * sx, v[2] * sy}
		default:
			box = Box{v[0] * sx, v[1] * sy, v[2] * sx, v[3] * sy}
		}
		dets = append(dets, Detection{ClassID: best, Score: bestScore, Box: box})
	}
	return dets, nil
}
