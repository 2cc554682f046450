package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
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
	return rep, c.write(dst, q)
}

// WriteAs is Write with the ranges chosen by cand.
func (c *Calibration) WriteAs(dst string, cand Candidate) (*onnx.QuantizeReport, error) {
	q, rep, err := c.cal.QuantizeAs(cand.Method, cand.Percentile)
	if err != nil {
		return nil, err
	}
	return rep, c.write(dst, q)
}

func (c *Calibration) write(dst string, model []byte) error {
	files := []string{functions.SpecFile}
	if c.spec.Labels != "" {
		files = append(files, c.spec.Labels)
	}
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(c.dir, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dst, c.spec.Model), model, 0o644)
}

// Candidate is one way of choosing activation ranges from what calibration saw.
type Candidate struct {
	Method     onnx.CalibrationMethod `json:"method"`
	Percentile float64                `json:"percentile,omitempty"`
}

func (c Candidate) String() string {
	if c.Method == onnx.Percentile {
		return fmt.Sprintf("%s %g", c.Method, c.Percentile)
	}
	return string(c.Method)
}

// AutoCandidates are what Choose tries for `fn quantize --method auto`. No one method
// is best for every model: on the sample street (BenchmarkQuantizeConfigs, F1 against
// FP32) YOLOX-Nano gave entropy 0.919, min/max 0.912, percentile 99.999 0.875, and
// NanoDet-m percentile 99.999 0.974, min/max 0.949, entropy 0.911.
var AutoCandidates = []Candidate{
	{Method: onnx.Entropy},
	{Method: onnx.Percentile, Percentile: 99.999},
	{Method: onnx.Percentile, Percentile: 99.99},
	{Method: onnx.MinMax},
}

// Scored is how one candidate's INT8 detections agree with FP32's.
type Scored struct {
	Candidate
	Overall compare.ClassStats `json:"overall"`
}

// ScoreList says each candidate's F1, as "entropy 0.914, percentile 99.999 0.969, ...".
func ScoreList(scores []Scored) string {
	s := make([]string, len(scores))
	for i, sc := range scores {
		s[i] = fmt.Sprintf("%s %.3f", sc.Candidate, sc.Overall.F1)
	}
	return strings.Join(s, ", ")
}

// Choose writes each candidate's INT8 model, scores its detections against the FP32
// model's on frames (which should not be the calibration's), and writes the function
// with the best F1 into dst (the first of equals, in cands' order). It returns every
// candidate's score, the best's index and its report. The calibration must keep
// histograms (opened with onnx.Percentile or onnx.Entropy) for the candidates that need
// them.
func (c *Calibration) Choose(dst string, frames [][]byte, cands []Candidate, opts Options) ([]Scored, int, *onnx.QuantizeReport, error) {
	if len(cands) == 0 || len(frames) == 0 {
		return nil, 0, nil, fmt.Errorf("choose: %d candidates, %d frames to score them on", len(cands), len(frames))
	}
	fp32, err := Open(c.dir, c.spec, opts)
	if err != nil {
		return nil, 0, nil, err
	}
	prim, err := detectAll(fp32, frames)
	fp32.Close()
	if err != nil {
		return nil, 0, nil, err
	}
	scores := make([]Scored, len(cands))
	best := 0
	for i, cand := range cands {
		if _, err := c.WriteAs(dst, cand); err != nil {
			return nil, 0, nil, fmt.Errorf("%s: %w", cand, err)
		}
		fn, err := Open(dst, c.spec, opts)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("%s: %w", cand, err)
		}
		got, err := detectAll(fn, frames)
		fn.Close()
		if err != nil {
			return nil, 0, nil, fmt.Errorf("%s: %w", cand, err)
		}
		scores[i] = Scored{Candidate: cand, Overall: compare.Compare(prim, got, compare.DefaultIoU).Overall}
		if scores[i].Overall.F1 > scores[best].Overall.F1 {
			best = i
		}
	}
	rep, err := c.WriteAs(dst, cands[best])
	return scores, best, rep, err
}

// detectAll runs frames through fn in batches of the spec's size and returns the
// detections of each frame that gave a result, numbered by its index in frames.
func detectAll(fn *Function, frames [][]byte) ([]compare.Frame, error) {
	var out []compare.Frame
	n := max(1, fn.Spec.Batch.Max)
	for i := 0; i < len(frames); i += n {
		rs, _, err := fn.Run(frames[i:min(i+n, len(frames))])
		if err != nil {
			return nil, err
		}
		for j, r := range rs {
			if r.Err == nil {
				out = append(out, compare.FromResult("", uint64(i+j), r))
			}
		}
	}
	return out, nil
}

// Close frees the calibration session.
func (c *Calibration) Close() error { return c.cal.Close() }
