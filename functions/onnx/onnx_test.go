package onnx_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/internal/assets"
)

func TestSpecModelMismatchNamesBothSides(t *testing.T) {
	dir := t.TempDir()
	model, err := assets.Model("yolox_nano.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(model, filepath.Join(dir, "yolox_nano.onnx")); err != nil {
		t.Fatal(err)
	}
	spec, err := functions.ParseSpec(strings.NewReader(`
name: wrong
model: yolox_nano.onnx
input: {tensor: images, width: 640, height: 640}
output: {decoder: yolox, tensors: [output]}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = onnx.Open(dir, spec, onnx.Options{})
	if err == nil || !strings.Contains(err.Error(), "[1 3 416 416]") || !strings.Contains(err.Error(), "640x640") {
		t.Fatalf("err = %v; want it to show the model's [1 3 416 416] and the spec's 640x640", err)
	}

	spec.Input.Width, spec.Input.Height = 416, 416
	spec.Output.Tensors = []string{"boxes"}
	_, err = onnx.Open(dir, spec, onnx.Options{})
	if err == nil || !strings.Contains(err.Error(), `"boxes"`) || !strings.Contains(err.Error(), "output[1 3549 85]") {
		t.Fatalf("err = %v; want it to name the missing output and the model's outputs", err)
	}
}

func TestNotAModel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(p, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := onnx.ModelTensors(p); err == nil || !strings.Contains(err.Error(), "as an ONNX model") {
		t.Fatalf("err = %v", err)
	}
}

// cuda:0 with an ONNX Runtime that has no CUDA provider (setup's CPU build) fails with
// ErrDeviceUnavailable naming the provider library; a malformed device and CUDA options
// on the CPU are bad input.
func TestOpenRefusesDevicesItCannotUse(t *testing.T) {
	dir := "../examples/yolox-nano"
	spec, err := functions.LoadSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := assets.ORTLibrary()
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := onnx.ProbeCUDA(lib); r.Provider != "" {
		t.Fatalf("%s has a CUDA provider beside it (%s); this test wants setup's CPU build", lib, r.Provider)
	}
	for _, tc := range []struct {
		name        string
		opts        onnx.Options
		unavailable bool
		want        string
	}{
		{"no provider", onnx.Options{Device: "cuda:0"}, true, "has no CUDA provider (libonnxruntime_providers_cuda.so is not beside it)"},
		{"not a device", onnx.Options{Device: "gpu"}, false, `device "gpu": want cpu or cuda:N`},
		{"bad strategy", onnx.Options{Device: "cuda:0", ArenaExtendStrategy: "fast"}, false, `arena extend strategy "fast"`},
		{"gpu options on cpu", onnx.Options{GPUMemLimit: 1 << 30}, false, "options of cuda:N devices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := onnx.Open(dir, spec, tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) || errors.Is(err, onnx.ErrDeviceUnavailable) != tc.unavailable {
				t.Fatalf("err = %v; want %q, ErrDeviceUnavailable %v", err, tc.want, tc.unavailable)
			}
		})
	}
}
