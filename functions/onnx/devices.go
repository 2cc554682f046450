package onnx

import (
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/diplip/diplip/internal/assets"
)

// cudaProviderLib is the file ONNX Runtime loads for the CUDA execution provider; it lies
// next to libonnxruntime in the builds that have one (the GPU packages).
const cudaProviderLib = "libonnxruntime_providers_cuda.so"

// ProbeDevices lists where this process could run models, without loading ONNX Runtime
// (about 30 MB that an idle runner would otherwise hold): "cpu", then "cuda:0" … "cuda:N-1"
// when the CUDA provider library lies next to the ONNX Runtime library and the NVIDIA
// driver reports N GPUs (honouring CUDA_VISIBLE_DEVICES). It is a guess from files, not a
// check that CUDA works: Open on a "cuda:N" device is the check.
func ProbeDevices() []string {
	lib, err := assets.ORTLibrary()
	if err != nil {
		return []string{"cpu"}
	}
	provider := hasCUDAProvider(lib)
	gpus := 0
	if provider {
		gpus = nvidiaGPUs()
	}
	visible, set := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	return probedDevices(provider, gpus, visible, set)
}

// probedDevices is ProbeDevices' decision: provider is whether the CUDA provider library
// is installed, gpus how many GPUs the driver reports, visible and visibleSet the value of
// CUDA_VISIBLE_DEVICES and whether it is set. CUDA numbers the visible GPUs from 0, so
// a list of k visible devices gives cuda:0 … cuda:k-1 (at most gpus of them); an empty
// list or one starting with an invalid entry (CUDA's "-1" idiom) hides them all.
func probedDevices(provider bool, gpus int, visible string, visibleSet bool) []string {
	devs := []string{"cpu"}
	if !provider || gpus <= 0 {
		return devs
	}
	n := gpus
	if visibleSet {
		n = 0
		for _, d := range strings.Split(visible, ",") {
			d = strings.TrimSpace(d)
			// CUDA stops at the first invalid entry: a negative index or an empty one.
			// Entries may also be UUIDs ("GPU-…", "MIG-…"), which are valid.
			if i, err := strconv.Atoi(d); err == nil && (i < 0 || i >= gpus) || d == "" {
				break
			}
			n++
		}
		n = min(n, gpus)
	}
	for i := range n {
		devs = append(devs, "cuda:"+strconv.Itoa(i))
	}
	return devs
}

// hasCUDAProvider reports whether the CUDA provider library lies next to the ONNX Runtime
// library at lib (a symbolic link is followed to the directory of the file it names too,
// as packagers link libonnxruntime.so into a library directory).
func hasCUDAProvider(lib string) bool {
	_, ok := cudaProviderPath(lib)
	return ok
}

// nvidiaGPUs counts the GPUs the NVIDIA driver reports: the entries of
// /proc/driver/nvidia/gpus, else (containers often lack that directory) the lines of
// `nvidia-smi -L`. 0 when there is no driver.
func nvidiaGPUs() int {
	if ents, err := os.ReadDir("/proc/driver/nvidia/gpus"); err == nil && len(ents) > 0 {
		return len(ents)
	}
	out, err := exec.Command("nvidia-smi", "-L").Output()
	if err != nil {
		return 0
	}
	return countSMIGPUs(string(out))
}

// countSMIGPUs counts the GPUs in `nvidia-smi -L` output: lines such as
// "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)"; MIG devices are indented below their GPU.
func countSMIGPUs(out string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "GPU ") {
			n++
		}
	}
	return n
}
