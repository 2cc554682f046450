package main

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// The remaining guarantees of a second stage (issue #24), through the binary, on YOLOX-Nano
// with the person re-id embedder after it:
//
//   - a replay of the second stage over a window of the first stage's stored results
//     (--from a time between two batches of frames) writes one enriched result per first
//     stage result of the window to its own topic, each person's embedding the live second
//     stage's for the same frame (cosine > 0.999), and fn diff --replay says so;
//   - a shadow of the second stage deploys next to it, writes enriched results of the
//     frames that come after it to its own topic, fn diff --shadow compares its embeddings
//     with the live ones, and undeploying it removes it with its topic;
//   - undeploying the second stage removes its results topic from the broker.
func TestChainReplayShadowAndUndeploy(t *testing.T) {
	const batch = 10
	addr, gw, stream, det, reid := chainUp(t, "chain-rp")
	run(t, 0, "fn", "deploy", det, "--stream", stream, "--min", "0", "--max", "1", "--policy", "replay", "--track", gw)
	run(t, 0, "fn", "deploy", reid, "--stream", stream, "--after", "yolox-nano", "--classes", "person", "--min-size", "60",
		"--min", "0", "--max", "1", "--policy", "replay", gw)
	if msg := run(t, 3, "replay", stream, "--fn", reid, "--after", "nanodet", gw); !strings.Contains(msg, "deployed there: yolox-nano") {
		t.Fatalf("replay after a function not deployed: %s", msg)
	}

	kc := kafkaclient.New(testkit.Kafka(t), "test-chain-replay")
	defer kc.Close()
	cl := gatewayClient(t, addr)
	jpegs := ingest.SplitJPEGs(testkit.Media(t, "vtest_10s.mjpeg"))
	pushed := 0
	push := func(n int) {
		t.Helper()
		for range n {
			if _, err := cl.PushFrame(t.Context(), stream, apiclient.Frame{Camera: "vtest", Image: jpegs[pushed%len(jpegs)], ContentType: "image/jpeg"}); err != nil {
				t.Fatal(err)
			}
			pushed++
		}
	}
	liveTopic := wire.AfterResultsTopic(stream, "yolox-nano", "person-reid")
	// Two batches of frames, a whole second apart: the window starts between them.
	push(batch)
	waitChainResults(t, kc, stream, "diplip.results."+stream, batch)
	from := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(from) + 100*time.Millisecond)
	push(batch)
	live := waitChainResults(t, kc, stream, liveTopic, 2*batch)
	if msg := run(t, 2, "replay", stream, "--fn", reid, "--after", "yolox-nano", "--from", "2020-01-01T00:00:00Z", gw); !strings.Contains(msg, "holds first-stage results from") {
		t.Fatalf("replay before the stored results: %s", msg)
	}

	// The replay of the second stage over the second batch's first-stage results.
	var sum struct {
		api.Replay
		FPS float64 `json:"fps"`
	}
	out := run(t, 0, "replay", stream, "--fn", reid, "--after", "yolox-nano", "--from", from.UTC().Format(time.RFC3339), "--name", "reid-r1", "-o", "json", gw)
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.State != api.ReplayDone || sum.After != "yolox-nano" ||
		sum.ResultsTopic != "diplip.results."+stream+".replay.reid-r1" {
		t.Fatalf("replay --after: %v\n%s", err, out)
	}
	replayed := waitChainResults(t, kc, stream, sum.ResultsTopic, batch)
	if len(replayed) != batch {
		t.Fatalf("%d replayed results, want one per first-stage result of the window (%d)", len(replayed), batch)
	}
	var pairs, people int
	minCos := 1.0
	for src, r := range replayed {
		l, ok := live[src]
		if !ok || l.Seq <= batch || r.Status != wire.StatusOK || r.Function != "person-reid" || len(r.Stages) != 2 || len(l.Detections) != len(r.Detections) {
			t.Fatalf("replayed result of frame %v (seq %d, %s %q, %d detections); live: %v (seq %d, %d detections)",
				src, r.Seq, r.Status, r.Error, len(r.Detections), ok, l.Seq, len(l.Detections))
		}
		for i, x := range r.Detections {
			if (x.Embedding == nil) != (l.Detections[i].Embedding == nil) || x.Box != l.Detections[i].Box {
				t.Fatalf("frame %v detection %d: replayed %+v, live %+v", src, i, x.Box, l.Detections[i].Box)
			}
			if x.Embedding != nil {
				people++
				c := cosine(x.Embedding, l.Detections[i].Embedding)
				minCos = min(minCos, c)
				pairs += btoi(c > 0.999)
			}
		}
	}
	if people == 0 || pairs != people {
		t.Fatalf("%d of %d replayed embeddings within cosine 0.999 of the live ones (lowest %.6f)", pairs, people, minCos)
	}
	var d api.Diff
	if err := json.Unmarshal([]byte(run(t, 0, "fn", "diff", stream, "--replay", "reid-r1", "-o", "json", gw)), &d); err != nil {
		t.Fatal(err)
	}
	if d.Frames != batch || d.OnlyPrimary != 0 || d.OnlyCandidate != 0 || d.Chain == nil || d.Chain.Embedded != people || d.Chain.CosineP10 < 0.999 {
		t.Fatalf("fn diff --replay of the second stage: %d frames (%d, %d one-sided), chain %+v; want %d frames, %d embeddings ≥ 0.999",
			d.Frames, d.OnlyPrimary, d.OnlyCandidate, d.Chain, batch, people)
	}
	t.Logf("replay of person-reid over %d first-stage results (from %s): %d people, embeddings cosine ≥ %.6f to the live ones; diff mean %.6f p10 %.6f",
		batch, from.Format(time.TimeOnly), people, minCos, d.Chain.CosineMean, d.Chain.CosineP10)

	// The shadow of the second stage.
	out = run(t, 0, "fn", "deploy", reid, "--stream", stream, "--after", "yolox-nano", "--shadow", gw)
	if !strings.Contains(out, "shadow of the second stage after yolox-nano") {
		t.Fatalf("fn deploy --after --shadow: %s", out)
	}
	if ls := run(t, 0, "fn", "ls", gw); !strings.Contains(ls, stream+" (yolox-nano → shadow") {
		t.Fatalf("fn ls does not show the shadow:\n%s", ls)
	}
	shadowTopic := wire.AfterShadowResultsTopic(stream, "yolox-nano", "person-reid")
	push(batch)
	shadowed := waitChainResults(t, kc, stream, shadowTopic, batch)
	live = waitChainResults(t, kc, stream, liveTopic, 3*batch)
	for src, r := range shadowed {
		if l, ok := live[src]; !ok || l.Seq <= 2*batch || r.Status != wire.StatusOK || len(r.Stages) != 2 {
			t.Fatalf("shadow's result of frame %v: seq %d, %s %q; live %v", src, r.Seq, r.Status, r.Error, ok)
		}
	}
	testkit.CheckFor(t, time.Minute, time.Second, func() error {
		if err := json.Unmarshal([]byte(run(t, 0, "fn", "diff", stream, "--shadow", "-o", "json", gw)), &d); err != nil {
			return err
		}
		if d.Frames != batch || d.Chain == nil || d.Chain.Embedded == 0 || d.Chain.CosineP10 < 0.999 || d.Primary.Kind != "after" {
			return fmt.Errorf("fn diff --shadow: %d frames, chain %+v", d.Frames, d.Chain)
		}
		return nil
	})
	if tbl := run(t, 0, "fn", "diff", stream, "--shadow", gw); !strings.Contains(tbl, "embeddings") || !strings.Contains(tbl, "cosine mean") {
		t.Fatalf("fn diff --shadow table:\n%s", tbl)
	}
	if msg := run(t, 2, "fn", "undeploy", "person-reid", "--stream", stream, "--after", "yolox-nano", gw); !strings.Contains(msg, "has a shadow") {
		t.Fatalf("undeploying a second stage with a shadow: %s", msg)
	}
	run(t, 0, "fn", "undeploy", "person-reid", "--stream", stream, "--shadow", gw)
	topicGone(t, kc, shadowTopic)

	// Undeploying the second stage removes its results topic.
	run(t, 0, "fn", "undeploy", "person-reid", "--stream", stream, "--after", "yolox-nano", gw)
	topicGone(t, kc, liveTopic)
	deps, err := cl.Deployments(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range deps {
		if x.Stream == stream && x.Role != "primary" && x.Role != "replay" {
			t.Fatalf("left after undeploy: %+v", x)
		}
	}
	run(t, 0, "replay", "rm", "reid-r1", gw)
	topicGone(t, kc, sum.ResultsTopic)
}

