package functions

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// classifyDecoder reads one [C] vector per frame (an ImageNet-style classifier's logits
// or probabilities; trailing axes of size 1 are allowed) into the top spec.Output.TopK
// classes, best first, scored through spec.Output.Activation (softmax by default) and
// at least spec.Output.ScoreThreshold.
type classifyDecoder struct{}

// embedDecoder reads one [D] vector per frame (a re-identification or CLIP-style
// embedder) and returns it L2-normalised, so that the dot product of two is their cosine
// similarity.
type embedDecoder struct{}

// vectorLen is the length of a per-frame [N D] (or [N D 1 1]) output, or -1 when the
// shape is not one vector or is dynamic.
func vectorLen(sh []int64) int64 {
	if len(sh) < 2 {
		return -1
	}
	for _, d := range sh[2:] {
		if d != 1 {
			return -1
		}
	}
	return sh[1]
}

func checkVector(decoder, what string, outputs []TensorInfo) error {
	if len(outputs) != 1 {
		return fmt.Errorf("the %s decoder reads exactly one output, the spec names %d", decoder, len(outputs))
	}
	if n := vectorLen(outputs[0].Shape); n == 0 || (n < 0 && (len(outputs[0].Shape) < 2 || outputs[0].Shape[1] >= 0)) {
		return fmt.Errorf("output %q: the %s decoder wants %s (one vector per frame); the model gives %v",
			outputs[0].Name, decoder, wantDims(what), outputs[0].Shape)
	}
	return nil
}

func (classifyDecoder) CheckOutputs(_ *Spec, outputs []TensorInfo) error {
	return checkVector("classify", "classes", outputs)
}

func (embedDecoder) CheckOutputs(_ *Spec, outputs []TensorInfo) error {
	return checkVector("embed", "dimensions", outputs)
}

// oneVector returns a frame's only output as a vector.
func oneVector(decoder string, outputs []Tensor) ([]float32, error) {
	if len(outputs) != 1 {
		return nil, fmt.Errorf("%s: %d outputs, want 1", decoder, len(outputs))
	}
	o := outputs[0]
	if err := checkLen(o); err != nil {
		return nil, err
	}
	if len(o.Data) == 0 {
		return nil, fmt.Errorf("%s: output %q is empty (shape %v)", decoder, o.Name, o.Shape)
	}
	return o.Data, nil
}

func (classifyDecoder) Decode(spec *Spec, outputs []Tensor, _ Geometry, labels []string) (FrameResult, error) {
	v, err := oneVector("classify", outputs)
	if err != nil {
		return FrameResult{}, err
	}
	scores := make([]float32, len(v))
	activate(spec.Output.Activation, scores, v)
	idx := make([]int, 0, len(scores))
	thr := *spec.Output.ScoreThreshold
	for i, s := range scores {
		if s >= thr && finite(s) {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	if k := spec.Output.TopK; k > 0 && len(idx) > k {
		idx = idx[:k]
	}
	out := make([]ClassScore, len(idx))
	for j, i := range idx {
		out[j] = ClassScore{ClassID: i, Score: scores[i]}
		if i < len(labels) {
			out[j].Label = labels[i]
		}
	}
	return FrameResult{Labels: out}, nil
}

func (embedDecoder) Decode(_ *Spec, outputs []Tensor, _ Geometry, _ []string) (FrameResult, error) {
	v, err := oneVector("embed", outputs)
	if err != nil {
		return FrameResult{}, err
	}
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	norm := math.Sqrt(ss)
	if math.IsNaN(norm) || math.IsInf(norm, 0) || norm == 0 {
		return FrameResult{}, fmt.Errorf("embed: output %q has norm %v: no direction to normalise (NaN, Inf or all zeros)", outputs[0].Name, norm)
	}
	e := make([]float32, len(v))
	for i, x := range v {
		e[i] = float32(float64(x) / norm)
	}
	return FrameResult{Embedding: e}, nil
}
