package functions

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Tensor is one frame's slice of a model output: its values and its shape without the
// batch axis.
type Tensor struct {
	Name  string
	Shape []int64
	Data  []float32
}

// Decoder turns one frame's output tensors into its result. A model family (YOLOX,
// SSD-style boxes+scores, classifiers) is one Decoder, registered by the name a spec's
// output.decoder uses. Decoders are pure Go and hold no state, so one value serves every
// frame concurrently.
type Decoder interface {
	// CheckOutputs checks the model's outputs named in spec.Output.Tensors (in that
	// order) at build time, so a mismatch is caught before the image exists.
	CheckOutputs(spec *Spec, outputs []TensorInfo) error
	// Decode makes one frame's result from its outputs, in spec.Output.Tensors order.
	// g maps input-canvas pixels back to the source image; labels may be empty.
	Decode(spec *Spec, outputs []Tensor, g Geometry, labels []string) (FrameResult, error)
}

var decoders = map[string]Decoder{
	"yolox":        yoloxDecoder{},
	"yolo":         yoloDecoder{},
	"gfl":          gflDecoder{},
	"boxes-scores": boxesScoresDecoder{},
	"detr":         detrDecoder{},
	"classify":     classifyDecoder{},
	"embed":        embedDecoder{},
	"raw":          rawDecoder{},
}

// tensorCounts is how many output tensors a decoder reads, where that is fixed.
var tensorCounts = map[string]int{"yolox": 1, "yolo": 1, "boxes-scores": 2, "classify": 1, "embed": 1}

// DecoderFor returns the decoder registered as name.
func DecoderFor(name string) (Decoder, bool) {
	d, ok := decoders[name]
	return d, ok
}

// DecoderNames lists the registered decoders, sorted.
func DecoderNames() []string { return slices.Sorted(maps.Keys(decoders)) }

// yoloxDecoder decodes YOLOX exports whose graph leaves boxes raw (see DecodeYOLOX),
// then maps boxes to the source image, names them and runs NMS.
type yoloxDecoder struct{}

func (yoloxDecoder) CheckOutputs(spec *Spec, outputs []TensorInfo) error {
	if len(outputs) != 1 {
		return fmt.Errorf("the yolox decoder reads exactly one output, the spec names %d", len(outputs))
	}
	sh := outputs[0].Shape
	rows := int64(YOLOXRows(spec.Input.Width, spec.Input.Height))
	if len(sh) != 3 || (sh[1] >= 0 && sh[1] != rows) || (sh[2] >= 0 && sh[2] < 6) {
		return fmt.Errorf("output %q: the yolox decoder wants [N %d 5+classes] for a %dx%d input; the model gives %v",
			outputs[0].Name, rows, spec.Input.Width, spec.Input.Height, sh)
	}
	return nil
}

func (yoloxDecoder) Decode(spec *Spec, outputs []Tensor, g Geometry, labels []string) (FrameResult, error) {
	if len(outputs) != 1 {
		return FrameResult{}, fmt.Errorf("yolox: %d outputs, want 1", len(outputs))
	}
	o := outputs[0]
	if err := checkLen(o); err != nil {
		return FrameResult{}, err
	}
	if len(o.Shape) != 2 {
		return FrameResult{}, fmt.Errorf("yolox output %q has shape %v per frame: want [rows cols]", o.Name, o.Shape)
	}
	dets, err := DecodeYOLOX(o.Data, int(o.Shape[1]), spec.Input.Width, spec.Input.Height, *spec.Output.ScoreThreshold)
	if err != nil {
		return FrameResult{}, err
	}
	return FrameResult{Detections: finish(spec, dets, g, labels, true)}, nil
}

// finish maps detections in canvas pixels to the source image, drops those whose numbers
// are not finite (a broken export's NaN or Inf), names them and, when nms, runs NMS.
func finish(spec *Spec, dets []Detection, g Geometry, labels []string, nms bool) []Detection {
	kept := dets[:0]
	for _, d := range dets {
		if !finite(d.Score, d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2) {
			continue
		}
		d.Box = g.ToSource(d.Box)
		if d.ClassID >= 0 && d.ClassID < len(labels) {
			d.Label = labels[d.ClassID]
		}
		kept = append(kept, d)
	}
	if !nms {
		slices.SortStableFunc(kept, func(a, b Detection) int { return cmp.Compare(b.Score, a.Score) })
		return kept
	}
	return NMS(kept, *spec.Output.NMSThreshold, spec.Output.ClassAgnostic)
}

