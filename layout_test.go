package diplip_test

// The rooms of ARCHITECTURE.md as allow-lists, checked from `go list` in the style of
// go-containerregistry's pkg/registry/depcheck_test.go: every package of the module
// belongs to a room; a room names the diplip rooms and the third-party modules its code
// may import, and a few rooms carry a rule about everything they link. A change that
// makes a package reach where its room must not fails here, with the import chain.

import (
	"encoding/json"
	"fmt"
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
	Module     *struct{ Path string }
}

// room is a folder of the module and what its packages may use.
type room struct {
	dir string // module-relative; a package belongs to the room with the longest dir that holds it
	// diplip rooms its packages may import directly ("*": any product room; the test kits
	// and bench are never allowed to product code, see below).
	diplip []string
	// modules: third-party modules its packages may import directly.
	modules []string
	// stdlibOnly: nothing it links, directly or not, is outside the standard library and
	// the diplip rooms in diplip (a contract any program can link).
	stdlibOnly bool
	// never: modules or standard packages it must not link at all (transitively).
	never []string
	// noStd: standard packages its own code must not import.
	noStd []string
	why   string
}

const (
	sarama    = "github.com/IBM/sarama"
	natsGo    = "github.com/nats-io/nats.go"
	natsSrv   = "github.com/nats-io/nats-server/v2"
	ggcr      = "github.com/google/go-containerregistry"
	gocv      = "gocv.io/x/gocv"
	ort       = "github.com/yalue/onnxruntime_go"
	yaml      = "gopkg.in/yaml.v3"
	prom      = "github.com/prometheus/client_golang"
	xsync     = "golang.org/x/sync"
	xsys      = "golang.org/x/sys"
	cliV2     = "github.com/urfave/cli/v2"
	plot      = "gonum.org/v1/plot"
	isatty    = "github.com/mattn/go-isatty"
	progress  = "github.com/schollz/progressbar/v3"
	anyModule = "*"
)

