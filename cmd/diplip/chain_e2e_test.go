package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// chainUp starts diplip up, creates a stream of two partitions named after prefix and
// builds and pushes the chain's two functions: YOLOX-Nano and the person re-id embedder.
func chainUp(t *testing.T, prefix string) (addr, gw, stream, det, reid string) {
	t.Helper()
	addr = freeAddr(t)
	gw = "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr)
	stream = testkit.Name(prefix)
	run(t, 0, "stream", "create", stream, "--partitions", "2", gw)
	det, reid = addr+"/fn/yolox-nano:v1", addr+"/fn/person-reid:v1"
	for ref, dir := range map[string]string{det: "yolox-nano", reid: "person-reid"} {
		run(t, 0, "fn", "build", "../../functions/examples/"+dir, "-t", ref, "--push", "--store", t.TempDir())
	}
	return addr, gw, stream, det, reid
}

// A chain through the binary (issue #24): YOLOX-Nano with tracking as the first stage, the
// person re-id embedder after it on people at least 60 px high. Frames of the sample video
// pushed as one camera each get one enriched result on the second stage's own results
// topic: every person detection ≥ 60 px high carries a 256-d unit embedding, nothing else
// does, track ids come through, and the embeddings separate people (the same track in
// consecutive frames against two people in one frame). Bad --after, a cycle and an unknown
// class are refused first.
func TestChainYOLOXThenPersonReID(t *testing.T) {
	const frames = 30
	addr, gw, stream, det, reid := chainUp(t, "chain")
	cl := gatewayClient(t, addr)
	refused := func(req api.DeployRequest, status int, says ...string) {
		t.Helper()
		req.Stream, req.Policy = stream, "replay"
		_, err := cl.Deploy(t.Context(), req)
		var ae *apiclient.Error
		if !errors.As(err, &ae) || ae.Status != status {
			t.Fatalf("deploy %+v: %v, want status %d", req, err, status)
		}
		for _, s := range says {
			if !strings.Contains(ae.Message, s) {
				t.Fatalf("deploy %+v: %q does not say %q", req, ae.Message, s)
			}
		}
	}
	refused(api.DeployRequest{Ref: reid, After: "yolox-nano"}, http.StatusNotFound, "deployed there: nothing")
	run(t, 0, "fn", "deploy", det, "--stream", stream, "--min", "0", "--max", "1", "--policy", "replay", "--track", gw)
	refused(api.DeployRequest{Ref: reid, After: "nanodet"}, http.StatusNotFound, "deployed there: yolox-nano")
	refused(api.DeployRequest{Ref: det, After: "yolox-nano"}, http.StatusConflict, "cycle")
	refused(api.DeployRequest{Ref: reid, After: "yolox-nano", Classes: []string{"person", "unicorn"}}, http.StatusBadRequest, "coco80.txt", "unicorn")
	out := run(t, 0, "fn", "deploy", reid, "--stream", stream, "--after", "yolox-nano", "--classes", "person", "--min-size", "60",
		"--min", "0", "--max", "1", "--policy", "replay", gw)
	if !strings.Contains(out, "second stage after yolox-nano") {
		t.Fatalf("fn deploy --after: %s", out)
	}

	jpegs := ingest.SplitJPEGs(testkit.Media(t, "vtest_10s.mjpeg"))[:frames]
	sizes := map[uint64]int{}
	for _, b := range jpegs {
		ack, err := cl.PushFrame(t.Context(), stream, apiclient.Frame{Camera: "vtest", Image: b, ContentType: "image/jpeg"})
		if err != nil {
			t.Fatal(err)
		}
		sizes[ack.Seq] = len(b)
	}
	kc := kafkaclient.New(testkit.Kafka(t), "test-chain")
	defer kc.Close()
	topic := wire.AfterResultsTopic(stream, "yolox-nano", "person-reid")
	var rs []wire.Result
	testkit.CheckFor(t, 3*time.Minute, time.Second, func() error {
		recs, err := kc.LastResults(t.Context(), topic, 2*frames)
		if err != nil {
			return err
		}
		rs = rs[:0]
		for _, b := range recs {
			var r wire.Result
			if err := json.Unmarshal(b, &r); err != nil {
				return err
			}
			rs = append(rs, r)
		}
		if len(rs) < frames {
			return fmt.Errorf("%d of %d enriched results on %s", len(rs), frames, topic)
		}
		return nil
	})
	if len(rs) != frames {
		t.Fatalf("%d enriched results, want one per frame (%d)", len(rs), frames)
	}
	// What the second stage's runner moved and ran, from its own /metrics.
	key := wire.AfterKey("person-reid", stream, "yolox-nano")
	var metricsURL string
	for _, r := range resources(t, gw).Runners {
		if r.Deployment == key {
			metricsURL = r.MetricsURL
		}
	}
	counted := map[string]float64{}
	if resp, err := http.Get(metricsURL); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			for _, name := range []string{"diplip_chain_frame_read_bytes_total", "diplip_chain_frame_bytes_total", "diplip_chain_crops_total", "diplip_chain_crops_per_frame_count", "diplip_chain_too_small_total"} {
				if strings.HasPrefix(line, name+"{") {
					var v float64
					fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
					counted[name] = v
				}
			}
		}
	}
	t.Logf("second stage's runner (%s): %v", metricsURL, counted)

	// The chain as fn ls and resources show it; its first stage stays while it runs.
	if out := run(t, 0, "fn", "ls", gw); !strings.Contains(out, stream+" (yolox-nano → person-reid") {
		t.Fatalf("fn ls does not show the chain:\n%s", out)
	}
	if out := run(t, 0, "resources", gw); !strings.Contains(out, "person-reid."+stream+".after.yolox-nano (yolox-nano → person-reid)") {
		t.Fatalf("resources does not show the chain:\n%s", out)
	}
	var ae *apiclient.Error
	if err := cl.Undeploy(t.Context(), "yolox-nano", stream); !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "--cascade") {
		t.Fatalf("undeploying a first stage with a second: %v, want 409 naming --cascade", err)
	}
	if err := cl.UndeployAfter(t.Context(), "person-reid", stream, "nanodet"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("undeploying a second stage that is not there: %v, want 404", err)
	}
	run(t, 0, "fn", "undeploy", "yolox-nano", "--stream", stream, "--cascade", gw)
	if deps, err := cl.Deployments(t.Context()); err != nil || slices.ContainsFunc(deps, func(d api.Deployment) bool { return d.Stream == stream }) {
		t.Fatalf("after --cascade: %+v, %v; want no deployment on %s", deps, err, stream)
	}

	slices.SortFunc(rs, func(a, b wire.Result) int { return int(a.Seq) - int(b.Seq) })
	type emb struct {
		track uint64
		v     []float32
	}
	var people, embedded, tracked, readBytes, readFrames, small int
	var runCrops, latency []float64 // crops per model run of each frame read; capture to enriched result, ms
	perFrame := make([][]emb, len(rs))
	for i, r := range rs {
		if r.Status != wire.StatusOK || r.Function != "person-reid" || len(r.Stages) != 2 || r.Stages[0].Function != "yolox-nano" ||
			!strings.Contains(r.Stages[0].Digest, "sha256:") || !strings.Contains(r.Stages[1].Digest, "sha256:") {
			t.Fatalf("enriched result %d: %s %q, function %s, stages %+v", i, r.Status, r.Error, r.Function, r.Stages)
		}
		read := false
		for _, x := range r.Detections {
			want := x.Label == "person" && x.Box.Y2-x.Box.Y1 >= 60
			if x.Label == "person" && !want {
				small++
			}
			if !want {
				if x.Embedding != nil {
					t.Fatalf("frame %d: %s %.0f px high carries an embedding", r.Seq, x.Label, x.Box.Y2-x.Box.Y1)
				}
				continue
			}
			people++
			var norm float64
			for _, v := range x.Embedding {
				norm += float64(v) * float64(v)
			}
			if len(x.Embedding) != 256 || math.Abs(math.Sqrt(norm)-1) > 1e-3 {
				t.Fatalf("frame %d: person %+v: embedding of %d values, norm %.4f; want 256, unit", r.Seq, x.Box, len(x.Embedding), math.Sqrt(norm))
			}
			embedded, read = embedded+1, true
			if x.TrackID != 0 {
				tracked++
			}
			perFrame[i] = append(perFrame[i], emb{x.TrackID, x.Embedding})
		}
		if read {
			readFrames++
			readBytes += sizes[r.Seq]
			runCrops = append(runCrops, float64(r.Timings.Batch))
		}
		latency = append(latency, r.Timings.EndToEnd)
	}
	if got := counted["diplip_chain_too_small_total"]; got != float64(small) {
		t.Errorf("diplip_chain_too_small_total %v, want the %d people under 60 px", got, small)
	}
	if embedded == 0 || tracked == 0 {
		t.Fatalf("%d people ≥ 60 px embedded, %d with a track id: want some of each", embedded, tracked)
	}
	cos := func(a, b []float32) float64 {
		var s float64
		for i := range a {
			s += float64(a[i]) * float64(b[i])
		}
		return s
	}
	var same, diff []float64
	for i := range perFrame {
		for j, a := range perFrame[i] {
			for _, b := range perFrame[i][j+1:] {
				diff = append(diff, cos(a.v, b.v))
			}
			if i+1 < len(perFrame) && a.track != 0 {
				for _, b := range perFrame[i+1] {
					if b.track == a.track {
						same = append(same, cos(a.v, b.v))
					}
				}
			}
		}
	}
	if len(same) == 0 || len(diff) == 0 {
		t.Fatalf("%d same-track pairs, %d different-people pairs: want some of each", len(same), len(diff))
	}
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	pct := func(xs []float64, p float64) float64 {
		s := slices.Sorted(slices.Values(xs))
		return s[int(p*float64(len(s)-1))]
	}
	t.Logf("%d frames, %d people ≥ 60 px embedded (%d tracked); %d frames read back by offset (%d bytes, %.0f per frame read), one decode each",
		len(rs), embedded, tracked, readFrames, readBytes, float64(readBytes)/float64(max(readFrames, 1)))
	t.Logf("crops per model run: median %.0f, max %.0f; capture to enriched result (all %d frames pushed at once, CPU): p50 %.0f ms, max %.0f ms",
		pct(runCrops, 0.5), pct(runCrops, 1), len(rs), pct(latency, 0.5), pct(latency, 1))
	t.Logf("cosine: same track in consecutive frames mean %.3f p10 %.3f (%d pairs); two people in one frame mean %.3f p90 %.3f (%d pairs)",
		mean(same), pct(same, 0.1), len(same), mean(diff), pct(diff, 0.9), len(diff))
	if mean(same)-mean(diff) < 0.1 || pct(same, 0.1) <= pct(diff, 0.9) {
		t.Fatalf("the embeddings do not separate people: same %.3f (p10 %.3f), different %.3f (p90 %.3f)",
			mean(same), pct(same, 0.1), mean(diff), pct(diff, 0.9))
	}
	_ = people
}

