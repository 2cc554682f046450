package functions

import (
	"fmt"
	"math"
)

// yoloDecoder decodes Ultralytics exports, in input-canvas pixels:
//   - v8 (also v11): one [4+C, A] tensor per frame, rows cx, cy, w, h, then the C class
//     scores (already sigmoid-ed; no objectness), one column per anchor; then NMS;
//   - v5: [A, 5+C], rows cx, cy, w, h, objectness, class scores; score = obj × class;
//     then NMS;
//   - end2end (nms=True exports, YOLOv10, YOLO26): [K, 6], rows x1, y1, x2, y2, score,
//     class; NMS was done in the graph.
//
// The variant is spec.Output.YOLO.Variant or, when unset, told from the shape (see
// yoloVariant).
type yoloDecoder struct{}

// yoloVariant tells the layout of a per-frame [a, b] output: [K, 6] with K ≤ 1000 is
// end2end, fewer rows than columns is v8 ([4+C, A]: anchors outnumber classes), else v5.
// It returns "" when the shape does not say (dynamic dimensions).
func yoloVariant(spec *Spec, a, b int64) string {
	if y := spec.Output.YOLO; y != nil && y.Variant != "" {
		return y.Variant
	}
	switch {
	case a < 0 || b < 0:
		return ""
	case b == 6 && a <= 1000:
		return "end2end"
	case a < b:
		return "v8"
	default:
		return "v5"
	}
}

func (yoloDecoder) CheckOutputs(spec *Spec, outputs []TensorInfo) error {
	if len(outputs) != 1 {
		return fmt.Errorf("the yolo decoder reads exactly one output, the spec names %d", len(outputs))
	}
	o := outputs[0]
	if len(o.Shape) != 3 {
		return fmt.Errorf("output %q: the yolo decoder wants [N 4+classes anchors] (v8/v11), [N anchors 5+classes] (v5) or [N boxes 6] (end2end); the model gives %v",
			o.Name, o.Shape)
	}
	a, b := o.Shape[1], o.Shape[2]
	switch v := yoloVariant(spec, a, b); v {
	case "":
		return fmt.Errorf("output %q has shape %v: the yolo decoder cannot tell the layout from dynamic dimensions; set output.yolo.variant (v8, v5 or end2end)", o.Name, o.Shape)
	case "v8":
		if a >= 0 && a < 5 {
			return fmt.Errorf("output %q: the yolo decoder (v8) wants %s; the model gives %v", o.Name, wantDims("4+classes", "anchors"), o.Shape)
		}
	case "v5":
		if b >= 0 && b < 6 {
			return fmt.Errorf("output %q: the yolo decoder (v5) wants %s; the model gives %v", o.Name, wantDims("anchors", "5+classes"), o.Shape)
		}
	case "end2end":
		if b >= 0 && b != 6 {
			return fmt.Errorf("output %q: the yolo decoder (end2end) wants %s; the model gives %v", o.Name, wantDims("boxes", 6), o.Shape)
		}
	}
	return nil
}

func (yoloDecoder) Decode(spec *Spec, outputs []Tensor, g Geometry, labels []string) (FrameResult, error) {
	if len(outputs) != 1 {
		return FrameResult{}, fmt.Errorf("yolo: %d outputs, want 1", len(outputs))
	}
	o := outputs[0]
	if err := checkLen(o); err != nil {
		return FrameResult{}, err
	}
	if len(o.Shape) != 2 {
		return FrameResult{}, fmt.Errorf("yolo output %q has shape %v per frame: want 2 dimensions", o.Name, o.Shape)
	}
	a, b := int(o.Shape[0]), int(o.Shape[1])
	thr := *spec.Output.ScoreThreshold
	act := spec.Output.Activation
	var dets []Detection
	centre := func(cx, cy, w, h float32) Box { return Box{cx - w/2, cy - h/2, cx + w/2, cy + h/2} }
	variant := yoloVariant(spec, int64(a), int64(b))
	switch variant {
	case "v8": // [4+C, A], column-major per anchor
		classes, anchors := a-4, b
		if classes < 1 {
			return FrameResult{}, fmt.Errorf("yolo v8 output %q has %d rows: want 4 + at least one class", o.Name, a)
		}
		d := o.Data
		for i := range anchors {
			best, bestScore := 0, float32(math.Inf(-1))
			for k := range classes {
				v := score(act, d[(4+k)*anchors+i])
				if v > bestScore {
					best, bestScore = k, v
				}
			}
			if !(bestScore >= thr) {
				continue
			}
			dets = append(dets, Detection{ClassID: best, Score: bestScore,
				Box: centre(d[i], d[anchors+i], d[2*anchors+i], d[3*anchors+i])})
		}
	case "v5": // [A, 5+C]
		if b < 6 {
			return FrameResult{}, fmt.Errorf("yolo v5 output %q has %d columns: want 5 + at least one class", o.Name, b)
		}
		for i := range a {
			r := o.Data[i*b : (i+1)*b]
			obj := score(act, r[4])
			if !(obj >= thr) { // score = obj × class ≤ obj
				continue
			}
			best, bestScore := 0, float32(math.Inf(-1))
			for k, c := range r[5:] {
				if v := score(act, c); v > bestScore {
					best, bestScore = k, v
				}
			}
			s := obj * bestScore
			if !(s >= thr) {
				continue
			}
			dets = append(dets, Detection{ClassID: best, Score: s, Box: centre(r[0], r[1], r[2], r[3])})
		}
	case "end2end": // [K, 6]
		if b != 6 {
			return FrameResult{}, fmt.Errorf("yolo end2end output %q has %d columns: want 6", o.Name, b)
		}
		for i := range a {
			r := o.Data[i*6 : (i+1)*6]
			s := score(act, r[4])
			if !(s >= thr) || !finite(r[5]) || r[5] < 0 || r[5] > 1e6 {
				continue
			}
			dets = append(dets, Detection{ClassID: int(r[5]), Score: s, Box: Box{r[0], r[1], r[2], r[3]}})
		}
		return FrameResult{Detections: finish(spec, dets, g, labels, false)}, nil
	default:
		return FrameResult{}, fmt.Errorf("yolo: unknown variant %q", variant)
	}
	return FrameResult{Detections: finish(spec, dets, g, labels, true)}, nil
}

// score applies a per-value activation (sigmoid or none; softmax needs the whole row and
// is treated as none here).
func score(activation string, v float32) float32 {
	if activation == "sigmoid" {
		return sigmoid(v)
	}
	return v
}
