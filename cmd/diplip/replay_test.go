package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// variantFunction copies the example function with another score threshold.
func variantFunction(t *testing.T, threshold string) string {
	t.Helper()
	src, dst := "../../functions/examples/yolox-nano", t.TempDir()
	for _, f := range []string{"function.yaml", "coco80.txt", "yolox_nano.onnx"} {
		b, err := os.ReadFile(filepath.Join(src, f)) // follows the model's link into .cache
		if err != nil {
			t.Fatal(err)
		}
		if f == "function.yaml" {
			b = []byte(strings.Replace(string(b), "score_threshold: 0.3", "score_threshold: "+threshold, 1))
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// topicResults reads every ok result on a results topic.
func topicResults(t *testing.T, topic string) []wire.Result {
	t.Helper()
	kc := kafkaclient.New(testkit.Kafka(t), "test-replay-read")
	defer kc.Close()
	var rs []wire.Result
	err := kc.ReadTopic(context.Background(), topic, 0, func(m *sarama.ConsumerMessage) error {
		var r wire.Result
		if err := json.Unmarshal(m.Value, &r); err != nil {
			return err
		}
		if r.Status == wire.StatusOK {
			rs = append(rs, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func bySeq(rs []wire.Result) map[uint64]wire.Result {
	m := map[uint64]wire.Result{}
	for _, r := range rs {
		m[r.Seq] = r
	}
	return m
}

func sameBox(a, b wire.Box, tol float64) bool {
	return math.Abs(float64(a.X1-b.X1)) <= tol && math.Abs(float64(a.Y1-b.Y1)) <= tol &&
		math.Abs(float64(a.X2-b.X2)) <= tol && math.Abs(float64(a.Y2-b.Y2)) <= tol
}

// sameDetections reports whether two frames' detections are the same list, boxes to tol.
func sameDetections(a, b []wire.Detection, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ClassID != b[i].ClassID || !sameBox(a[i].Box, b[i].Box, tol) {
			return false
		}
	}
	return true
}

func diffJSON(t *testing.T, args ...string) api.Diff {
	t.Helper()
	var d api.Diff
	if err := json.Unmarshal([]byte(run(t, 0, append([]string{"fn", "diff", "-o", "json"}, args...)...)), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// Issue #15 end to end through the binary, against real Kafka, NATS, registry and ONNX
// Runtime: a shadow of the same image agrees perfectly and leaves the primary's results as
// they were; a replay of the same image reproduces the live results; a replay of a variant
// with a higher score threshold gives the precision and recall computed here from the two
// results topics; the shadow is promoted; bad input gets exit codes 2 and 3.
func TestReplayShadowDiffPromote(t *testing.T) {
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr, "--idle-timeout", "3s")
	stream := testkit.Name("rs")
	run(t, 0, "stream", "create", stream, "--partitions", "1", gw)
	store := t.TempDir()
	v1, v2 := addr+"/fn/yolox-nano:v1", addr+"/fn/yolox-nano:t50"
	run(t, 0, "fn", "build", "../../functions/examples/yolox-nano", "-t", v1, "--store", store, "--push")
	run(t, 0, "fn", "build", variantFunction(t, "0.5"), "-t", v2, "--store", store, "--push")

	images := []struct{ media, ct string }{
		{"vtest_frame600.jpg", "image/jpeg"}, {"messi5.jpg", "image/jpeg"}, {"astronaut.png", "image/png"}, {"chelsea.png", "image/png"},
	}
	pushAll := func() {
		for _, im := range images {
			pushFrame(t, addr, stream, "cam", im.ct, im.media)
		}
	}
	n := len(images)
	// The primary processes every frame (replay policy), so nothing depends on timing.
	run(t, 0, "fn", "deploy", v1, "--stream", stream, "--policy", "replay", gw)
	pushAll()
	waitResults(t, gw, stream, n)

	// A shadow of the same image next to it; the same frames again.
	out := run(t, 0, "fn", "deploy", v1, "--stream", stream, "--shadow", gw)
	if !strings.Contains(out, "shadow") {
		t.Fatalf("deploy --shadow said: %s", out)
	}
	pushAll()
	primary := waitResults(t, gw, stream, 2*n)
	slices.SortFunc(primary, func(a, b wire.Result) int { return int(a.Seq) - int(b.Seq) })
	for i := range n { // the primary's results with a shadow beside it are those without
		if !sameDetections(primary[i].Detections, primary[n+i].Detections, 1e-4) {
			t.Fatalf("%s: primary results with a shadow %v, without %v", images[i].media, primary[n+i].Detections, primary[i].Detections)
		}
	}
	var shadow api.Diff
	testkit.CheckFor(t, 90*time.Second, time.Second, func() error {
		shadow = diffJSON(t, stream, "--shadow", gw)
		if shadow.Frames != n {
			return fmt.Errorf("shadow diff over %d frames, want %d: %+v", shadow.Frames, n, shadow)
		}
		return nil
	})
	o := shadow.Overall
	if o.Precision != 1 || o.Recall != 1 || o.CountDelta != 0 || shadow.OnlyPrimary != 0 || shadow.OnlyCandidate != 0 || o.Primary == 0 {
		t.Fatalf("a shadow of the same image: %+v", shadow)
	}
	for _, c := range shadow.Classes {
		if c.CountDelta != 0 || c.Precision != 1 || c.Recall != 1 {
			t.Fatalf("class %s: %+v", c.Label, c)
		}
	}
	if tbl := run(t, 0, "fn", "diff", stream, "--shadow", gw); !strings.Contains(tbl, "PRECISION") || !strings.Contains(tbl, "person") {
		t.Fatalf("diff table:\n%s", tbl)
	}

	// A replay of the same image over everything retained reproduces the live results.
	var same replaySummary
	if err := json.Unmarshal([]byte(run(t, 0, "replay", stream, "--fn", v1, "--name", "same", "-o", "json", gw)), &same); err != nil {
		t.Fatal(err)
	}
	if same.State != api.ReplayDone || same.Total != int64(2*n) || same.Processed != same.Total {
		t.Fatalf("replay summary %+v", same)
	}
	live := bySeq(primary)
	replayed := topicResults(t, same.ResultsTopic)
	if len(bySeq(replayed)) != 2*n {
		t.Fatalf("%d replay results, want %d", len(replayed), 2*n)
	}
	for _, r := range replayed {
		if r.Digest != same.Digest || !sameDetections(r.Detections, live[r.Seq].Detections, 1e-4) {
			t.Fatalf("seq %d: replay %s %v, live %v", r.Seq, r.Digest, r.Detections, live[r.Seq].Detections)
		}
	}

	// A replay of the variant: the diff's precision and recall are what the two topics say.
	run(t, 0, "replay", stream, "--fn", v2, "--name", "t50", gw)
	d := diffJSON(t, stream, "--replay", "t50", gw)
	cand := bySeq(topicResults(t, "diplip.results."+stream+".replay.t50"))
	var matched, nPrim, nCand int
	for seq, p := range live {
		c := cand[seq]
		nPrim += len(p.Detections)
		nCand += len(c.Detections)
		used := make([]bool, len(p.Detections))
		for _, cd := range c.Detections { // the variant's boxes are the primary's with a score ≥ 0.5
			for i, pd := range p.Detections {
				if !used[i] && pd.ClassID == cd.ClassID && sameBox(pd.Box, cd.Box, 1e-3) {
					used[i] = true
					matched++
					break
				}
			}
		}
	}
	wantP, wantR := float64(matched)/float64(nCand), float64(matched)/float64(nPrim)
	if d.Frames != 2*n || math.Abs(d.Overall.Precision-wantP) > 1e-9 || math.Abs(d.Overall.Recall-wantR) > 1e-9 ||
		d.Overall.CountDelta != nCand-nPrim || nCand >= nPrim {
		t.Fatalf("diff %+v; want precision %v recall %v delta %d over %d frames", d, wantP, wantR, nCand-nPrim, 2*n)
	}
	t.Logf("replay same: %d frames in %.1f s (%.1f fps); replay t50 vs primary: precision %.3f recall %.3f F1 %.3f, %d detections vs %d",
		same.Total, same.ElapsedS, same.FPS, d.Overall.Precision, d.Overall.Recall, d.Overall.F1, nCand, nPrim)
	var ls []api.Replay
	if err := json.Unmarshal([]byte(run(t, 0, "replay", "ls", "-o", "json", gw)), &ls); err != nil || len(ls) != 2 {
		t.Fatalf("replay ls: %+v, %v", ls, err)
	}
	testkit.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error { // done replays scale to zero
		for _, dep := range resources(t, gw).Deployments {
			if strings.Contains(dep.Key, ".replay.") && len(dep.Runners) > 0 {
				return fmt.Errorf("replay %s still has runners %v", dep.Key, dep.Runners)
			}
		}
		return nil
	})

	// Promote: the shadow moves to the variant, then becomes the primary.
	run(t, 0, "fn", "deploy", v2, "--stream", stream, "--shadow", gw)
	var promoted api.Deployment
	if err := json.Unmarshal([]byte(run(t, 0, "fn", "promote", stream, "-o", "json", gw)), &promoted); err != nil {
		t.Fatal(err)
	}
	if promoted.Digest != d.Candidate.Digests[0] || promoted.Role != "primary" || promoted.Generation != 2 {
		t.Fatalf("promoted %+v; want the variant's digest %s", promoted, d.Candidate.Digests[0])
	}
	var fns []fnRow
	if err := json.Unmarshal([]byte(run(t, 0, "fn", "ls", "-o", "json", gw)), &fns); err != nil || len(fns) != 1 || fns[0].Digest != promoted.Digest {
		t.Fatalf("after promote, fn ls: %+v, %v (want the function on the variant's digest)", fns, err)
	}
	for _, dep := range fns[0].Deployments {
		if dep.Role == "shadow" {
			t.Fatalf("the shadow is still deployed after promote: %+v", dep)
		}
	}

	// Bad input.
	if msg := run(t, 2, "fn", "promote", stream, gw); !strings.Contains(msg, "no shadow") {
		t.Fatalf("promote without a shadow: %s", msg)
	}
	run(t, 3, "replay", "nope", "--fn", v1, gw)
	run(t, 3, "replay", stream, "--fn", addr+"/fn/missing:v1", gw)
	if msg := run(t, 2, "replay", stream, "--fn", v1, "--from", "2030-01-01T00:00:00Z", "--to", "2029-01-01T00:00:00Z", gw); !strings.Contains(msg, "not before") {
		t.Fatalf("from after to: %s", msg)
	}
	if msg := run(t, 2, "replay", stream, "--fn", v1, "--from", "2020-01-01T00:00:00Z", gw); !strings.Contains(msg, "holds frames from") {
		t.Fatalf("from outside retention: %s", msg)
	}
	other := testkit.Name("solo")
	run(t, 0, "stream", "create", other, gw)
	if msg := run(t, 2, "fn", "deploy", v1, "--stream", other, "--shadow", gw); !strings.Contains(msg, "no primary deployment") {
		t.Fatalf("a shadow without a primary: %s", msg)
	}
	if tbl := run(t, 0, "stream", "ls", gw); !strings.Contains(tbl, "WINDOW") || !strings.Contains(tbl, "→") {
		t.Fatalf("stream ls without the retention window:\n%s", tbl)
	}
	run(t, 0, "replay", "rm", "same", gw)
	run(t, 0, "replay", "rm", "t50", gw)
}
