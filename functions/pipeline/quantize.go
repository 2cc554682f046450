package pipeline

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/functions/vision"
)

// Calibration quantizes a function's model on encoded frames preprocessed exactly as a
// runner does (decode, then the spec's input layout, batch 1), and writes the INT8 copy
// of the function (`diplip fn quantize` and the bench's INT8 rows).
type Calibration struct {
	dir   string
	spec  *functions.Spec
	model []byte
	cal   *onnx.Calibrator
	buf   []float32
}

// NewCalibration opens a calibration of the model of the function in dir. Errors are
// onnx.NewCalibrator's (onnx.ErrAlreadyQuantized among them).
func NewCalibration(dir string, spec *functions.Spec, opt onnx.QuantizeOptions) (*Calibration, error) {
	model, err := os.ReadFile(filepath.Join(dir, spec.Model))
	if err != nil {
		return nil, err
	}
	cal, err := onnx.NewCalibrator(model, opt)
	if err != nil {
		return nil, err
	}
	return &Calibration{dir: dir, spec: spec, model: model, cal: cal, buf: make([]float32, onnx.FrameLen(spec.Input))}, nil
}

// Observe runs one encoded frame through the FP32 model and keeps its ranges. A frame
// that cannot be decoded or laid out is an error wrapping vision.ErrCorruptFrame.
func (c *Calibration) Observe(frame []byte) error {
	m, err := vision.Decode(frame)
	if err != nil {
		return err
	}
	_, err = vision.Fill(m, c.spec.Input, c.buf)
	m.Close()
	if err != nil {
		return fmt.Errorf("%w: %v", vision.ErrCorruptFrame, err)
	}
	return c.cal.Observe(c.buf)
}

// Frames is how many frames were observed.
func (c *Calibration) Frames() int { return c.cal.Frames() }

// FP32Bytes is the size of the model being quantized.
func (c *Calibration) FP32Bytes() int { return len(c.model) }

// Write quantizes and writes the function into dst: the spec and labels files as they
// are, the INT8 model under the spec's model name.
func (c *Calibration) Write(dst string) (*onnx.QuantizeReport, error) {
	q, rep, err := c.cal.Quantize()
	if err != nil {
		return nil, err
	}
	files := []string{functions.SpecFile}
	if c.spec.Labels != "" {
		files = append(files, c.spec.Labels)
	}
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(c.dir, name))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	return rep, os.WriteFile(filepath.Join(dst, c.spec.Model), q, 0o644)
}

// Close frees the calibration session.
func (c *Calibration) Close() error { return c.cal.Close() }