var rooms = []room{
	{dir: "internal/wire", stdlibOnly: true,
		why: "every record on Kafka and NATS; any program can link it"},
	{dir: "api", stdlibOnly: true,
		why: "the /v1 types; a client links nothing of the server"},
	{dir: "api/client", diplip: []string{"api"}, stdlibOnly: true,
		why: "the Go client meets the gateway in api alone"},

	{dir: "functions", diplip: []string{"functions"}, modules: []string{yaml}, never: []string{gocv, ort, sarama, natsGo},
		why: "the spec, decoders, trackers and comparisons are pure Go and know nothing of Kafka or NATS"},
	{dir: "functions/onnx", diplip: []string{"functions", "internal/assets"}, modules: []string{ort}, never: []string{gocv, sarama, natsGo},
		why: "the session layer needs no OpenCV, so a program that feeds it tensors (cmd/diplip-gpucheck) links only libc"},
	{dir: "functions/vision", diplip: []string{"functions"}, modules: []string{gocv}, never: []string{ort, sarama, natsGo},
		why: "pixels only: decoding and laying out frames"},
	{dir: "functions/pipeline", diplip: []string{"functions"}, never: []string{sarama, natsGo},
		why: "the function a runner runs: frames in, results out, no Kafka or NATS"},

	{dir: "registry", diplip: []string{"functions"}, modules: []string{ggcr}, never: []string{ort, gocv},
		why: "registry builds and moves images; it runs no model"},
	{dir: "ingest", diplip: []string{"api", "internal/wire", "internal/kafkaclient", "internal/metrics", "internal/controlplane"},
		modules: []string{sarama, natsGo}, never: []string{ort},
		why: "camera sources and their supervision; ingest knows nothing about models"},
	{dir: "ingest/video", diplip: []string{"ingest"}, modules: []string{gocv}, never: []string{ort},
		why: "OpenCV's FFmpeg camera sources, apart so the rest of ingest links no OpenCV"},
	{dir: "runner", diplip: []string{"functions", "internal/wire", "internal/kafkaclient", "internal/metrics", "registry"},
		modules: []string{sarama, natsGo, ggcr},
		why:     "runners know nothing about HTTP cameras, the gateway or the scaler; the model comes in through LoadFunc"},
	{dir: "rollout", diplip: []string{"functions", "internal/wire", "internal/kafkaclient", "internal/controlplane", "internal/metrics", "registry"},
		modules: []string{sarama, natsGo, ggcr}, noStd: []string{"net/http"}, never: []string{ort, gocv},
		why: "the life of a deployment, in domain terms: typed errors, never HTTP"},
	{dir: "scaler", diplip: []string{"internal/wire", "internal/kafkaclient", "internal/controlplane", "internal/metrics"},
		modules: []string{natsGo}, never: []string{ort, gocv},
		why: "the scaler decides from observations, not from HTTP or models"},
	{dir: "gateway", diplip: []string{"api", "functions", "ingest", "rollout", "internal/wire", "internal/controlplane", "internal/kafkaclient", "internal/metrics"},
		modules: []string{natsGo}, never: []string{ort, gocv},
		why: "the gateway is HTTP only: no sarama, scaler, ONNX Runtime or OpenCV in it; it starts fast and runs where no model does"},
	{dir: "gateway/zones", diplip: []string{"api", "functions", "ingest", "rollout", "internal/wire", "internal/controlplane", "internal/kafkaclient"},
		noStd: []string{"net/http"}, never: []string{ort, gocv},
		why: "the zones of tracking deployments in the API's terms; the gateway routes them, this checks and keeps them, without HTTP"},
	{dir: "sinks", diplip: []string{"api", "internal/wire", "internal/kafkaclient", "internal/controlplane", "internal/metrics"},
		modules: []string{sarama, "github.com/eclipse/paho.mqtt.golang", prom}, never: []string{ort, gocv},
		why: "results to webhooks and MQTT, at least once; a sink never holds up a runner, and knows no HTTP routes or models"},
	{dir: "node", diplip: []string{"gateway", "ingest", "rollout", "scaler", "sinks", "registry", "internal/controlplane", "internal/engines", "internal/kafkaclient", "internal/metrics", "internal/wire", "api"},
		modules: []string{natsGo, ggcr, xsync}, never: []string{ort, gocv},
		why: "assembling one node; it runs no model (runners are processes of their own)"},

	{dir: "internal/kafkaclient", diplip: []string{"internal/wire"}, modules: []string{sarama},
		why: "the one room that speaks Kafka"},
	{dir: "internal/controlplane", diplip: []string{"internal/wire"}, modules: []string{natsGo},
		why: "the JetStream buckets and their views"},
	{dir: "internal/metrics", modules: []string{prom}, why: "Prometheus collectors"},
	{dir: "internal/assets", stdlibOnly: true, why: "finds set-up's cached files"},
	{dir: "internal/engines", diplip: []string{"internal/assets", "internal/kafkaclient"}, modules: []string{sarama, natsGo, natsSrv},
		why: "supervisors of the Kafka and NATS servers"},

	// Above the product: the CLI wires everything; bench and the test kits drive it.
	{dir: "cmd", diplip: []string{"*"}, modules: []string{anyModule}, why: "main wires"},
	{dir: "bench", diplip: []string{"*"}, modules: []string{anyModule}, why: "load runs, imported only by the CLI"},
	{dir: "internal/testkit", diplip: []string{"*"}, modules: []string{anyModule}, why: "the test kit sits above the rooms it drives"},
	{dir: "node/nodetest", diplip: []string{"*"}, modules: []string{anyModule}, why: "a node in a test"},
	{dir: "", why: "the module root holds only this test"},
}

// graph is every package the module links, product code only, by import path.
func graph(t *testing.T) (own []string, all map[string]pkg) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	all = map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		all[p.ImportPath] = p
		if p.ImportPath == module || strings.HasPrefix(p.ImportPath, module+"/") {
			own = append(own, p.ImportPath)
		}
	}
	slices.Sort(own)
	return own, all
}

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

func within(relPath, dir string) bool {
	return dir == "" || relPath == dir || strings.HasPrefix(relPath, dir+"/")
}

// roomOf is the room with the longest dir holding the package.
func roomOf(relPath string) (room, bool) {
	best, ok := room{}, false
	for _, r := range rooms {
		if within(relPath, r.dir) && (!ok || len(r.dir) > len(best.dir)) {
			best, ok = r, true
		}
	}
	return best, ok
}

// moduleOf is the third-party module a package belongs to ("" for the standard library
// and the module itself).
func moduleOf(all map[string]pkg, path string) string {
	p := all[path]
	if p.Standard || p.Module == nil || p.Module.Path == module {
		return ""
	}
	return p.Module.Path
}

// chain is the shortest import chain from one package to another, for the message.
func chain(all map[string]pkg, from, to string) string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for p := to; p != ""; p = prev[p] {
				path = append(path, rel(p))
			}
			slices.Reverse(path)
			return strings.Join(path, " → ")
		}
		for _, next := range all[cur].Imports {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return rel(from) + " → … → " + to
}

