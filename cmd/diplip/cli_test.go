package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/testkit"
)

// diplipBinary builds the CLI once per test binary run.
var builtBinary string

func diplipBinary(t *testing.T) string {
	t.Helper()
	if builtBinary != "" {
		return builtBinary
	}
	out := filepath.Join(os.TempDir(), fmt.Sprintf("diplip-cli-test-%d", os.Getpid()))
	cmd := exec.Command("go", "build", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building diplip: %v\n%s", err, b)
	}
	builtBinary = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinary != "" {
		os.Remove(builtBinary)
	}
	os.Exit(code)
}

type upProcess struct {
	cmd      *exec.Cmd
	out      *testkit.SyncBuffer
	listen   string
	stateDir string
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startUp runs `diplip up` against the test run's Kafka and waits until /readyz is 200.
func startUp(t *testing.T, stateDir, listen string, extra ...string) *upProcess {
	t.Helper()
	kafka := strings.Join(testkit.Kafka(t), ",")
	cmd := exec.Command(diplipBinary(t), append([]string{"up", "--state-dir", stateDir, "--listen", listen, "--kafka", kafka}, extra...)...)
	out := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &upProcess{cmd: cmd, out: out, listen: listen, stateDir: stateDir}
	t.Cleanup(func() { p.stop(t) })
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return fmt.Errorf("%v; output so far:\n%s", err, out.String())
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/readyz %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

// stop sends SIGTERM, as Ctrl-C or a service manager would, and waits for a clean exit.
func (p *upProcess) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("diplip up exited with %v after SIGTERM; output:\n%s", err, p.out.String())
		}
		if !strings.Contains(p.out.String(), "diplip: stopped") {
			t.Errorf("diplip up did not report a clean stop; output:\n%s", p.out.String())
		}
		// Nothing it started may outlive it: runner processes carry its state dir.
		testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
			if pids := processesMentioning(p.stateDir); len(pids) > 0 {
				return fmt.Errorf("processes of this diplip up still running after SIGTERM: %v", pids)
			}
			return nil
		})
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("diplip up ignored SIGTERM for 30 s; output:\n%s", p.out.String())
	}
}

// run runs the CLI and returns its stdout; it fails the test unless the exit code is want.
func run(t *testing.T, want int, args ...string) string {
	t.Helper()
	cmd := exec.Command(diplipBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != want {
		t.Fatalf("diplip %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, stdout.String(), stderr.String())
	}
	if want != 0 {
		return stderr.String()
	}
	return stdout.String()
}

func freeAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)) }

// The function-image acceptance, as a user would do it with the binary: build and push
// the example to `diplip up`'s registry, deploy it, restart `diplip up` on the same state,
// then pull by tag and by digest: same digest, same bytes, deployment still recorded.
func TestFunctionImageLifecycleAcrossRestart(t *testing.T) {
	state, store := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	up := startUp(t, state, addr)

	ref := addr + "/fn/yolox-nano:v1"
	var built struct{ Digest string }
	out := run(t, 0, "fn", "build", "../../functions/examples/yolox-nano", "-t", ref, "--push", "--store", store, "-o", "json")
	if err := json.Unmarshal([]byte(out), &built); err != nil || !strings.Contains(built.Digest, "@sha256:") {
		t.Fatalf("fn build -o json: %q (%v)", out, err)
	}
	lobby := testkit.Name("lobby")
	run(t, 0, "stream", "create", lobby, "--partitions", "2", gw)
	run(t, 0, "fn", "deploy", ref, "--stream", lobby, "--max", "2", gw)

	up.stop(t)
	startUp(t, state, addr)

	var inspected struct {
		Digest string
		Spec   struct{ Name string }
	}
	if err := json.Unmarshal([]byte(run(t, 0, "fn", "inspect", ref, "-o", "json")), &inspected); err != nil {
		t.Fatal(err)
	}
	if inspected.Digest != built.Digest || inspected.Spec.Name != "yolox-nano" {
		t.Fatalf("after restart inspect says %+v; built %s", inspected, built.Digest)
	}
	for _, r := range []string{ref, built.Digest} {
		cache := t.TempDir()
		var pulled struct{ Digest, Dir string }
		if err := json.Unmarshal([]byte(run(t, 0, "fn", "pull", r, "--cache", cache, "-o", "json")), &pulled); err != nil {
			t.Fatal(err)
		}
		if pulled.Digest != built.Digest {
			t.Fatalf("pull %s after restart: digest %s, want %s", r, pulled.Digest, built.Digest)
		}
		for _, f := range []string{"function.yaml", "yolox_nano.onnx", "coco80.txt"} {
			a, _ := os.ReadFile(filepath.Join("../../functions/examples/yolox-nano", f))
			b, err := os.ReadFile(filepath.Join(pulled.Dir, f))
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("pull %s: %s differs from the source (%v)", r, f, err)
			}
		}
	}
	var fns []struct {
		Name        string
		Deployments []struct{ Stream string }
	}
	if err := json.Unmarshal([]byte(run(t, 0, "fn", "ls", "-o", "json", gw)), &fns); err != nil {
		t.Fatal(err)
	}
	if len(fns) != 1 || len(fns[0].Deployments) != 1 || fns[0].Deployments[0].Stream != lobby {
		t.Fatalf("fn ls after restart: %+v", fns)
	}
	run(t, 0, "fn", "undeploy", "yolox-nano", "--stream", lobby, gw)
	run(t, 0, "stream", "rm", lobby, gw)
}

