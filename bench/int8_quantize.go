package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/functions/vision"
)

// quantizeFunction writes into dst a copy of the function directory src whose model is a
// static INT8 copy (functions/onnx's quantizer with entropy ranges, fn quantize's default) calibrated on
// calib, preprocessed as the runner does (decode, then the spec's input layout, batch 1),
// and says how it was made.
func quantizeFunction(src, dst string, calib [][]byte) (string, error) {
	spec, err := functions.LoadSpec(src)
	if err != nil {
		return "", err
	}
	model, err := os.ReadFile(filepath.Join(src, spec.Model))
	if err != nil {
		return "", err
	}
	c, err := onnx.NewCalibrator(model, onnx.QuantizeOptions{Method: onnx.Entropy, Threads: runtime.NumCPU()})
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]float32, onnx.FrameLen(spec.Input))
	for i, f := range calib {
		m, err := vision.Decode(f)
		if err != nil {
			return "", fmt.Errorf("calibration frame %d: %w", i, err)
		}
		_, err = vision.Fill(m, spec.Input, buf)
		m.Close()
		if err != nil {
			return "", fmt.Errorf("calibration frame %d: %w", i, err)
		}
		if err := c.Observe(buf); err != nil {
			return "", err
		}
	}
	q, rep, err := c.Quantize()
	if err != nil {
		return "", err
	}
	if err := copyFunction(src, dst, spec.Model); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dst, spec.Model), q, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("static INT8 by functions/onnx: %s on the first %d frames, %d nodes quantized, %d left FP32 (head tail %d, unsupported %d), model %.1f → %.1f MB",
		rep.Method, rep.Frames, sum(rep.Quantized), len(rep.KeptFP32)+len(rep.Tail)+sum(rep.Unsupported), len(rep.Tail), sum(rep.Unsupported),
		float64(len(model))/(1<<20), float64(len(q))/(1<<20)), nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
