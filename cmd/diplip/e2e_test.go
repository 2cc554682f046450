package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// pushFrame pushes a media file as one frame of camera through the API client.
func pushFrame(t *testing.T, addr, stream, camera, contentType, media string) {
	t.Helper()
	f := apiclient.Frame{Camera: camera, Image: testkit.Media(t, media), ContentType: contentType}
	if ack, err := gatewayClient(t, addr).PushFrame(t.Context(), stream, f); err != nil || ack.Camera != camera || ack.Seq == 0 {
		t.Fatalf("push %s: %+v, %v", media, ack, err)
	}
}

func gatewayClient(t *testing.T, addr string) *apiclient.Client {
	t.Helper()
	cl, err := apiclient.New("http://"+addr, "")
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func resources(t *testing.T, gw string) api.Resources {
	t.Helper()
	var r api.Resources
	if err := json.Unmarshal([]byte(run(t, 0, "resources", "-o", "json", gw)), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// waitResults polls `diplip results` until want results with status ok are there.
func waitResults(t *testing.T, gw, stream string, want int) []wire.Result {
	t.Helper()
	var rs []wire.Result
	testkit.CheckFor(t, 90*time.Second, 500*time.Millisecond, func() error {
		rs = rs[:0]
		out := run(t, 0, "results", stream, "--last", "100", "-o", "json", gw)
		dec := json.NewDecoder(strings.NewReader(out))
		for {
			var r wire.Result
			if dec.Decode(&r) != nil {
				break
			}
			rs = append(rs, r)
		}
		if len(rs) < want {
			return fmt.Errorf("%d of %d results", len(rs), want)
		}
		return nil
	})
	return rs
}

// The paper's §4.5 scenario through the binary, with scale to zero: resources, stream
// create, fn build, fn push, fn deploy (no runner yet); the first frames wake a runner process, which produces
// results with the detections observed on the media; after the idle timeout the runner
// process leaves; a second burst wakes one again.
func TestEndToEndScaleFromAndToZero(t *testing.T) {
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr, "--idle-timeout", "3s")
	stream := testkit.Name("e2e")
	ref := addr + "/fn/yolox-nano:v1"
	if r := resources(t, gw); len(r.Runners) != 0 {
		t.Fatalf("runners before any deployment: %+v", r.Runners)
	}
	run(t, 0, "stream", "create", stream, "--partitions", "2", gw)
	store := t.TempDir()
	run(t, 0, "fn", "build", "../../functions/examples/yolox-nano", "-t", ref, "--store", store)
	run(t, 0, "fn", "push", ref, "--store", store)
	run(t, 0, "fn", "deploy", ref, "--stream", stream, "--min", "0", "--max", "1", "--policy", "replay", gw)
	if r := resources(t, gw); len(r.Runners) != 0 {
		t.Fatalf("runners before any frame: %+v", r.Runners)
	}

	pushFrame(t, addr, stream, "street", "image/jpeg", "vtest_frame600.jpg")
	pushFrame(t, addr, stream, "space", "image/png", "astronaut.png")
	rs := waitResults(t, gw, stream, 2)
	for _, r := range rs {
		s := wire.Summarize(r.Detections)
		switch r.Camera {
		case "street":
			if r.Status != wire.StatusOK || !strings.Contains(s, "car") || !strings.Contains(s, "truck") || !strings.Contains(s, "person") {
				t.Fatalf("street frame: %s %q", r.Status, s)
			}
		case "space":
			if r.Status != wire.StatusOK || s != "1 person" {
				t.Fatalf("astronaut: %s %q, want 1 person", r.Status, s)
			}
		}
	}
	if r := resources(t, gw); len(r.Runners) != 1 || r.Deployments[0].ColdStarts != 1 {
		t.Fatalf("after the first frames: %+v", r)
	}

	testkit.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		if r := resources(t, gw); len(r.Runners) != 0 {
			return fmt.Errorf("runner still there after the idle timeout: %+v", r.Runners)
		}
		return nil
	})

	pushFrame(t, addr, stream, "street", "image/jpeg", "vtest_frame600.jpg")
	waitResults(t, gw, stream, 3)
	if r := resources(t, gw); r.Deployments[0].ColdStarts != 2 {
		t.Fatalf("the second burst should have woken a runner again: %+v", r.Deployments)
	}
}

