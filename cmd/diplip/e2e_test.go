package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/gateway"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

func pushFrame(t *testing.T, addr, stream, camera, contentType, media string) {
	t.Helper()
	p, err := assets.Media(media)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(fmt.Sprintf("http://%s/v1/streams/%s/frames?camera=%s", addr, stream, camera), contentType, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push %s: %d", media, resp.StatusCode)
	}
}

func resources(t *testing.T, gw string) gateway.Resources {
	t.Helper()
	var r gateway.Resources
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

// The paper's scenario through the binary, with scale to zero: a stream with a
// deployment and no runner; the first frames wake a runner process, which produces
// results with the detections observed on the media; after the idle timeout the runner
// process leaves; a second burst wakes one again.
func TestEndToEndScaleFromAndToZero(t *testing.T) {
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr, "--idle-timeout", "3s")
	stream := testkit.Name("e2e")
	ref := addr + "/fn/yolox-nano:v1"
	run(t, 0, "fn", "build", "../../functions/examples/yolox-nano", "-t", ref, "--push", "--store", t.TempDir())
	run(t, 0, "stream", "create", stream, "--partitions", "2", gw)
	run(t, 0, "fn", "deploy", ref, "--stream", stream, "--min", "0", "--max", "1", "--policy", "replay", gw)
	if r := resources(t, gw); len(r.Runners) != 0 {
		t.Fatalf("runners before any frame: %+v", r.Runners)
	}

	pushFrame(t, addr, stream, "street", "image/jpeg", "vtest_frame600.jpg")
	pushFrame(t, addr, stream, "space", "image/png", "astronaut.png")
	rs := waitResults(t, gw, stream, 2)
	for _, r := range rs {
		s := functions.Summarize(r.Detections)
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
