package functions

import (
	"fmt"
	"maps"
	"slices"
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
	"yolox": yoloxDecoder{},
	"raw":   rawDecoder{},
}

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
	o := outputs[0]
	if len(o.Shape) != 2 {
		return FrameResult{}, fmt.Errorf("yolox output %q has shape %v per frame: want [rows cols]", o.Name, o.Shape)
	}
	dets, err := DecodeYOLOX(o.Data, int(o.Shape[1]), spec.Input.Width, spec.Input.Height, *spec.Output.ScoreThreshold)
	if err != nil {
		return FrameResult{}, err
	}
	for i := range dets {
		dets[i].Box = g.ToSource(dets[i].Box)
		if dets[i].ClassID < len(labels) {
			dets[i].Label = labels[dets[i].ClassID]
		}
	}
	return FrameResult{Detections: NMS(dets, *spec.Output.NMSThreshold, spec.Output.ClassAgnostic)}, nil
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
