package onnx_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/internal/assets"
)

// dynamicExample writes the dynamic-batch export of the example model beside a copy of
// the example spec naming it, and returns the spec and the directory.
func dynamicExample(t *testing.T) (*functions.Spec, string) {
	t.Helper()
	fixed, err := assets.Model("yolox_nano.onnx")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fixed)
	if err != nil {
		t.Fatal(err)
	}
	d, err := onnx.MakeBatchDynamic(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := onnx.MakeBatchDynamic(d)
	if err != nil || !bytes.Equal(again, d) {
		t.Fatalf("MakeBatchDynamic is not idempotent: err %v, %d bytes then %d", err, len(d), len(again))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dynamic.onnx"), d, 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := functions.LoadSpec("../examples/yolox-nano")
	if err != nil {
		t.Fatal(err)
	}
	spec.Model = "dynamic.onnx"
	return spec, dir
}

// The dynamic-batch export runs 4 frames in one run, and each frame's output equals the
// fixed model's on that frame alone, within 1e-4.
func TestDynamicBatchMatchesFixed(t *testing.T) {
	dspec, ddir := dynamicExample(t)
	ins, outs, err := onnx.ModelTensors(filepath.Join(ddir, dspec.Model))
	if err != nil {
		t.Fatal(err)
	}
	if ins[0].Shape[0] >= 0 || outs[0].Shape[0] >= 0 || !slices.Equal(ins[0].Shape[1:], []int64{3, 416, 416}) {
		t.Fatalf("dynamic model: inputs %v, outputs %v; want a symbolic batch axis", ins, outs)
	}
	dyn, err := onnx.Open(ddir, dspec, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer dyn.Close()
	fspec, err := functions.LoadSpec("../examples/yolox-nano")
	if err != nil {
		t.Fatal(err)
	}
	fixed, err := onnx.Open("../examples/yolox-nano", fspec, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.Close()
	if !dyn.DynamicBatch || fixed.DynamicBatch {
		t.Fatalf("DynamicBatch: dynamic model %v, fixed model %v", dyn.DynamicBatch, fixed.DynamicBatch)
	}

	// Four different frames: pixel noise of different brightness, so every frame's
	// output differs and a mixed-up batch shows.
	const n = 4
	per := onnx.FrameLen(fspec.Input)
	r := rand.New(rand.NewPCG(1, 2))
	input := make([]float32, n*per)
	for i := range input {
		input[i] = float32(r.IntN(256)) * float32(1+i/per) / n
	}
	batch, err := dyn.Infer(input, n)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(batch[0].Shape, []int64{3549, 85}) || len(batch[0].Data) != n*3549*85 {
		t.Fatalf("batch output: shape %v per frame, %d values; want [3549 85] × %d", batch[0].Shape, len(batch[0].Data), n)
	}
	for k := range n {
		one, err := fixed.Infer(input[k*per:(k+1)*per], 1)
		if err != nil {
			t.Fatal(err)
		}
		want, got := one[0].Frame(0).Data, batch[0].Frame(k).Data
		worst := 0.0
		for i := range want {
			worst = max(worst, math.Abs(float64(want[i]-got[i])))
		}
		if worst > 1e-4 {
			t.Errorf("frame %d: the dynamic model's output differs from the fixed one's by up to %g", k, worst)
		}
		if k > 0 && slices.Equal(got, batch[0].Frame(0).Data) {
			t.Errorf("frame %d: the same output as frame 0", k)
		}
	}
}

func TestMakeBatchDynamicRefusesWhatItCannotEdit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		model []byte
		want  string
	}{
		{"empty", nil, "no graph"},
		{"not protobuf", []byte("not a model at all"), "model:"},
		{"graph of garbage", []byte{7<<3 | 2, 3, 0xff, 0xff, 0xff}, "graph:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := onnx.MakeBatchDynamic(tc.model)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// MakeBatchDynamic reads files from outside; whatever it is given, it returns an error
// or a model, and never panics.
func FuzzMakeBatchDynamic(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{7<<3 | 2, 2, 1<<3 | 2, 0})
	f.Add([]byte{7<<3 | 2, 6, 11<<3 | 2, 4, 2<<3 | 2, 2, 1<<3 | 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = onnx.MakeBatchDynamic(b)
	})
}