func allowedRoom(r room, relDep string) bool {
	for _, d := range r.diplip {
		if d == "*" || within(relDep, d) {
			return true
		}
	}
	return within(relDep, r.dir) && r.dir != ""
}

func allowedModule(r room, mod string) bool {
	return slices.Contains(r.modules, anyModule) || slices.Contains(r.modules, mod)
}

func TestDependencyRules(t *testing.T) {
	own, all := graph(t)
	if len(own) < 10 {
		t.Fatalf("go list found %d packages; run the test from the module", len(own))
	}
	for _, path := range own {
		relPath := rel(path)
		r, ok := roomOf(relPath)
		if !ok || (r.dir == "" && relPath != "") {
			t.Errorf("%s belongs to no room: add it to layout_test.go's rooms and to ARCHITECTURE.md", relPath)
			continue
		}
		p := all[path]
		for _, imp := range p.Imports {
			switch {
			case strings.HasPrefix(imp, module+"/"):
				if !allowedRoom(r, rel(imp)) {
					t.Errorf("%s imports %s; room %q may import only %v of diplip: %s", relPath, rel(imp), r.dir, r.diplip, r.why)
				}
			case all[imp].Standard:
				if slices.Contains(r.noStd, imp) {
					t.Errorf("%s imports %s: %s", relPath, imp, r.why)
				}
			default:
				if mod := moduleOf(all, imp); !allowedModule(r, mod) {
					t.Errorf("%s imports %s (module %s); room %q may import only %v: %s", relPath, imp, mod, r.dir, r.modules, r.why)
				}
			}
		}
		reported := map[string]bool{} // one message per module a package links wrongly
		for _, dep := range p.Deps {
			mod := moduleOf(all, dep)
			if mod != "" && reported[mod] {
				continue
			}
			switch {
			case r.stdlibOnly && mod != "":
				reported[mod] = true
				t.Errorf("%s links %s, outside the standard library: %s\n\t%s", relPath, dep, r.why, chain(all, path, dep))
			case r.stdlibOnly && strings.HasPrefix(dep, module+"/") && !allowedRoom(r, rel(dep)):
				t.Errorf("%s links %s: %s\n\t%s", relPath, rel(dep), r.why, chain(all, path, dep))
			case slices.Contains(r.never, mod) || slices.Contains(r.never, dep):
				reported[mod] = mod != ""
				t.Errorf("%s links %s: %s\n\t%s", relPath, dep, r.why, chain(all, path, dep))
			}
			// Product code never uses the test kits; only the CLI uses bench.
			relDep := rel(dep)
			switch {
			case strings.HasPrefix(dep, module+"/") && (within(relDep, "internal/testkit") || within(relDep, "node/nodetest")):
				if !within(relPath, "internal/testkit") && !within(relPath, "node/nodetest") {
					t.Errorf("%s (product code) links the test kit %s\n\t%s", relPath, relDep, chain(all, path, dep))
				}
			case strings.HasPrefix(dep, module+"/") && within(relDep, "bench") && !within(relPath, "bench") && relPath != "cmd/diplip":
				t.Errorf("%s links bench, which only the CLI's bench command may use\n\t%s", relPath, chain(all, path, dep))
			}
		}
	}
}

// A room's size rules: the gateway is HTTP only, and the runner's files stay readable.
func TestRoomSizes(t *testing.T) {
	for _, rule := range []struct {
		dir          string
		perFile, all int // most lines of product code per file, and in the folder (0: no rule)
	}{
		{"gateway", 0, 1200},
		{"runner", 400, 0},
	} {
		out, err := exec.Command("sh", "-c", fmt.Sprintf("wc -l $(ls %s/*.go | grep -v _test.go)", rule.dir)).Output()
		if err != nil {
			t.Fatalf("counting %s: %v", rule.dir, err)
		}
		total := 0
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var n int
			var name string
			if _, err := fmt.Sscan(line, &n, &name); err != nil {
				continue
			}
			if name == "total" {
				continue
			}
			total += n
			if rule.perFile > 0 && n > rule.perFile {
				t.Errorf("%s has %d lines of product code, over %d: split it by job", name, n, rule.perFile)
			}
		}
		if rule.all > 0 && total > rule.all {
			t.Errorf("%s/ holds %d lines of product code, over %d: does the new code belong in another room?", rule.dir, total, rule.all)
		}
	}
}
