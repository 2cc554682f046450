package onnx

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Static INT8 quantization, in Go: a Calibrator runs the FP32 model through ONNX Runtime
// on preprocessed frames with the tensors to quantize exposed as outputs, keeps their
// ranges, and Quantize writes a copy of the model in ONNX's QDQ form, editing the
// protobuf directly (quantize_proto.go), as MakeBatchDynamic does:
//
//   - weights of Conv: int8, symmetric, per output channel (axis 0), in [-127, 127];
//     biases int32 with scale input scale × weight scale and zero point 0, which is what
//     ONNX Runtime needs to fuse the group into QLinearConv;
//   - activations: uint8, asymmetric, one scale and zero point per tensor, the range
//     widened to hold 0; one QuantizeLinear→DequantizeLinear pair per tensor, read by
//     every quantized consumer (and by every consumer of a quantized producer, so that
//     its output goes to the QuantizeLinear alone, as fusion requires); graph outputs
//     stay float;
//   - MaxPool, Resize, Reshape, Transpose, Slice and Flatten take their input's range,
//     so the pair around them can be dropped;
//   - the model's default-domain opset is raised to 13 when it is lower (see
//     quantOpset for why QDQ rather than QLinearConv at opset 10, and which ops that is
//     allowed for).
//
// Measured on YOLOX-Nano (20 calibration frames of vtest, 50 others, FP32 as reference;
// BenchmarkQuantizeConfigs): min/max F1 0.91, entropy 0.92 (it trades precision for
// recall); percentile clipping did worse (0.82 at 99.99, 0.88 at 99.999), and keeping
// the head FP32 or quantizing the tail changed nothing measurable. ONNX Runtime 1.32 fuses every group (113
// QLinearConv, 104 QLinearSigmoid and QLinearMul), but on this AVX-512 VNNI Xeon the INT8
// model costs as much CPU per frame as FP32: QLinearConv takes about half of FP32 Conv's
// time, and the SiLU activations, which FP32 runs as one fused QuickGelu kernel, cost that
// back as QLinearSigmoid + QLinearMul.

// CalibrationMethod names how activation ranges are chosen from what calibration saw.
type CalibrationMethod string

const (
	// MinMax takes each tensor's extremes over every calibration frame.
	MinMax CalibrationMethod = "minmax"
	// Percentile clips each tensor's range to QuantizeOptions.Percentile at the top and
	// 100 minus it at the bottom.
	Percentile CalibrationMethod = "percentile"
	// Entropy picks, TensorRT's way, the threshold on |x| whose clipped and quantized
	// distribution is closest (Kullback-Leibler) to the observed one.
	Entropy CalibrationMethod = "entropy"
)

// QuantizeOptions choose how Quantize calibrates and what it leaves in float.
type QuantizeOptions struct {
	// Method is how activation ranges are chosen; default MinMax.
	Method CalibrationMethod
	// Percentile for the Percentile method, in (50, 100]; default 99.99.
	Percentile float64
	// Keep names nodes (by node name or by the name of one of their outputs) left in
	// FP32. An unknown name is an error that names it.
	Keep []string
	// KeepHead leaves the head in FP32. The head is every node from which a graph
	// output is reachable without passing through a Conv after it: the last Conv of
	// each path to an output (YOLOX's reg, obj and cls prediction convolutions) and the
	// Sigmoid, Concat, Reshape and Transpose nodes after them.
	KeepHead bool
	// QuantizeTail also quantizes the tail: the head's nodes other than Conv (the
	// activations, concatenations and reshapes after the last convolutions). They are
	// left in FP32 by default, because one Concat there joins box coordinates with
	// scores in [0, 1], and a single 8-bit range for both leaves the scores a few
	// levels: on YOLOX-Nano that cost detections near the score threshold.
	QuantizeTail bool
	// Ops limits quantization to these op types (of those the quantizer handles: Conv,
	// Sigmoid, LeakyRelu, Mul, Add, Concat, MaxPool, Resize, Reshape, Transpose, Slice,
	// Flatten); nodes of other types are left FP32 and counted as unsupported. Default:
	// all of them.
	Ops []string
	// Threads is the calibration session's intra-op thread count; default 1.
	Threads int
}

// ErrAlreadyQuantized is returned for a model that already has quantized operators.
var ErrAlreadyQuantized = errors.New("onnx: model is already quantized")

// QuantizeReport says what Quantize did.
type QuantizeReport struct {
	Method             string
	Frames             int
	OpsetFrom, OpsetTo int64
	// Quantized counts nodes by op type whose inputs (and, where a quantized node reads
	// them, outputs) are int8/uint8.
	Quantized map[string]int
	// KeptFP32 names the nodes left in FP32 by Keep or KeepHead.
	KeptFP32 []string
	// Tail names the head's non-Conv nodes left in FP32 (see QuantizeOptions.QuantizeTail).
	Tail []string
	// Unsupported counts by op type the nodes left in FP32 because the quantizer does
	// not handle them (or not with those inputs: a constant operand, a non-float tensor).
	Unsupported map[string]int
	// Tensors is how many activation tensors got a QuantizeLinear/DequantizeLinear pair.
	Tensors int
	// Bytes is the size of the written model.
	Bytes int
}