// waitChainResults waits until topic holds at least n results and returns them by the frame
// they are of (the last one of each frame).
func waitChainResults(t *testing.T, kc *kafkaclient.Client, stream, topic string, n int) map[wire.Source]wire.Result {
	t.Helper()
	byFrame := map[wire.Source]wire.Result{}
	testkit.CheckFor(t, 3*time.Minute, 500*time.Millisecond, func() error {
		recs, err := kc.LastResults(t.Context(), topic, 4*n)
		if err != nil {
			return err
		}
		clear(byFrame)
		for _, b := range recs {
			var r wire.Result
			if err := json.Unmarshal(b, &r); err != nil {
				return err
			}
			byFrame[r.Source] = r
		}
		if len(recs) < n {
			return fmt.Errorf("%d of %d results on %s", len(recs), n, topic)
		}
		if len(byFrame) != len(recs) {
			return fmt.Errorf("%d results on %s of %d frames: a frame has two", len(recs), topic, len(byFrame))
		}
		return nil
	})
	return byFrame
}

// topicGone waits until the broker no longer lists topic.
func topicGone(t *testing.T, kc *kafkaclient.Client, topic string) {
	t.Helper()
	testkit.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		if ok, err := kc.TopicExists(topic); err != nil || ok {
			return fmt.Errorf("topic %s still exists (%v)", topic, err)
		}
		return nil
	})
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
