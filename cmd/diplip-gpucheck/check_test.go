package main

import (
	"bytes"
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions"
)

func TestCompareDetections(t *testing.T) {
	det := func(class int, x1, y1, x2, y2 float32) functions.Detection {
		return functions.Detection{ClassID: class, Box: functions.Box{X1: x1, Y1: y1, X2: x2, Y2: y2}}
	}
	want := []functions.Detection{det(0, 10, 20, 110, 220), det(2, 300, 40, 360, 90)}
	for _, tc := range []struct {
		name string
		got  []functions.Detection
		err  string
	}{
		{"equal", want, ""},
		{"within tolerance", []functions.Detection{det(0, 10.4, 20, 110, 220), det(2, 300, 40.2, 360, 90)}, ""},
		{"box moved", []functions.Detection{det(0, 10, 20, 111, 220), det(2, 300, 40, 360, 90)}, "detection 0"},
		{"class changed", []functions.Detection{det(0, 10, 20, 110, 220), det(3, 300, 40, 360, 90)}, "detection 1 is class 3"},
		{"one missing", want[:1], "1 detections, want 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A 500×400 image: tolerance 1e-3 is half a pixel across, 0.4 down.
			_, err := compareDetections(want, tc.got, 500, 400, 1e-3)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", nil, "-out DIR is required"},
		{"bad device", []string{"-out", "x", "-device", "gpu0"}, `-device: device "gpu0"`},
		{"bad lanes", []string{"-out", "x", "-lanes", "1,0"}, `-lanes "1,0"`},
		{"bad batches", []string{"-out", "x", "-batches", "two"}, `-batches "two"`},
		{"stray argument", []string{"-out", "x", "extra"}, "unexpected arguments"},
		{"make-dynamic without files", []string{"make-dynamic"}, "usage: diplip-gpucheck make-dynamic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), exitUsage, tc.want)
			}
		})
	}
}

// The check binary must run on a machine with only libc and the ONNX Runtime libraries:
// built with cgo, it links nothing else, and nothing it imports needs OpenCV.
func TestLinksOnlyLibc(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "gocv.io/") || strings.HasSuffix(dep, "/functions/vision") {
			t.Errorf("diplip-gpucheck depends on %s", dep)
		}
	}
	bin := filepath.Join(t.TempDir(), "diplip-gpucheck")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ldd, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(ldd)), "\n") {
		lib := strings.Fields(line)[0]
		if !strings.HasPrefix(lib, "linux-vdso") && !strings.HasPrefix(lib, "libc.so") && !strings.Contains(lib, "ld-linux") {
			t.Errorf("diplip-gpucheck links %s (ldd: %s)", lib, line)
		}
	}
}

// On the CPU alone (-skip-cuda), with the dynamic-batch model made by make-dynamic: the
// check passes and writes both CSVs.
func TestCheckOnTheCPU(t *testing.T) {
	dir := t.TempDir()
	fixed := filepath.Join("..", "..", "functions", "examples", "yolox-nano", "yolox_nano.onnx")
	dynamic := filepath.Join(dir, "dynamic.onnx")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"make-dynamic", fixed, dynamic}, &stdout, &stderr); code != exitOK {
		t.Fatalf("make-dynamic: exit %d: %s", code, stderr.String())
	}
	out := filepath.Join(dir, "out")
	stdout.Reset()
	code := run([]string{"-out", out, "-skip-cuda", "-dynamic-model", dynamic, "-duration", "100ms", "-cpu-lanes", "1,2", "-cpu-batches", "1,2"}, &stdout, &stderr)
	if code != exitOK || !strings.Contains(stdout.String(), "PASSED") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	compare := readCSV(t, filepath.Join(out, "compare.csv"))
	// header, 4 CPU references, 4 dynamic-vs-fixed frames
	if len(compare) != 9 || compare[0][0] != "check" {
		t.Fatalf("compare.csv: %d rows: %v", len(compare), compare)
	}
	for _, r := range compare[1:] {
		if r[6] != "ok" {
			t.Errorf("compare.csv row %v is not ok", r)
		}
	}
	through := readCSV(t, filepath.Join(out, "throughput.csv"))
	// header; fixed: 2 lanes × batch 1; dynamic: 2 lanes × 2 batches
	if len(through) != 7 || through[0][6] != "images_per_s" {
		t.Fatalf("throughput.csv: %d rows: %v", len(through), through)
	}
}

func readCSV(t *testing.T, p string) [][]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
