package onnx

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProbedDevices(t *testing.T) {
	for _, tc := range []struct {
		name       string
		provider   bool
		gpus       int
		visible    string
		visibleSet bool
		want       []string
	}{
		{name: "no provider", gpus: 2, want: []string{"cpu"}},
		{name: "no gpu", provider: true, want: []string{"cpu"}},
		{name: "one gpu", provider: true, gpus: 1, want: []string{"cpu", "cuda:0"}},
		{name: "two gpus", provider: true, gpus: 2, want: []string{"cpu", "cuda:0", "cuda:1"}},
		{name: "visible one of two", provider: true, gpus: 2, visible: "1", visibleSet: true, want: []string{"cpu", "cuda:0"}},
		{name: "visible both", provider: true, gpus: 2, visible: "1,0", visibleSet: true, want: []string{"cpu", "cuda:0", "cuda:1"}},
		{name: "visible by uuid", provider: true, gpus: 2, visible: "GPU-8c3e", visibleSet: true, want: []string{"cpu", "cuda:0"}},
		{name: "hidden by empty", provider: true, gpus: 2, visible: "", visibleSet: true, want: []string{"cpu"}},
		{name: "hidden by -1", provider: true, gpus: 2, visible: "-1", visibleSet: true, want: []string{"cpu"}},
		{name: "stops at an invalid entry", provider: true, gpus: 2, visible: "0,7,1", visibleSet: true, want: []string{"cpu", "cuda:0"}},
		{name: "more listed than present", provider: true, gpus: 1, visible: "0,GPU-a,GPU-b", visibleSet: true, want: []string{"cpu", "cuda:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := probedDevices(tc.provider, tc.gpus, tc.visible, tc.visibleSet); !slices.Equal(got, tc.want) {
				t.Fatalf("probedDevices(%v, %d, %q, %v) = %v, want %v", tc.provider, tc.gpus, tc.visible, tc.visibleSet, got, tc.want)
			}
		})
	}
}

func TestCountSMIGPUs(t *testing.T) {
	out := `GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5b1e7c1a-0000-0000-0000-000000000000)
  MIG 3g.40gb     Device  0: (UUID: MIG-1f2e3d4c-0000-0000-0000-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-6c2f8d2b-0000-0000-0000-000000000000)
`
	if n := countSMIGPUs(out); n != 2 {
		t.Fatalf("countSMIGPUs = %d, want 2", n)
	}
	if n := countSMIGPUs("No devices were found\n"); n != 0 {
		t.Fatalf("countSMIGPUs(no devices) = %d, want 0", n)
	}
}

func TestHasCUDAProvider(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "ort", "libonnxruntime.so.1")
	link := filepath.Join(dir, "lib", "libonnxruntime.so.1")
	for _, d := range []string{filepath.Dir(lib), filepath.Dir(link)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(lib, link); err != nil {
		t.Fatal(err)
	}
	if hasCUDAProvider(lib) || hasCUDAProvider(link) {
		t.Fatal("a CUDA provider was found where there is none")
	}
	if err := os.WriteFile(filepath.Join(dir, "ort", cudaProviderLib), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !hasCUDAProvider(lib) || !hasCUDAProvider(link) {
		t.Fatal("the CUDA provider next to the library (or the file a link names) was not found")
	}
}

// ProbeDevices must decide without loading ONNX Runtime: the process must not have the
// library mapped afterwards.
func TestProbeDevicesDoesNotLoadTheRuntime(t *testing.T) {
	ortMapped := func() bool {
		maps, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Skip("no /proc/self/maps:", err)
		}
		return strings.Contains(string(maps), "libonnxruntime")
	}
	if ortMapped() {
		t.Skip("ONNX Runtime was loaded by an earlier test in this process")
	}
	devs := ProbeDevices()
	if len(devs) == 0 || devs[0] != "cpu" {
		t.Fatalf("ProbeDevices = %v, want cpu first", devs)
	}
	if ortMapped() {
		t.Fatal("ProbeDevices loaded ONNX Runtime")
	}
}