// Two runner processes share four partitions; one is killed with SIGKILL mid-stream.
// The group hands its partitions to the survivor, and every frame pushed gets a result
// (duplicates allowed: they share an id).
func TestKilledRunnerLosesNoFrame(t *testing.T) {
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	up := startUp(t, t.TempDir(), addr)
	var natsURL string
	for _, line := range strings.Split(up.out.String(), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "nats" {
			natsURL = f[1]
		}
	}
	if natsURL == "" {
		t.Fatalf("no NATS URL in diplip up's output:\n%s", up.out.String())
	}
	var runners []*exec.Cmd
	for i := range 2 {
		cmd := exec.Command(diplipBinary(t), "runner", "--nats", natsURL, "--id", fmt.Sprintf("hand-%d", i),
			"--cache", t.TempDir(), "--threads", "1")
		cmd.Stdout, cmd.Stderr = &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		runners = append(runners, cmd)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	testkit.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		if n := len(resources(t, gw).Runners); n != 2 {
			return fmt.Errorf("%d runners registered", n)
		}
		return nil
	})

	stream := testkit.Name("kill")
	ref := addr + "/fn/yolox-nano:v1"
	run(t, 0, "fn", "build", "../../functions/examples/yolox-nano", "-t", ref, "--push", "--store", t.TempDir())
	run(t, 0, "stream", "create", stream, "--partitions", "4", gw)
	run(t, 0, "fn", "deploy", ref, "--stream", stream, "--min", "2", "--max", "2", "--policy", "replay", gw)
	testkit.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		active := 0
		for _, r := range resources(t, gw).Runners {
			if r.State == "active" && len(r.Partitions) == 2 {
				active++
			}
		}
		if active != 2 {
			return fmt.Errorf("%d runners active with two partitions each", active)
		}
		return nil
	})

	jpg := testkit.Media(t, "vtest_frame600.jpg")
	cl := gatewayClient(t, addr)
	const n = 80
	for i := range n {
		if i == n/3 {
			if err := runners[0].Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		f := apiclient.Frame{Camera: fmt.Sprintf("cam-%d", i%8), Seq: uint64(i + 1), Image: jpg}
		if ack, err := cl.PushFrame(t.Context(), stream, f); err != nil || ack.Seq != f.Seq {
			t.Fatalf("push %d: %+v, %v", i, ack, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[uint64]bool{}
	testkit.CheckFor(t, 120*time.Second, time.Second, func() error {
		out := run(t, 0, "results", stream, "--last", "1000", "-o", "json", gw)
		dec := json.NewDecoder(strings.NewReader(out))
		for {
			var r wire.Result
			if dec.Decode(&r) != nil {
				break
			}
			if r.Status == wire.StatusOK {
				seen[r.Seq] = true
			}
		}
		if len(seen) < n {
			return fmt.Errorf("%d of %d frames have a result", len(seen), n)
		}
		return nil
	})
}

// The split deployment of several machines, on one: a NATS server of its own, `diplip
// gateway` against it and the test run's Kafka, and a `diplip runner` started by hand.
// The deployment wakes the hand-started runner (no local driver exists) and results flow.
func TestSplitGatewayAndRunner(t *testing.T) {
	ns := testkit.NATS(t, "")
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	g := exec.Command(diplipBinary(t), "gateway", "--nats", ns.ClientURL(), "--kafka", strings.Join(testkit.Kafka(t), ","),
		"--listen", addr, "--state-dir", t.TempDir())
	out := &testkit.SyncBuffer{}
	g.Stdout, g.Stderr = out, out
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		g.Process.Signal(syscall.SIGTERM)
		g.Wait()
		if !strings.Contains(out.String(), "diplip gateway: stopped") {
			t.Errorf("gateway did not stop cleanly:\n%s", out.String())
		}
	}()
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	r := exec.Command(diplipBinary(t), "runner", "--nats", ns.ClientURL(), "--id", "machine-b", "--cache", t.TempDir())
	r.Stdout, r.Stderr = &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.Process.Signal(syscall.SIGTERM); r.Wait() }()

	stream := testkit.Name("split")
	ref := addr + "/fn/yolox-nano:v1"
	run(t, 0, "fn", "build", "../../functions/examples/yolox-nano", "-t", ref, "--push", "--store", t.TempDir())
	run(t, 0, "stream", "create", stream, gw)
	run(t, 0, "fn", "deploy", ref, "--stream", stream, "--policy", "replay", gw)
	pushFrame(t, addr, stream, "space", "image/png", "astronaut.png")
	rs := waitResults(t, gw, stream, 1)
	if s := wire.Summarize(rs[0].Detections); s != "1 person" {
		t.Fatalf("astronaut through the split deployment: %q", s)
	}
	res := resources(t, gw)
	if len(res.Runners) != 1 || res.Runners[0].ID != "machine-b" {
		t.Fatalf("runners: %+v, want only the hand-started machine-b", res.Runners)
	}
}
