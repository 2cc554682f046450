package functions

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// TensorInfo is a model input or output as the runtime reports it. A dimension of -1 (or
// any negative value) is dynamic.
type TensorInfo struct {
	Name  string
	Shape []int64
}

func (t TensorInfo) String() string { return fmt.Sprintf("%s%v", t.Name, t.Shape) }

// wantInputShape is the input shape the spec implies, with -1 for the batch axis.
func (s *Spec) wantInputShape() []int64 {
	w, h := int64(s.Input.Width), int64(s.Input.Height)
	if s.Input.Layout == "NHWC" {
		return []int64{-1, h, w, 3}
	}
	return []int64{-1, 3, h, w}
}

// CheckModel compares the spec with the model's inputs and outputs as the runtime reports
// them. A mismatch is an error naming both sides. It returns whether the model's batch
// axis is dynamic (one run per batch) or fixed at 1 (one run per frame).
func (s *Spec) CheckModel(inputs, outputs []TensorInfo) (dynamicBatch bool, err error) {
	names := func(ts []TensorInfo) string {
		var n []string
		for _, t := range ts {
			n = append(n, t.String())
		}
		return strings.Join(n, ", ")
	}
	i := slices.IndexFunc(inputs, func(t TensorInfo) bool { return t.Name == s.Input.Tensor })
	if i < 0 {
		return false, fmt.Errorf("input.tensor %q: the model has no such input; it has %s", s.Input.Tensor, names(inputs))
	}
	got, want := inputs[i].Shape, s.wantInputShape()
	if len(got) != len(want) {
		return false, fmt.Errorf("input %q: the model wants %d dimensions %v, the spec describes %s %v",
			s.Input.Tensor, len(got), got, s.Input.Layout, want[1:])
	}
	for d := 1; d < len(want); d++ {
		if got[d] >= 0 && got[d] != want[d] {
			return false, fmt.Errorf("input %q: the model wants %v, the spec says %s %dx%d (i.e. [N %v])",
				s.Input.Tensor, got, s.Input.Layout, s.Input.Width, s.Input.Height, want[1:])
		}
	}
	if got[0] > 1 {
		return false, fmt.Errorf("input %q: the model's batch axis is fixed at %d; diplip needs 1 or dynamic", s.Input.Tensor, got[0])
	}
	var named []TensorInfo
	for _, name := range s.Output.Tensors {
		j := slices.IndexFunc(outputs, func(t TensorInfo) bool { return t.Name == name })
		if j < 0 {
			return false, fmt.Errorf("output.tensors: %q: the model has no such output; it has %s", name, names(outputs))
		}
		named = append(named, outputs[j])
	}
	dec, ok := DecoderFor(s.Output.Decoder)
	if !ok {
		return false, fmt.Errorf("output.decoder %q is not registered", s.Output.Decoder)
	}
	if err := dec.CheckOutputs(s, named); err != nil {
		return false, err
	}
	return got[0] < 0, nil
}

// NamedOutputs picks, from a model's outputs, those spec.Output.Tensors names, in that
// order (a name the model lacks is skipped: CheckModel reports it).
func (s *Spec) NamedOutputs(outputs []TensorInfo) []TensorInfo {
	var named []TensorInfo
	for _, name := range s.Output.Tensors {
		if j := slices.IndexFunc(outputs, func(t TensorInfo) bool { return t.Name == name }); j >= 0 {
			named = append(named, outputs[j])
		}
	}
	return named
}

// FrameResult is what a function made of one frame.
type FrameResult struct {
	// Width and Height of the decoded frame.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Detections, for detector functions, in source-image pixels, best first.
	Detections []Detection `json:"detections,omitempty"`
	// Raw holds the named output tensors, for the raw decoder.
	Raw map[string][]float32 `json:"raw,omitempty"`
	// Labels, for classifier functions: the top classes, best first.
	Labels []ClassScore `json:"labels,omitempty"`
	// Embedding, for embedder functions: the L2-normalised vector.
	Embedding []float32 `json:"embedding,omitempty"`
	// Err is set when this frame could not be processed (e.g. a corrupt JPEG); the other
	// frames of its batch are unaffected.
	Err error `json:"-"`
}

// ClassScore is one class of a classifier's result and its score.
type ClassScore struct {
	ClassID int     `json:"class_id"`
	Label   string  `json:"label,omitempty"`
	Score   float32 `json:"score"`
}

// BatchTimings splits the time a batch took.
type BatchTimings struct {
	Decode      time.Duration // image decoding
	Preprocess  time.Duration // resize and tensor layout
	Infer       time.Duration // the runtime's Run
	Postprocess time.Duration // decoding outputs, NMS
}

// ParseLabels reads class names, one per line; blank trailing lines are ignored.
func ParseLabels(text string) []string {
	lines := strings.Split(strings.TrimRight(text, "\n\r "), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return lines
}