// finite reports whether every value is a number other than ±Inf.
func finite(vs ...float32) bool {
	for _, v := range vs {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}

// checkLen checks that a tensor holds the values its shape says, so that decoders can
// index it without bounds surprises.
func checkLen(o Tensor) error {
	n := 1
	for _, d := range o.Shape {
		if d < 0 {
			return fmt.Errorf("output %q has shape %v per frame: a negative dimension", o.Name, o.Shape)
		}
		n *= int(d)
	}
	if n != len(o.Data) {
		return fmt.Errorf("output %q has %d values; its shape %v says %d", o.Name, len(o.Data), o.Shape, n)
	}
	return nil
}

// sigmoid is the logistic function.
func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// activate writes the scores of logits into dst (which may be logits) as the spec's
// activation says: unchanged, each through a sigmoid, or a softmax over them all.
func activate(activation string, dst, logits []float32) {
	switch activation {
	case "sigmoid":
		for i, v := range logits {
			dst[i] = sigmoid(v)
		}
	case "softmax":
		softmax(dst, logits)
	default:
		copy(dst, logits)
	}
}

// softmax writes softmax(x) into dst (which may be x). A NaN stays NaN; +Inf takes all.
func softmax(dst, x []float32) {
	if len(x) == 0 {
		return
	}
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	if math.IsInf(float64(m), 1) {
		for i, v := range x {
			dst[i] = 0
			if math.IsInf(float64(v), 1) {
				dst[i] = 1
			}
		}
		return
	}
	var sum float64
	for i, v := range x {
		e := math.Exp(float64(v - m))
		dst[i] = float32(e)
		sum += e
	}
	for i := range dst[:len(x)] {
		dst[i] = float32(float64(dst[i]) / sum)
	}
}

// wantDims describes an expected shape for error messages: [N 3549 85].
func wantDims(dims ...any) string {
	parts := []string{"N"}
	for _, d := range dims {
		parts = append(parts, fmt.Sprint(d))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// rawDecoder returns the named output tensors as they are, for models whose results the
// client interprets.
type rawDecoder struct{}

func (rawDecoder) CheckOutputs(*Spec, []TensorInfo) error { return nil }

func (rawDecoder) Decode(_ *Spec, outputs []Tensor, _ Geometry, _ []string) (FrameResult, error) {
	raw := make(map[string][]float32, len(outputs))
	for _, o := range outputs {
		raw[o.Name] = slices.Clone(o.Data)
	}
	return FrameResult{Raw: raw}, nil
}

// classCount is the number of classes a decoder's outputs carry, or -1 where the shapes
// do not say (end-to-end exports, dynamic dimensions, decoders without classes).
func classCount(spec *Spec, outputs []TensorInfo) int {
	last := func(i int) int64 {
		if i >= len(outputs) || len(outputs[i].Shape) == 0 {
			return -1
		}
		return outputs[i].Shape[len(outputs[i].Shape)-1]
	}
	bg := int64(0)
	if b := spec.Output.Boxes; b != nil && b.Background != "none" {
		bg = 1
	}
	var n int64 = -1
	switch spec.Output.Decoder {
	case "yolox":
		n = last(0) - 5
	case "yolo":
		if len(outputs) == 1 && len(outputs[0].Shape) == 3 {
			switch yoloVariant(spec, outputs[0].Shape[1], outputs[0].Shape[2]) {
			case "v8":
				n = outputs[0].Shape[1] - 4
			case "v5":
				n = last(0) - 5
			}
		}
	case "gfl":
		n = last(0)
		if spec.Output.GFL != nil && spec.Output.GFL.Order == "combined" && n >= 0 {
			n -= int64(4 * (spec.Output.GFL.RegMax + 1))
		}
	case "boxes-scores":
		n = last(1) - bg
	case "detr":
		if len(outputs) == 1 {
			n = last(0) - 4 - bg
		} else {
			n = last(1) - bg
		}
	case "classify":
		if len(outputs) == 1 {
			n = vectorLen(outputs[0].Shape)
		}
	}
	if n <= 0 {
		return -1
	}
	return int(n)
}

// CheckLabels checks a labels file's names against the class count the model's outputs
// (named in spec.Output.Tensors order) determine, where they determine one.
func CheckLabels(spec *Spec, outputs []TensorInfo, labels []string) error {
	if len(labels) == 0 {
		return nil
	}
	if n := classCount(spec, outputs); n > 0 && n != len(labels) {
		return fmt.Errorf("labels %s: %d names, but the model's outputs (%s) give %d classes for the %s decoder",
			spec.Labels, len(labels), tensorInfos(outputs), n, spec.Output.Decoder)
	}
	return nil
}

func tensorInfos(ts []TensorInfo) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.String())
	}
	return strings.Join(s, ", ")
}
