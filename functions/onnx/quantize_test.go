package onnx

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/assets"
)

// gaussian returns n samples of N(0, 1) followed by outliers at ±50.
func gaussian(n, outliers int) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, 0, n+outliers)
	for range n {
		v = append(v, float32(r.NormFloat64()))
	}
	for i := range outliers {
		v = append(v, float32(50*(1-2*(i%2))))
	}
	return v
}

func TestPercentileRange(t *testing.T) {
	s := newRangeStats(true)
	v := gaussian(1_000_000, 10)
	s.add(v[:500_000]) // two frames: the histogram is kept across them
	s.add(v[500_000:])
	if lo, hi := s.minMaxRange(); lo != -50 || hi != 50 {
		t.Fatalf("min/max %g %g, want -50 50", lo, hi)
	}
	// The 99.99th percentile of N(0,1) is 3.719; a bin is 100/4096 wide.
	lo, hi := s.percentileRange(99.99)
	if math.Abs(hi-3.719) > 0.1 || math.Abs(lo+3.719) > 0.1 {
		t.Fatalf("percentile 99.99: [%g, %g], want about ±3.72", lo, hi)
	}
	if lo, hi := s.percentileRange(100); lo != -50 || hi != 50 {
		t.Fatalf("percentile 100: [%g, %g], want the extremes", lo, hi)
	}
}

// A histogram that starts narrow and widens (a later frame goes beyond it) keeps every
// count, in bins whose edges are the old ones', and finds the same percentile as one that
// saw the wide frame first, within a bin.
func TestHistogramWidens(t *testing.T) {
	narrow, wide := newRangeStats(true), newRangeStats(true)
	v := gaussian(200_000, 0)
	small := []float32{0.5, -0.25, 0}
	big := append([]float32{40}, v...)
	narrow.add(small)
	narrow.add(big)
	wide.add(big)
	wide.add(small)
	var n uint64
	for _, c := range narrow.hist {
		n += c
	}
	if n != uint64(len(small)+len(big)) {
		t.Fatalf("%d counts after widening, want %d", n, len(small)+len(big))
	}
	_, h1 := narrow.percentileRange(99.9)
	_, h2 := wide.percentileRange(99.9)
	if math.Abs(h1-h2) > 2*2*narrow.absMax/histBins || math.Abs(h1-3.09) > 0.1 {
		t.Fatalf("99.9th percentile %g after widening, %g without; want both about 3.09", h1, h2)
	}
	// Zeros seen before any other value are counted at 0.
	z := newRangeStats(true)
	z.add(make([]float32, 10))
	z.add([]float32{1})
	if lo, _ := z.percentileRange(60); lo > 0 {
		t.Fatalf("zeros lost: lower percentile %g", lo)
	}
}

// The entropy threshold clips a Gaussian's rare outliers: far below them, above the bulk.
func TestEntropyRange(t *testing.T) {
	s := newRangeStats(true)
	s.add(gaussian(1_000_000, 10))
	lo, hi := s.entropyRange()
	if hi < 2.5 || hi > 12 || lo != -hi {
		t.Fatalf("entropy range [%g, %g], want a symmetric threshold between 2.5 and 12", lo, hi)
	}
	// Without outliers, a uniform distribution keeps (nearly) its whole range.
	u := newRangeStats(true)
	r := rand.New(rand.NewPCG(3, 4))
	vals := make([]float32, 500_000)
	for i := range vals {
		vals[i] = float32(r.Float64()*2 - 1)
	}
	u.add(vals)
	if _, hi := u.entropyRange(); hi < 0.9 {
		t.Fatalf("uniform [-1, 1]: entropy threshold %g, want ≥ 0.9", hi)
	}
	// A distribution with nothing near 0 (a Sigmoid's output in [0.5, 1]) is not clipped
	// to a point below all its values.
	sg := newRangeStats(true)
	for i := range vals {
		vals[i] = float32(0.5 + r.Float64()/2)
	}
	sg.add(vals)
	if lo, hi := sg.entropyRange(); lo < 0.49 || hi < 0.98 {
		t.Fatalf("uniform [0.5, 1]: entropy range [%g, %g], want about [0.5, 1]", lo, hi)
	}
}