// Exactly-once through a chain: both stages deliver exactly-once, and the second stage's
// runner is SIGKILLed mid-stream; its next runner resumes from its last transaction, so
// every frame has exactly one enriched result on the second stage's topic (read committed).
func TestChainExactlyOnceSurvivesAKilledSecondStage(t *testing.T) {
	const frames = 60
	addr, gw, stream, det, reid := chainUp(t, "chain-eo")
	run(t, 0, "fn", "deploy", det, "--stream", stream, "--min", "1", "--max", "1", "--policy", "replay", "--delivery", "exactly-once", gw)
	if out := run(t, 0, "fn", "deploy", reid, "--stream", stream, "--after", "yolox-nano", "--classes", "person", "--min-size", "60",
		"--min", "1", "--max", "1", "--policy", "replay", gw); !strings.Contains(out, "delivery exactly-once") {
		t.Fatalf("a second stage takes its first stage's delivery: %s", out)
	}
	key := wire.AfterKey("person-reid", stream, "yolox-nano")
	kc := kafkaclient.New(testkit.Kafka(t), "test-chain-eo")
	defer kc.Close()
	topic := wire.AfterResultsTopic(stream, "yolox-nano", "person-reid")
	read := func() map[string]int {
		recs, err := kc.LastResults(t.Context(), topic, 4*frames)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, b := range recs {
			var r wire.Result
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if r.Status != wire.StatusOK {
				t.Fatalf("enriched result %s: %s %q", r.ID, r.Status, r.Error)
			}
			n[fmt.Sprintf("%s/%d", r.Camera, r.Seq)]++
		}
		return n
	}

	jpegs := ingest.SplitJPEGs(testkit.Media(t, "vtest_10s.mjpeg"))
	cl := gatewayClient(t, addr)
	pushed := make(chan error, 1)
	go func() {
		for i := range frames {
			f := apiclient.Frame{Camera: fmt.Sprintf("cam-%d", i%2), Seq: uint64(i/2 + 1), Image: jpegs[i%len(jpegs)], ContentType: "image/jpeg"}
			if _, err := cl.PushFrame(t.Context(), stream, f); err != nil {
				pushed <- err
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		pushed <- nil
	}()
	var pid int
	testkit.CheckFor(t, 2*time.Minute, 200*time.Millisecond, func() error {
		if n := len(read()); n < 10 {
			return fmt.Errorf("%d enriched results before the kill", n)
		}
		for _, r := range resources(t, gw).Runners {
			if r.Deployment == key {
				pid = r.PID
			}
		}
		if pid == 0 {
			return fmt.Errorf("no runner of %s", key)
		}
		return nil
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := len(read())
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	var n map[string]int
	testkit.CheckFor(t, 3*time.Minute, time.Second, func() error {
		if n = read(); len(n) < frames {
			return fmt.Errorf("%d of %d frames have an enriched result", len(n), frames)
		}
		return nil
	})
	for f, c := range n {
		if c != 1 {
			t.Errorf("frame %s has %d enriched results, want exactly one", f, c)
		}
	}
	t.Logf("second stage's runner (pid %d) killed after %d enriched results; %d frames, each with one", pid, killedAt, len(n))
}