// String is a few human lines.
func (r *QuantizeReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "calibration: %s on %d frames\n", r.Method, r.Frames)
	if r.OpsetFrom != r.OpsetTo {
		fmt.Fprintf(&b, "opset: %d raised to %d (per-channel weights)\n", r.OpsetFrom, r.OpsetTo)
	} else {
		fmt.Fprintf(&b, "opset: %d\n", r.OpsetTo)
	}
	fmt.Fprintf(&b, "quantized: %s (%d activation tensors)\n", countList(r.Quantized), r.Tensors)
	if len(r.KeptFP32) > 0 {
		fmt.Fprintf(&b, "kept FP32: %d nodes (%s)\n", len(r.KeptFP32), shortList(r.KeptFP32, 6))
	}
	if len(r.Tail) > 0 {
		fmt.Fprintf(&b, "head tail FP32: %d nodes (%s)\n", len(r.Tail), shortList(r.Tail, 6))
	}
	if len(r.Unsupported) > 0 {
		fmt.Fprintf(&b, "not quantized (unsupported): %s\n", countList(r.Unsupported))
	}
	fmt.Fprintf(&b, "model: %d bytes\n", r.Bytes)
	return b.String()
}

func countList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	sort.SliceStable(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func shortList(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", … %d more", len(s)-n)
}

// Calibrator runs the FP32 model with the intermediate tensors it will quantize exposed
// as outputs, and keeps each one's range (and, for Percentile and Entropy, a histogram
// that widens as it goes, so no frame is kept).
type Calibrator struct {
	opt     QuantizeOptions
	m       *qModel
	plan    *qPlan
	opsetTo int64

	session    *ort.DynamicAdvancedSession
	input      qValue
	inputShape ort.Shape
	inputLen   int
	names      []string // the session's outputs
	stats      map[string]*rangeStats
	frames     int
}

// NewCalibrator parses model, plans what to quantize and opens the calibration session.
// It refuses a model that is already quantized (ErrAlreadyQuantized), one that is not
// ONNX, one with other than a single float input, and one whose opset cannot be raised
// to 13 (see quantOpset).
func NewCalibrator(model []byte, opt QuantizeOptions) (*Calibrator, error) {
	switch opt.Method {
	case "":
		opt.Method = MinMax
	case MinMax, Percentile, Entropy:
	default:
		return nil, fmt.Errorf("calibration method %q: want %s, %s or %s", opt.Method, MinMax, Percentile, Entropy)
	}
	if opt.Method == Percentile {
		if opt.Percentile == 0 {
			opt.Percentile = 99.99
		}
		if opt.Percentile <= 50 || opt.Percentile > 100 {
			return nil, fmt.Errorf("percentile %g: want a value in (50, 100]", opt.Percentile)
		}
	}
	if opt.Threads <= 0 {
		opt.Threads = 1
	}
	m, err := parseModel(model)
	if err != nil {
		return nil, err
	}
	for _, n := range m.nodes {
		if quantizedOp(n.op) {
			return nil, fmt.Errorf("%w: it has a %s node (%s)", ErrAlreadyQuantized, n.op, n.name)
		}
	}
	opsetTo, err := checkOpset(m)
	if err != nil {
		return nil, err
	}
	if err := raiseNodes(m); err != nil {
		return nil, err
	}
	if len(m.inputs) != 1 || m.inputs[0].dtype != dtFloat {
		var desc []string
		for _, v := range m.inputs {
			desc = append(desc, fmt.Sprintf("%s (type %d)", v.name, v.dtype))
		}
		return nil, fmt.Errorf("model inputs %v: the quantizer calibrates models with one float input", desc)
	}
	c := &Calibrator{opt: opt, m: m, opsetTo: opsetTo, input: m.inputs[0], stats: map[string]*rangeStats{}}
	c.inputShape = ort.NewShape(c.input.dims...)
	c.inputLen = 1
	for i, d := range c.input.dims {
		if d < 0 && i == 0 {
			d = 1 // a symbolic batch: calibrate at 1
		}
		if d <= 0 {
			return nil, fmt.Errorf("model input %q has shape %v; the quantizer needs static dimensions after the batch", c.input.name, c.input.dims)
		}
		c.inputShape[i] = d
		c.inputLen *= int(d)
	}
	if c.plan, err = planQuantization(m, opt); err != nil {
		return nil, err
	}
	withHist := opt.Method != MinMax
	for _, t := range c.plan.calib {
		c.stats[t] = newRangeStats(withHist)
		if t != c.input.name {
			c.names = append(c.names, t)
		}
	}
	if err := c.open(); err != nil {
		return nil, err
	}
	return c, nil
}

