package bench

import (
	"fmt"
	"runtime"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/functions/pipeline"
)

// quantizeFunction writes into dst a copy of the function directory src whose model is a
// static INT8 copy (functions/onnx's quantizer) calibrated on calib, preprocessed as the
// runner does (decode, then the spec's input layout, batch 1), with the ranges `fn
// quantize --method auto` would keep: each candidate method scored against FP32 on
// choose. It says how the model was made.
func quantizeFunction(src, dst string, calib, choose [][]byte) (string, error) {
	spec, err := functions.LoadSpec(src)
	if err != nil {
		return "", err
	}
	c, err := pipeline.NewCalibration(src, spec, onnx.QuantizeOptions{Method: onnx.Entropy, Threads: runtime.NumCPU()})
	if err != nil {
		return "", err
	}
	defer c.Close()
	for i, f := range calib {
		if err := c.Observe(f); err != nil {
			return "", fmt.Errorf("calibration frame %d: %w", i, err)
		}
	}
	scores, best, rep, err := c.Choose(dst, choose, pipeline.AutoCandidates, pipeline.Options{Lanes: 1, IntraOpThreads: runtime.NumCPU()})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("static INT8 by functions/onnx: %s on the first %d frames (auto: F1 on %d others %s), %d nodes quantized, %d left FP32 (head tail %d, unsupported %d), model %.1f → %.1f MB",
		scores[best].Candidate, rep.Frames, len(choose), pipeline.ScoreList(scores), sum(rep.Quantized), len(rep.KeptFP32)+len(rep.Tail)+sum(rep.Unsupported), len(rep.Tail), sum(rep.Unsupported),
		float64(c.FP32Bytes())/(1<<20), float64(rep.Bytes)/(1<<20)), nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