func TestActivationParams(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		scale  float32
		zp     uint8
	}{
		{-1, 3, 4.0 / 255, 64},
		{2, 5, 5.0 / 255, 0},     // widened to hold 0
		{-6, -1, 6.0 / 255, 255}, // likewise, from above
		{0, 255, 1, 0},           // pixels: exact
		{0, 0, 1, 0},             // nothing seen but zeros
	} {
		s, z := activationParams(c.lo, c.hi)
		if math.Abs(float64(s-c.scale)) > 1e-7 || z != c.zp {
			t.Errorf("[%g, %g]: scale %g zp %d, want %g %d", c.lo, c.hi, s, z, c.scale, c.zp)
		}
	}
}

func TestWeightAndBiasParams(t *testing.T) {
	w := []float32{0.5, -1.27, 0.01, 0, 0, 0, 2.54, 1, -2.54}
	scales, q := weightParams(w, 3)
	want := []int8{50, -127, 1, 0, 0, 0, 127, 50, -127}
	if math.Abs(float64(scales[0])-0.01) > 1e-7 || scales[1] != 1 || math.Abs(float64(scales[2])-0.02) > 1e-7 {
		t.Fatalf("scales %v, want [0.01 1 0.02]", scales)
	}
	for i := range want {
		if q[i] != want[i] {
			t.Fatalf("q %v, want %v", q, want)
		}
	}
	bs, bq := biasParams([]float32{1, -0.5, 3}, 0.5, scales)
	if math.Abs(float64(bs[0])-0.005) > 1e-8 || bq[0] != 200 || bq[1] != -1 || bq[2] != 300 {
		t.Fatalf("bias scales %v q %v, want [0.005 0.5 0.01] [200 -1 300]", bs, bq)
	}
}