// Bad input gets a clear message and an exit code scripts can branch on.
func TestCLIBadInput(t *testing.T) {
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr)
	store := t.TempDir()

	notModel := t.TempDir()
	spec, _ := os.ReadFile("../../functions/examples/yolox-nano/function.yaml")
	os.WriteFile(filepath.Join(notModel, "function.yaml"), spec, 0o644)
	os.WriteFile(filepath.Join(notModel, "coco80.txt"), []byte("person\n"), 0o644)
	os.WriteFile(filepath.Join(notModel, "yolox_nano.onnx"), []byte("this is not an ONNX file"), 0o644)

	for _, tc := range []struct {
		name string
		code int
		args []string
		want string
	}{
		{"not an ONNX file", 1, []string{"fn", "build", notModel, "-t", addr + "/fn/x:v1", "--store", store}, "as an ONNX model"},
		{"no function.yaml", 2, []string{"fn", "build", t.TempDir(), "-t", addr + "/fn/x:v1", "--store", store}, "has no function.yaml"},
		{"push of something never built", 3, []string{"fn", "push", addr + "/fn/never:v1", "--store", store}, "diplip fn build DIR -t"},
		{"tag not found", 1, []string{"fn", "inspect", addr + "/fn/never:v1"}, "NAME_UNKNOWN"},
		{"registry unreachable", 1, []string{"fn", "inspect", "127.0.0.1:1/fn/x:v1"}, "connection refused"},
		{"deploy to a missing stream", 3, []string{"fn", "deploy", addr + "/fn/x:v1", "--stream", "nope", gw}, "diplip stream create nope"},
		{"bad stream name", 2, []string{"stream", "create", "Not_OK", gw}, `stream name "Not_OK"`},
		{"bad output format", 2, []string{"stream", "ls", "-o", "yaml", gw}, `--output "yaml"`},
		{"gateway down", 1, []string{"stream", "ls", "--gateway=http://127.0.0.1:1"}, "diplip up"},
		{"two arguments", 2, []string{"fn", "rm", "a", "b", gw}, "want exactly one function name"},
		{"public listener without a token", 2, []string{"up", "--listen", "0.0.0.0:0", "--state-dir", t.TempDir()}, "--insecure-no-token"},
		{"public NATS without a token", 2, []string{"up", "--nats-listen", "0.0.0.0:0", "--state-dir", t.TempDir()}, "--nats-listen 0.0.0.0:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := run(t, tc.code, tc.args...); !strings.Contains(msg, tc.want) {
				t.Fatalf("stderr %q does not mention %q", msg, tc.want)
			}
		})
	}
}

// Completion comes from the binary itself, so it follows the commands.
func TestBashCompletion(t *testing.T) {
	if out := run(t, 0, "completion", "bash"); !strings.Contains(out, "complete -o bashdefault -o default -o nospace -F _diplip_complete diplip") {
		t.Fatalf("completion script: %q", out)
	}
	if out := run(t, 0, "fn", "--generate-bash-completion"); !strings.Contains(out, "deploy") || !strings.Contains(out, "inspect") {
		t.Fatalf("fn completions: %q", out)
	}
	run(t, 2, "completion", "fish")
}
