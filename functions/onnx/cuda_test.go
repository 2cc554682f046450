package onnx

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseCUDADevice(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"cuda:0", 0, true}, {"cuda:7", 7, true}, {"cuda:", 0, false}, {"cuda:-1", 0, false},
		{"cuda:01", 0, false}, {"gpu:0", 0, false}, {"cuda0", 0, false}, {"cuda:1x", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			n, err := ParseCUDADevice(tc.in)
			if (err == nil) != tc.ok || n != tc.want {
				t.Fatalf("ParseCUDADevice(%q) = %d, %v; want %d, ok %v", tc.in, n, err, tc.want, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "want cpu or cuda:N") {
				t.Fatalf("err = %v; want it to say what is accepted", err)
			}
		})
	}
}

// cuda:7 on a machine with one GPU says how many there are; no GPU at all says so.
func TestCheckGPUIndex(t *testing.T) {
	for _, tc := range []struct {
		name   string
		device string
		idx    int
		gpus   int
		want   string // "" for no error
	}{
		{"present", "cuda:0", 0, 1, ""},
		{"second of two", "cuda:1", 1, 2, ""},
		{"seventh of one", "cuda:7", 7, 1, "device cuda:7 does not exist: this machine has 1 GPU (cuda:0)"},
		{"third of two", "cuda:2", 2, 2, "this machine has 2 GPUs (cuda:0 … cuda:1)"},
		{"none", "cuda:0", 0, 0, "no NVIDIA GPU is visible here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkGPUIndex(tc.device, tc.idx, tc.gpus)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrDeviceUnavailable) {
				t.Fatalf("err = %v; want ErrDeviceUnavailable saying %q", err, tc.want)
			}
		})
	}
}

func TestCUDASettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want map[string]string
		err  string
	}{
		{"defaults", Options{}, map[string]string{"device_id": "3"}, ""},
		{"limit and strategy", Options{GPUMemLimit: 2 << 30, ArenaExtendStrategy: "kSameAsRequested"},
			map[string]string{"device_id": "3", "gpu_mem_limit": "2147483648", "arena_extend_strategy": "kSameAsRequested"}, ""},
		{"negative limit", Options{GPUMemLimit: -1}, nil, "GPU memory limit -1 bytes"},
		{"unknown strategy", Options{ArenaExtendStrategy: "grow"}, nil, `arena extend strategy "grow": want kNextPowerOfTwo or kSameAsRequested`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cudaSettings(3, tc.opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("cudaSettings = %v, %v; want %v", got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("cudaSettings = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// fakeProvider builds, with the C compiler cgo uses, a shared object named like the CUDA
// provider that needs libcublasLt.so.13 (a stub built beside it, in dir/stub), next to
// an ONNX Runtime library file in dir/ort. It returns the provider's path and the stub's
// directory.
func fakeProvider(t *testing.T) (provider, stubDir string) {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	dir := t.TempDir()
	stubDir, ortDir := filepath.Join(dir, "stub"), filepath.Join(dir, "ort")
	for _, d := range []string{stubDir, ortDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(dir, "x.c")
	if err := os.WriteFile(src, []byte("int x(void) { return 1; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stub := filepath.Join(stubDir, "libcublasLt.so.13")
	provider = filepath.Join(ortDir, cudaProviderLib)
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-o", stub, "-Wl,-soname,libcublasLt.so.13", src},
		{"-shared", "-fPIC", "-o", provider, src, "-Wl,--no-as-needed", stub},
	} {
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", cc, args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(ortDir, "libonnxruntime.so.1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return provider, stubDir
}

// A library the provider needs is found on LD_LIBRARY_PATH, and named when it is not.
func TestMissingLibraries(t *testing.T) {
	provider, stubDir := fakeProvider(t)
	t.Setenv("LD_LIBRARY_PATH", "")
	missing, err := MissingLibraries(provider)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(missing, []string{"libcublasLt.so.13"}) {
		t.Fatalf("missing = %v, want [libcublasLt.so.13] (libc is found)", missing)
	}
	t.Setenv("LD_LIBRARY_PATH", "/nonexistent:"+stubDir)
	if missing, err := MissingLibraries(provider); err != nil || len(missing) != 0 {
		t.Fatalf("with the stub on LD_LIBRARY_PATH: missing = %v, %v", missing, err)
	}
	if _, err := MissingLibraries(filepath.Join(stubDir, "..", "x.c")); err == nil || !strings.Contains(err.Error(), "as an ELF shared object") {
		t.Fatalf("a C file: err = %v", err)
	}
}

// When ONNX Runtime fails to load the provider, the error names what is missing and
// wraps ErrDeviceUnavailable.
func TestCUDAFailedNamesTheMissingLibrary(t *testing.T) {
	provider, _ := fakeProvider(t)
	t.Setenv("LD_LIBRARY_PATH", "")
	t.Setenv("DIPLIP_ORT_LIB", filepath.Join(filepath.Dir(provider), "libonnxruntime.so.1"))
	err := cudaFailed("cuda:0", errors.New("onnx runtime said no"))
	for _, want := range []string{"device cuda:0", "needs libcublasLt.so.13", "onnx runtime said no", provider} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v; want it to contain %q", err, want)
		}
	}
	if !errors.Is(err, ErrDeviceUnavailable) {
		t.Fatalf("err = %v; want ErrDeviceUnavailable", err)
	}
	r, err := ProbeCUDA(filepath.Join(filepath.Dir(provider), "libonnxruntime.so.1"))
	if err != nil || r.Provider != provider || !slices.Contains(r.Missing, "libcublasLt.so.13") {
		t.Fatalf("ProbeCUDA = %+v, %v; want the provider and libcublasLt.so.13 missing", r, err)
	}
}