// quantizeRandom calibrates YOLOX-Nano on two frames of noise: enough to check what the
// file holds (the accuracy test uses real frames).
func quantizeRandom(t *testing.T, opt QuantizeOptions) ([]byte, *QuantizeReport) {
	t.Helper()
	p, err := assets.Model("yolox_nano.onnx")
	if err != nil {
		t.Skip(err)
	}
	model, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCalibrator(model, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Quantize(); err == nil {
		t.Fatal("Quantize without frames: no error")
	}
	if err := c.Observe(make([]float32, 10)); err == nil || !strings.Contains(err.Error(), "519168") {
		t.Fatalf("a 10-value frame: %v, want an error naming the 519168 values expected", err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	in := make([]float32, 3*416*416)
	for range 2 {
		for i := range in {
			in[i] = float32(r.IntN(256))
		}
		if err := c.Observe(in); err != nil {
			t.Fatal(err)
		}
	}
	q, rep, err := c.Quantize()
	if err != nil {
		t.Fatal(err)
	}
	return q, rep
}

// The written model is QDQ at opset 13: every Conv reads int8 weights through a
// per-channel DequantizeLinear and no float Conv weight is left; it runs through the
// normal session path at batch 4 once MakeBatchDynamic has made its batch dynamic, each
// frame as it runs alone; and it cannot be quantized again.
func TestQuantizeWritesQDQ(t *testing.T) {
	q, rep := quantizeRandom(t, QuantizeOptions{})
	m, err := parseModel(q)
	if err != nil {
		t.Fatal(err)
	}
	if m.opset != 13 || rep.OpsetFrom != 11 || rep.OpsetTo != 13 {
		t.Fatalf("opset %d (report %d→%d), want 11→13", m.opset, rep.OpsetFrom, rep.OpsetTo)
	}
	ops := map[string]int{}
	for _, n := range m.nodes {
		ops[n.op]++
	}
	if ops["QuantizeLinear"] != rep.Tensors || ops["DequantizeLinear"] < rep.Tensors+113 || ops["Conv"] != 113 {
		t.Fatalf("ops %v, report %+v", ops, rep)
	}
	for _, n := range m.nodes {
		if n.op != "Conv" {
			continue
		}
		for _, in := range n.ins[:2] {
			if !strings.HasSuffix(in, "_dequantized") {
				t.Fatalf("Conv %s reads %q, not a DequantizeLinear output", n.name, in)
			}
		}
	}
	int8s := 0
	for _, it := range m.inits {
		if it.dtype == dtFloat && len(it.dims) == 4 {
			t.Errorf("float Conv weight %q left in the model", it.name)
		}
		if it.dtype == dtInt8 && len(it.dims) == 4 {
			int8s++
		}
	}
	if int8s != 113 {
		t.Fatalf("%d int8 Conv weights, want 113", int8s)
	}
	if _, err := NewCalibrator(q, QuantizeOptions{}); !errors.Is(err, ErrAlreadyQuantized) {
		t.Fatalf("quantizing again: %v, want ErrAlreadyQuantized", err)
	}

	// Batch 4 through Open, as the runner does, against each frame alone.
	dyn, err := MakeBatchDynamic(q)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"fixed.onnx": q, "dynamic.onnx": dyn} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := func(model string) *Session {
		spec, err := functions.LoadSpec("../examples/yolox-nano")
		if err != nil {
			t.Fatal(err)
		}
		spec.Model = model
		s, err := Open(dir, spec, Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	ds, fs := open("dynamic.onnx"), open("fixed.onnx")
	if !ds.DynamicBatch || fs.DynamicBatch {
		t.Fatalf("DynamicBatch: dynamic %v, fixed %v", ds.DynamicBatch, fs.DynamicBatch)
	}
	per := ds.FrameLen()
	in := make([]float32, 4*per)
	r := rand.New(rand.NewPCG(7, 8))
	for f := range 4 {
		for i := range per {
			in[f*per+i] = float32(r.IntN(64 * (f + 1)))
		}
	}
	batch, err := ds.Infer(in, 4)
	if err != nil {
		t.Fatal(err)
	}
	for f := range 4 {
		one, err := fs.Infer(in[f*per:(f+1)*per], 1)
		if err != nil {
			t.Fatal(err)
		}
		got, want := batch[0].Frame(f).Data, one[0].Data
		worst := 0.0
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
		}
		if worst > 1e-3 {
			t.Fatalf("frame %d of the batch differs from the frame alone by up to %g", f, worst)
		}
	}
}

// KeepHead leaves YOLOX's nine prediction convolutions (3 scales × reg, obj, cls) and
// what follows them in FP32; an unknown Keep name is an error naming it.
func TestQuantizeKeep(t *testing.T) {
	_, rep := quantizeRandom(t, QuantizeOptions{KeepHead: true})
	m, _ := func() (*qModel, error) {
		p, _ := assets.Model("yolox_nano.onnx")
		b, _ := os.ReadFile(p)
		return parseModel(b)
	}()
	ops := map[string]string{}
	for _, n := range m.nodes {
		ops[n.ident()] = n.op
	}
	convs := 0
	for _, k := range rep.KeptFP32 {
		if ops[k] == "Conv" {
			convs++
		}
	}
	if convs != 9 || rep.Quantized["Conv"] != 104 || len(rep.Tail) != 0 {
		t.Fatalf("KeepHead: %d Convs kept of %v, quantized %v, tail %v; want 9 kept, 104 quantized", convs, rep.KeptFP32, rep.Quantized, rep.Tail)
	}
	p, _ := assets.Model("yolox_nano.onnx")
	b, _ := os.ReadFile(p)
	if _, err := NewCalibrator(b, QuantizeOptions{Keep: []string{"Conv_no_such"}}); err == nil || !strings.Contains(err.Error(), "Conv_no_such") || !strings.Contains(err.Error(), "Conv_") {
		t.Fatalf("unknown keep: %v", err)
	}
}
