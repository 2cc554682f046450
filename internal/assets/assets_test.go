package assets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOverridesAndMissingFiles(t *testing.T) {
	cache := t.TempDir()
	if err := os.MkdirAll(filepath.Join(cache, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "models", "m.onnx"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DIPLIP_CACHE", cache)

	if got, err := Model("m.onnx"); err != nil || got != filepath.Join(cache, "models", "m.onnx") {
		t.Fatalf("Model = %q, %v; want the file in DIPLIP_CACHE", got, err)
	}
	_, err := Media("nope.png")
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "scripts/setup.sh media") {
		t.Fatalf("missing media: err = %v; want ErrNotInstalled naming the setup step", err)
	}

	t.Setenv("DIPLIP_ORT_LIB", filepath.Join(cache, "models", "m.onnx"))
	if got, err := ORTLibrary(); err != nil || !strings.HasSuffix(got, "m.onnx") {
		t.Fatalf("ORTLibrary with DIPLIP_ORT_LIB = %q, %v", got, err)
	}
	t.Setenv("DIPLIP_ORT_LIB", filepath.Join(cache, "missing.so"))
	if _, err := ORTLibrary(); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "DIPLIP_ORT_LIB") {
		t.Fatalf("ORTLibrary with a wrong DIPLIP_ORT_LIB: err = %v; want it named", err)
	}
}

func TestSourceTreeIsFoundFromASubdirectory(t *testing.T) {
	t.Setenv("DIPLIP_CACHE", "")
	dir, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(filepath.Dir(filepath.Dir(wd)), ".cache"); dir != want {
		t.Fatalf("CacheDir from %s = %s, want %s", wd, dir, want)
	}
}

// setup.sh installs the library where ORTLibrary looks for it: the versions must agree.
func TestORTVersionIsSetupsPin(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "scripts", "setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ORT_VERSION="); ok {
			if v = strings.Fields(v)[0]; v != ORTVersion {
				t.Fatalf("scripts/setup.sh pins ORT_VERSION=%s, assets.ORTVersion is %s", v, ORTVersion)
			}
			return
		}
	}
	t.Fatal("scripts/setup.sh has no ORT_VERSION= line")
}
