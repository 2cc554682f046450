package onnx

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/assets"
)

// ErrDeviceUnavailable is wrapped by every error that says a device cannot be used here:
// the ONNX Runtime build has no CUDA provider, a library the provider needs is missing,
// or there is no such GPU. It is not a fault of the model or of the frames, so a caller
// whose deployment allows any device may fall back to the CPU; one that asked for this
// device must fail with the error's reason rather than retry.
var ErrDeviceUnavailable = errors.New("device unavailable")

// cudaOpens are the libraries the CUDA provider opens at run time rather than links
// against (cuDNN 9 for onnxruntime-gpu 1.31): MissingLibraries reads the linked ones from
// the file itself (for 1.31: libcublasLt.so.13, libcublas.so.13, libcurand.so.10,
// libcudart.so.13, libcuda.so.1).
var cudaOpens = []string{"libcudnn.so.9"}

func modelPath(dir string, spec *functions.Spec) string { return filepath.Join(dir, spec.Model) }

// ParseCUDADevice reads "cuda:N" and returns N.
func ParseCUDADevice(device string) (int, error) {
	idx, ok := strings.CutPrefix(device, "cuda:")
	n, err := strconv.Atoi(idx)
	if !ok || err != nil || n < 0 || idx != strconv.Itoa(n) {
		return 0, fmt.Errorf("device %q: want cpu or cuda:N (N = 0, 1, …)", device)
	}
	return n, nil
}

// appendCUDA adds the CUDA provider for device to so, with opts' CUDA settings, after
// checking what can be checked from files: that the provider library is installed and
// that the GPU exists.
func appendCUDA(so *ort.SessionOptions, device string, opts Options) error {
	idx, err := ParseCUDADevice(device)
	if err != nil {
		return err
	}
	settings, err := cudaSettings(idx, opts)
	if err != nil {
		return fmt.Errorf("device %s: %w", device, err)
	}
	lib, err := assets.ORTLibrary()
	if err != nil {
		return err
	}
	if _, ok := cudaProviderPath(lib); !ok {
		return fmt.Errorf("%w: device %s: the ONNX Runtime library %s has no CUDA provider (%s is not beside it); "+
			"use the onnxruntime-gpu build's libraries (scripts/setup.sh gpu-libs, docs/gpu-check.md) or run on cpu",
			ErrDeviceUnavailable, device, lib, cudaProviderLib)
	}
	visible, set := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	if err := checkGPUIndex(device, idx, len(probedDevices(true, nvidiaGPUs(), visible, set))-1); err != nil {
		return err
	}
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return cudaFailed(device, err)
	}
	defer co.Destroy()
	if err := co.Update(settings); err != nil {
		return fmt.Errorf("device %s: CUDA provider options %v: %w", device, settings, err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return cudaFailed(device, err)
	}
	return nil
}

// cudaSettings are the CUDA provider's options for GPU idx as opts asks.
func cudaSettings(idx int, opts Options) (map[string]string, error) {
	m := map[string]string{"device_id": strconv.Itoa(idx)}
	if opts.GPUMemLimit < 0 {
		return nil, fmt.Errorf("GPU memory limit %d bytes: want 0 (no limit) or more", opts.GPUMemLimit)
	}
	if opts.GPUMemLimit > 0 {
		m["gpu_mem_limit"] = strconv.FormatInt(opts.GPUMemLimit, 10)
	}
	switch opts.ArenaExtendStrategy {
	case "":
	case "kNextPowerOfTwo", "kSameAsRequested":
		m["arena_extend_strategy"] = opts.ArenaExtendStrategy
	default:
		return nil, fmt.Errorf("arena extend strategy %q: want kNextPowerOfTwo or kSameAsRequested", opts.ArenaExtendStrategy)
	}
	return m, nil
}

// checkGPUIndex refuses a GPU index the machine does not have (gpus are visible).
func checkGPUIndex(device string, idx, gpus int) error {
	switch {
	case gpus <= 0:
		return fmt.Errorf("%w: device %s: no NVIDIA GPU is visible here (no /proc/driver/nvidia/gpus entries, nvidia-smi -L lists none, or CUDA_VISIBLE_DEVICES hides them)",
			ErrDeviceUnavailable, device)
	case idx >= gpus:
		have := "cuda:0"
		if gpus > 1 {
			have = fmt.Sprintf("cuda:0 … cuda:%d", gpus-1)
		}
		plural := "s"
		if gpus == 1 {
			plural = ""
		}
		return fmt.Errorf("%w: device %s does not exist: this machine has %d GPU%s (%s)", ErrDeviceUnavailable, device, gpus, plural, have)
	}
	return nil
}