func quantizedOp(op string) bool {
	switch op {
	case "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat":
		return true
	}
	return strings.HasPrefix(op, "QLinear")
}

// open creates the calibration session: the model with every tensor to calibrate added
// as a graph output.
func (c *Calibrator) open() error {
	if err := Init(); err != nil {
		return err
	}
	if len(c.names) == 0 {
		return nil
	}
	outs := map[string]bool{}
	for _, v := range c.m.outputs {
		outs[v.name] = true
	}
	gfs := slices.Clone(c.m.gfs)
	for _, t := range c.names {
		if !outs[t] {
			gfs = append(gfs, bytesField(graphOutput, floatOutput(t)))
		}
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return fmt.Errorf("onnx session options: %w", err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(c.opt.Threads); err != nil {
		return fmt.Errorf("onnx intra-op threads: %w", err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return fmt.Errorf("onnx inter-op threads: %w", err)
	}
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return fmt.Errorf("onnx session config: %w", err)
	}
	// At the opset the quantized model will have: raiseNodes wrote its nodes in that form.
	c.session, err = ort.NewDynamicAdvancedSessionWithONNXData(c.m.encode(gfs, c.opsetTo, irFor(c.opsetTo)), []string{c.input.name}, c.names, so)
	if err != nil {
		return fmt.Errorf("calibration session: %w", err)
	}
	return nil
}

// Observe runs one preprocessed frame: the model's single float input at batch 1, as
// many values as the product of its dimensions.
func (c *Calibrator) Observe(input []float32) error {
	if len(input) != c.inputLen {
		return fmt.Errorf("calibration frame: %d values, want %d (input %q, shape %v)", len(input), c.inputLen, c.input.name, c.inputShape)
	}
	if s, ok := c.stats[c.input.name]; ok {
		s.add(input)
	}
	if c.session != nil {
		t, err := ort.NewTensor(c.inputShape, input)
		if err != nil {
			return fmt.Errorf("calibration input tensor: %w", err)
		}
		defer t.Destroy()
		values := make([]ort.Value, len(c.names))
		if err := c.session.Run([]ort.Value{t}, values); err != nil {
			return fmt.Errorf("calibration run: %w", err)
		}
		for i, v := range values {
			if ft, ok := v.(*ort.Tensor[float32]); ok {
				c.stats[c.names[i]].add(ft.GetData())
			}
			v.Destroy()
		}
	}
	c.frames++
	return nil
}

// Frames is how many frames Observe has run.
func (c *Calibrator) Frames() int { return c.frames }

// Close frees the calibration session.
func (c *Calibrator) Close() error {
	if c.session == nil {
		return nil
	}
	err := c.session.Destroy()
	c.session = nil
	return err
}

// Quantize writes the quantized model from the ranges observed so far, chosen by the
// options' method.
func (c *Calibrator) Quantize() ([]byte, *QuantizeReport, error) {
	return c.QuantizeAs(c.opt.Method, c.opt.Percentile)
}

// QuantizeAs writes the quantized model with ranges chosen by method (and percentile, for
// Percentile) from the ranges observed so far. Any method can be written from a
// calibrator opened with Percentile or Entropy, which keep each tensor's histogram; one
// opened with MinMax writes only MinMax.
func (c *Calibrator) QuantizeAs(method CalibrationMethod, percentile float64) ([]byte, *QuantizeReport, error) {
	switch method {
	case MinMax:
	case Percentile, Entropy:
		if c.opt.Method == MinMax {
			return nil, nil, fmt.Errorf("quantize: %s ranges need histograms, which a %s calibration does not keep", method, MinMax)
		}
	default:
		return nil, nil, fmt.Errorf("calibration method %q: want %s, %s or %s", method, MinMax, Percentile, Entropy)
	}
	if method == Percentile && (percentile <= 50 || percentile > 100) {
		return nil, nil, fmt.Errorf("percentile %g: want a value in (50, 100]", percentile)
	}
	if c.frames == 0 {
		return nil, nil, errors.New("quantize: no calibration frames observed")
	}
	ranges := map[string][2]float64{}
	for t, s := range c.stats {
		if !s.seen {
			return nil, nil, fmt.Errorf("quantize: tensor %q was never observed", t)
		}
		var lo, hi float64
		switch method {
		case Percentile:
			lo, hi = s.percentileRange(percentile)
		case Entropy:
			lo, hi = s.entropyRange()
		default:
			lo, hi = s.minMaxRange()
		}
		ranges[t] = [2]float64{lo, hi}
	}
	out, rep, err := c.plan.rewrite(c.m, ranges, c.opsetTo)
	if err != nil {
		return nil, nil, err
	}
	rep.Method = string(method)
	if method == Percentile {
		rep.Method = fmt.Sprintf("%s %g", method, percentile)
	}
	rep.Frames = c.frames
	rep.OpsetFrom = c.m.opset
	return out, rep, nil
}
