// Package assets finds the files that `go tool task setup` installs: the ONNX Runtime
// shared library, the Kafka broker's jars, the sample model and the sample media.
//
// Nothing here downloads anything; a missing file is an error that names the setup step
// which installs it. Every location can be overridden with an environment variable, so a
// packaged installation can put the files anywhere:
//
//	DIPLIP_CACHE      the setup cache (default: .cache/ in the source tree)
//	DIPLIP_ORT_LIB    path of libonnxruntime.so
//	DIPLIP_KAFKA_LIB  directory of the Kafka broker's jars
package assets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Pinned versions; scripts/setup.sh installs exactly these.
const (
	// ORTVersion is ONNX Runtime's, the library of PyPI's onnxruntime wheel (onnxruntime_go
	// v1.27.0 wants the 1.24 C API or newer). ORTLibrary's default path names it.
	ORTVersion   = "1.32.0"
	KafkaVersion = "4.1.2"
)

// ErrNotInstalled is wrapped by every error about a file that setup should have installed.
var ErrNotInstalled = errors.New("not installed")

// CacheDir returns the setup cache: $DIPLIP_CACHE, else .cache/ in the source tree found by
// walking up from the working directory and then from the executable's directory.
func CacheDir() (string, error) {
	if d := os.Getenv("DIPLIP_CACHE"); d != "" {
		return d, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, start := range starts {
		if root, ok := sourceRoot(start); ok {
			return filepath.Join(root, ".cache"), nil
		}
	}
	return "", fmt.Errorf("setup cache: %w: no diplip source tree above %v and DIPLIP_CACHE is unset; run: go tool task setup", ErrNotInstalled, starts)
}

// sourceRoot walks up from dir to the directory holding scripts/setup.sh.
func sourceRoot(dir string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "setup.sh")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// Example returns the directory of an example function in the source tree, e.g.
// "yolox-nano" (functions/examples/yolox-nano).
func Example(name string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(filepath.Dir(cache), "functions", "examples", name)
	if _, err := os.Stat(filepath.Join(dir, "function.yaml")); err != nil {
		return "", fmt.Errorf("example function %s: %w (looked in %s)", name, ErrNotInstalled, dir)
	}
	return dir, nil
}

// ORTLibrary returns the path of the ONNX Runtime shared library.
func ORTLibrary() (string, error) {
	if p := os.Getenv("DIPLIP_ORT_LIB"); p != "" {
		return existing(p, "DIPLIP_ORT_LIB")
	}
	return inCache("ort", "onnxruntime", ORTVersion, "libonnxruntime.so.1")
}

// KafkaLibDir returns the directory of the Kafka broker's jars.
func KafkaLibDir() (string, error) {
	if p := os.Getenv("DIPLIP_KAFKA_LIB"); p != "" {
		return existing(p, "DIPLIP_KAFKA_LIB")
	}
	return inCache("kafka", "kafka", KafkaVersion, "lib")
}

// Model returns the path of a model file installed by setup, e.g. "yolox_nano.onnx".
func Model(name string) (string, error) { return inCache("models", "models", name) }

// Media returns the path of a sample image or video installed by setup, e.g. "astronaut.png".
func Media(name string) (string, error) { return inCache("media", "media", name) }

func inCache(step string, elem ...string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(append([]string{cache}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s: %w; run: go tool task setup (or scripts/setup.sh %s)", p, ErrNotInstalled, step)
	}
	return p, nil
}

func existing(p, env string) (string, error) {
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s=%s: %w", env, p, ErrNotInstalled)
	}
	return p, nil
}