// cudaFailed wraps an error ONNX Runtime gave for the CUDA provider, naming the libraries
// the provider needs that the dynamic loader cannot find, when that is the cause.
func cudaFailed(device string, err error) error {
	lib, lerr := assets.ORTLibrary()
	if lerr != nil {
		return fmt.Errorf("device %s: %w", device, err)
	}
	provider, ok := cudaProviderPath(lib)
	if !ok {
		return fmt.Errorf("%w: device %s: %w", ErrDeviceUnavailable, device, err)
	}
	missing, merr := MissingLibraries(provider)
	if merr != nil || len(missing) == 0 {
		return fmt.Errorf("%w: device %s: %w", ErrDeviceUnavailable, device, err)
	}
	return fmt.Errorf("%w: device %s: the CUDA provider %s needs %s, which the dynamic loader cannot find "+
		"(install CUDA 13's runtime, cuBLAS and cuRAND, e.g. PyPI's nvidia-* cu13 wheels, and put their lib directories on LD_LIBRARY_PATH; cuDNN 9 is also needed at run time): %w",
		ErrDeviceUnavailable, device, provider, strings.Join(missing, ", "), err)
}

// cudaProviderPath returns the CUDA provider library that ONNX Runtime at lib would load:
// the one beside lib, or beside the file a link at lib names.
func cudaProviderPath(lib string) (string, bool) {
	dirs := []string{filepath.Dir(lib)}
	if real, err := filepath.EvalSymlinks(lib); err == nil {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		p := filepath.Join(d, cudaProviderLib)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// CUDAReport says, without loading anything, whether ONNX Runtime at lib could run on a
// GPU here: where its CUDA provider is, the libraries the provider needs (and cuDNN,
// which it opens at run time) that the dynamic loader would not find, and how many GPUs
// are visible. diplip-gpucheck prints it before it tries.
type CUDAReport struct {
	Provider string   // the provider library; "" when there is none
	Missing  []string // needed libraries not found
	GPUs     int
}

// ProbeCUDA fills a CUDAReport for the ONNX Runtime library at lib.
func ProbeCUDA(lib string) (CUDAReport, error) {
	var r CUDAReport
	visible, set := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	r.GPUs = len(probedDevices(true, nvidiaGPUs(), visible, set)) - 1
	p, ok := cudaProviderPath(lib)
	if !ok {
		return r, nil
	}
	r.Provider = p
	missing, err := MissingLibraries(p)
	if err != nil {
		return r, err
	}
	dirs := loaderDirs(p, nil)
	for _, name := range cudaOpens {
		if !findLibrary(name, dirs) {
			missing = append(missing, name+" (opened at run time)")
		}
	}
	r.Missing = missing
	return r, nil
}

// MissingLibraries lists the libraries the ELF shared object at path names as needed
// (DT_NEEDED) that the dynamic loader would not find: not in LD_LIBRARY_PATH, the
// object's RUNPATH or RPATH ($ORIGIN expanded), the ldconfig cache or the default
// directories. It does not load anything, and does not follow the needed libraries'
// own needs.
func MissingLibraries(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s as an ELF shared object: %w", path, err)
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: needed libraries: %w", path, err)
	}
	var own []string
	for _, tag := range []elf.DynTag{elf.DT_RPATH, elf.DT_RUNPATH} {
		if v, err := f.DynString(tag); err == nil {
			own = append(own, v...)
		}
	}
	dirs := loaderDirs(path, own)
	var missing []string
	for _, name := range needed {
		if !findLibrary(name, dirs) {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// loaderDirs lists where the dynamic loader looks for a library needed by the object at
// path, whose RUNPATH/RPATH entries are own: LD_LIBRARY_PATH, those entries, the
// directories of the ldconfig cache, then the default ones.
func loaderDirs(path string, own []string) []string {
	var dirs []string
	dirs = append(dirs, filepath.SplitList(os.Getenv("LD_LIBRARY_PATH"))...)
	origin := filepath.Dir(path)
	for _, v := range own {
		for _, d := range filepath.SplitList(v) {
			d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, ldconfigDirs()...)
	return append(dirs, "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

// ldconfigDirs are the directories of the libraries in the ldconfig cache (`ldconfig -p`).
func ldconfigDirs() []string {
	var out []byte
	for _, bin := range []string{"ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"} {
		if b, err := exec.Command(bin, "-p").Output(); err == nil {
			out = b
			break
		}
	}
	seen := map[string]bool{}
	var dirs []string
	for _, line := range strings.Split(string(out), "\n") {
		_, p, ok := strings.Cut(line, "=> ")
		if !ok {
			continue
		}
		if d := filepath.Dir(strings.TrimSpace(p)); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

func findLibrary(name string, dirs []string) bool {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return true
		}
	}
	return false
}
