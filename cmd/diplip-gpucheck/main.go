// Command diplip-gpucheck checks diplip's ONNX Runtime session layer (functions/onnx) on a
// GPU, and measures it there. It is built here and run on a lent GPU machine by
// scripts/gpu-check.sh (docs/gpu-check.md), so it links only libc: ONNX Runtime is opened
// at run time (DIPLIP_ORT_LIB), photos are decoded with Go's image/jpeg and image/png and
// letterboxed in Go, never with OpenCV.
//
//	diplip-gpucheck -out DIR [-function DIR] [-dynamic-model FILE] [-media DIR] [-skip-cuda] …
//	diplip-gpucheck make-dynamic FIXED.onnx DYNAMIC.onnx
//
// The check: the model loads on the CPU and on cuda:N; on each shared photo, the CUDA
// detections equal the CPU ones (same classes, boxes within -tolerance of the image's
// size); the dynamic-batch export gives each frame of a batch what the fixed one gives
// it. Then images/s, p50 and p99 per Run for lanes × batch sizes on each device. It
// writes compare.csv and throughput.csv to -out, and prints a summary. Exit codes: 0 all
// checks passed, 1 a check failed (CUDA unavailable included, unless -skip-cuda), 2 bad
// input, 3 a file not found.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/internal/assets"
)

const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitNotFound = 3
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// config is what the flags ask for.
type config struct {
	function, dynamicModel, media, out string
	photos                             []string
	device                             string
	skipCUDA                           bool
	lanes, batches, cpuLanes           []int
	cpuBatches                         []int
	duration                           time.Duration
	gpuMemLimit                        int64
	arena                              string
	tolerance                          float64
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "make-dynamic" {
		return makeDynamic(args[1:], stdout, stderr)
	}
	cfg, code := parseFlags(args, stderr)
	if code != exitOK {
		return code
	}
	c := &check{cfg: cfg, log: stdout}
	if err := c.run(); err != nil {
		fmt.Fprintf(stderr, "diplip-gpucheck: %v\n", err)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, assets.ErrNotInstalled) {
			return exitNotFound
		}
		return exitFailed
	}
	if len(c.failures) > 0 {
		fmt.Fprintf(stdout, "FAILED: %d check(s):\n  %s\n", len(c.failures), strings.Join(c.failures, "\n  "))
		return exitFailed
	}
	fmt.Fprintln(stdout, "PASSED")
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (config, int) {
	var cfg config
	fl := flag.NewFlagSet("diplip-gpucheck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.StringVar(&cfg.function, "function", "", "function directory: function.yaml, the fixed-batch model, labels (default: functions/examples/yolox-nano)")
	fl.StringVar(&cfg.dynamicModel, "dynamic-model", "", "the dynamic-batch export of the same model (diplip-gpucheck make-dynamic); empty: batch 1 only")
	fl.StringVar(&cfg.media, "media", "", "directory of the photos (default: the setup cache's media)")
	photos := fl.String("photos", "astronaut.png,messi5.jpg,chelsea.png,vtest_frame600.jpg", "photos to compare devices on, comma-separated")
	fl.StringVar(&cfg.out, "out", "", "directory to write compare.csv and throughput.csv to (required)")
	fl.StringVar(&cfg.device, "device", "cuda:0", "the GPU to check")
	fl.BoolVar(&cfg.skipCUDA, "skip-cuda", false, "check and measure the CPU only (a machine without a GPU)")
	lanes := fl.String("lanes", "1,2,3,4", "lanes to measure on the GPU")
	batches := fl.String("batches", "1,2,4,8,16", "batch sizes to measure with the dynamic-batch model")
	cpuLanes := fl.String("cpu-lanes", "1,2,4", "lanes to measure on the CPU")
	cpuBatches := fl.String("cpu-batches", "1,4", "batch sizes to measure on the CPU with the dynamic-batch model")
	fl.DurationVar(&cfg.duration, "duration", time.Second, "how long each configuration is timed, after its warm-up")
	fl.Int64Var(&cfg.gpuMemLimit, "gpu-mem-limit", 0, "the CUDA arena's limit per session, bytes (0: none)")
	fl.StringVar(&cfg.arena, "arena", "", "the CUDA arena's extend strategy: kNextPowerOfTwo or kSameAsRequested (default: the provider's)")
	fl.Float64Var(&cfg.tolerance, "tolerance", 1e-3, "largest box coordinate difference between devices, as a fraction of the image's width or height")
	if err := fl.Parse(args); err != nil {
		return cfg, exitUsage
	}
	bad := func(format string, a ...any) (config, int) {
		fmt.Fprintf(stderr, "diplip-gpucheck: "+format+"\n", a...)
		return cfg, exitUsage
	}
	if fl.NArg() > 0 {
		return bad("unexpected arguments %q; flags only (or: make-dynamic IN OUT)", fl.Args())
	}
	if cfg.out == "" {
		return bad("-out DIR is required: where compare.csv and throughput.csv go")
	}
	if _, err := onnx.ParseCUDADevice(cfg.device); err != nil {
		return bad("-device: %v", err)
	}
	if cfg.duration <= 0 {
		return bad("-duration %v: want more than 0", cfg.duration)
	}
	if cfg.tolerance <= 0 {
		return bad("-tolerance %v: want more than 0", cfg.tolerance)
	}
	for _, l := range []struct {
		name string
		s    string
		dst  *[]int
		hi   int
	}{{"-lanes", *lanes, &cfg.lanes, 64}, {"-batches", *batches, &cfg.batches, 256}, {"-cpu-lanes", *cpuLanes, &cfg.cpuLanes, 64}, {"-cpu-batches", *cpuBatches, &cfg.cpuBatches, 256}} {
		v, err := parseInts(l.s, l.hi)
		if err != nil {
			return bad("%s %q: %v", l.name, l.s, err)
		}
		*l.dst = v
	}
	for _, p := range strings.Split(*photos, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.photos = append(cfg.photos, p)
		}
	}
	if len(cfg.photos) == 0 {
		return bad("-photos: name at least one photo")
	}
	return cfg, exitOK
}

