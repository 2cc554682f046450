package diplip_test

// The dependency rules of DESIGN.md's rooms, checked from `go list` (in the style of
// go-containerregistry's pkg/registry/depcheck_test.go): a change that makes a package
// reach into a room it must not know fails here, naming the import.

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/diplip/diplip"

type pkg struct {
	ImportPath string
	Imports    []string // direct, product code only
	Deps       []string // transitive, product code only
	Standard   bool
}

func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

func within(path, room string) bool {
	return path == module+"/"+room || strings.HasPrefix(path, module+"/"+room+"/")
}

func TestDependencyRules(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; run the test from the module", len(pkgs))
	}
	forbid := []struct {
		room       string   // packages in this folder...
		transitive bool     // ...checked on every dependency, or only direct imports
		mustNot    []string // ...must not import these (module-relative rooms or full paths)
		why        string
	}{
		{"gateway", true, []string{"runner", "functions/onnx", "functions/vision", "gocv.io/x/gocv", "github.com/yalue/onnxruntime_go"},
			"the gateway starts fast and runs where no model does"},
		{"ingest", true, []string{"runner", "functions"}, "ingest knows nothing about models"},
		{"functions", true, []string{"github.com/IBM/sarama", "github.com/nats-io/nats.go", "internal/kafkaclient", "internal/controlplane"},
			"functions know nothing about Kafka or NATS"},
		{"scaler", true, []string{"gateway", "runner", "functions"}, "the scaler decides from observations, not from HTTP or models"},
		{"runner", true, []string{"gateway", "ingest", "scaler", "node"}, "runners know nothing about HTTP cameras"},
		{"registry", true, []string{"gateway", "runner", "functions/onnx"}, "registry builds and moves images; it runs no model"},
		{"functions/onnx", true, []string{"functions/vision", "gocv.io/x/gocv"},
			"the session layer needs no OpenCV, so a program that feeds it tensors (cmd/diplip-gpucheck) links only libc; frames go through functions/pipeline"},
	}
	for _, rule := range forbid {
		for path, p := range pkgs {
			if !within(path, rule.room) {
				continue
			}
			deps := p.Imports
			if rule.transitive {
				deps = p.Deps
			}
			for _, d := range deps {
				for _, bad := range rule.mustNot {
					if d == bad || within(d, bad) || strings.HasPrefix(d, bad+"/") {
						t.Errorf("%s imports %s: %s", path, d, rule.why)
					}
				}
			}
		}
	}

	// Contracts: wire imports nothing of diplip; api only wire; api/client only api.
	allowOnly := map[string][]string{
		"internal/wire": {},
		"api":           {"internal/wire"},
		"api/client":    {"api", "internal/wire"},
	}
	for room, allowed := range allowOnly {
		p, ok := pkgs[module+"/"+room]
		if !ok {
			t.Errorf("package %s is missing", room)
			continue
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"/") && !slices.ContainsFunc(allowed, func(a string) bool { return d == module+"/"+a }) {
				t.Errorf("%s depends on %s; it may use only %v of diplip", room, d, allowed)
			}
		}
	}

	// Product code never uses the test kits; only the CLI uses bench.
	for path, p := range pkgs {
		for _, d := range p.Deps {
			switch {
			case within(d, "internal/testkit") || within(d, "node/nodetest"):
				if !within(path, "internal/testkit") {
					t.Errorf("%s (product code) imports the test kit %s", path, d)
				}
			case within(d, "bench") && !within(path, "bench") && path != module+"/cmd/diplip":
				t.Errorf("%s imports bench, which only the CLI's bench command may use", path)
			}
		}
	}
}
