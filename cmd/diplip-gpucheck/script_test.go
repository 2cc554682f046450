package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diplip/diplip/internal/assets"
)

// scripts/gpu-check.sh as far as a machine without a GPU goes: pack a bundle (setup's CPU
// ONNX Runtime in place of the GPU build, small chunks), bring the chunks over one by one
// as consecutive device calls would, with receive after each; a corrupt chunk is named,
// run refuses while one is missing, and once all are in it reassembles, verifies and
// runs the check on the CPU, leaving its CSVs and log in $OUT.
func TestGPUCheckScriptOnTheCPU(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	lib, err := assets.ORTLibrary()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	cache, libs, here, there, out := filepath.Join(tmp, "cache"), filepath.Join(tmp, "libs"), filepath.Join(tmp, "here"), filepath.Join(tmp, "there"), filepath.Join(tmp, "out")
	for _, d := range []string{filepath.Join(cache, "models"), filepath.Join(cache, "media"), libs, there} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(src, dst string) {
		t.Helper()
		if err := os.Symlink(src, dst); err != nil {
			t.Fatal(err)
		}
	}
	link(lib, filepath.Join(libs, "libonnxruntime.so.1"))
	fixed, err := assets.Model("yolox_nano.onnx")
	if err != nil {
		t.Fatal(err)
	}
	link(fixed, filepath.Join(cache, "models", "yolox_nano.onnx"))
	for _, name := range []string{"astronaut.png", "messi5.jpg", "chelsea.png", "vtest_frame600.jpg"} {
		p, err := assets.Media(name)
		if err != nil {
			t.Fatal(err)
		}
		link(p, filepath.Join(cache, "media", name))
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"make-dynamic", fixed, filepath.Join(cache, "models", "yolox_nano_dynamic.onnx")}, &stdout, &stderr); code != exitOK {
		t.Fatalf("make-dynamic: %s", stderr.String())
	}

	script := func(bundle string, args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts", "gpu-check.sh")}, args...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "DIPLIP_CACHE="+cache, "GPU_CHECK_LIBS="+libs, "GPU_BUNDLE="+bundle,
			"GPU_CHUNK_BYTES=4194304", "XZ_OPT=-0", "OUT="+out, "GPU_CHECK_WORK="+filepath.Join(tmp, "work"))
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if log, err := script(here, "pack"); err != nil {
		t.Fatalf("pack: %v\n%s", err, log)
	}
	parts, err := filepath.Glob(filepath.Join(here, "bundle.tar.xz.part-*"))
	if err != nil || len(parts) < 3 {
		t.Fatalf("pack made %d chunks (%v); want several of 4 MiB", len(parts), err)
	}
	for _, p := range parts {
		if fi, err := os.Stat(p); err != nil || fi.Size() > 4<<20 {
			t.Fatalf("%s: %v, want at most 4 MiB", p, fi.Size())
		}
	}
	carry := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(here, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(there, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return b
	}
	carry("MANIFEST.sha256")

	for i, p := range parts {
		b := carry(filepath.Base(p))
		if i == 1 { // a chunk damaged on the way is named, and can be carried again
			bad := bytes.Clone(b)
			bad[len(bad)/2] ^= 0xff
			if err := os.WriteFile(filepath.Join(there, filepath.Base(p)), bad, 0o644); err != nil {
				t.Fatal(err)
			}
			if log, err := script(there, "receive"); err == nil || !strings.Contains(log, "corrupt chunk(s), carry them again: "+filepath.Base(p)) {
				t.Fatalf("receive with a damaged chunk: %v\n%s", err, log)
			}
			carry(filepath.Base(p))
		}
		log, err := script(there, "receive")
		if err != nil || !strings.Contains(log, fmt.Sprintf("have %d of %d chunks", i+1, len(parts))) {
			t.Fatalf("receive after chunk %d: %v\n%s", i, err, log)
		}
		if i == len(parts)-2 {
			if log, err := script(there, "run", "-skip-cuda"); err == nil || !strings.Contains(log, filepath.Base(parts[i+1])+" has not arrived") {
				t.Fatalf("run with a chunk missing: %v\n%s", err, log)
			}
		}
	}
	log, err := script(there, "run", "-skip-cuda", "-duration", "100ms", "-cpu-lanes", "1", "-cpu-batches", "1,2")
	if err != nil || !strings.Contains(log, "bundle reassembled and verified") || !strings.Contains(log, "PASSED") {
		t.Fatalf("run: %v\n%s", err, log)
	}
	for _, name := range []string{"compare.csv", "throughput.csv", "check.log", "env.txt"} {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Size() == 0 {
			t.Errorf("$OUT/%s: %v", name, err)
		}
	}
	if rows := readCSV(t, filepath.Join(out, "throughput.csv")); len(rows) != 4 {
		t.Errorf("throughput.csv: %v; want the header and 3 rows (fixed batch 1; dynamic batch 1 and 2)", rows)
	}
}