// parseInts reads "1,2,4" as counts from 1 to hi.
func parseInts(s string, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > hi {
			return nil, fmt.Errorf("%q: want counts from 1 to %d, comma-separated", f, hi)
		}
		out = append(out, n)
	}
	return out, nil
}

// makeDynamic writes the dynamic-batch export of a fixed-batch model.
func makeDynamic(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "usage: diplip-gpucheck make-dynamic FIXED.onnx DYNAMIC.onnx")
		return exitUsage
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "diplip-gpucheck: %v\n", err)
		return exitNotFound
	}
	d, err := onnx.MakeBatchDynamic(b)
	if err != nil {
		fmt.Fprintf(stderr, "diplip-gpucheck: %s: %v\n", args[0], err)
		return exitUsage
	}
	tmp := args[1] + ".part"
	if err := os.WriteFile(tmp, d, 0o644); err != nil {
		fmt.Fprintf(stderr, "diplip-gpucheck: %v\n", err)
		return exitFailed
	}
	if err := os.Rename(tmp, args[1]); err != nil {
		fmt.Fprintf(stderr, "diplip-gpucheck: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes): %s with a dynamic batch axis\n", args[1], len(d), filepath.Base(args[0]))
	return exitOK
}

// loadFunction reads the spec and labels of the function in dir.
func loadFunction(dir string) (*functions.Spec, []string, error) {
	spec, err := functions.LoadSpec(dir)
	if err != nil {
		return nil, nil, err
	}
	var labels []string
	if spec.Labels != "" {
		b, err := os.ReadFile(filepath.Join(dir, spec.Labels))
		if err != nil {
			return nil, nil, fmt.Errorf("labels: %w", err)
		}
		labels = functions.ParseLabels(string(b))
	}
	return spec, labels, nil
}
