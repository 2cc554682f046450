package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// `diplip results STREAM --after FIRST --fn FUNCTION` (issue #24): a second stage's
// enriched results, from its own durable topic and live over NATS on its own subject.
// Asking for one that is not deployed is 404 naming the second stages there (exit 3);
// --fn without --after is a usage error (exit 2). Followed from now, every frame pushed
// gets its enriched result live, and the stream's own live results carry none of them;
// the durable history through the binary holds the same results.
func TestChainResultsOfASecondStage(t *testing.T) {
	const frames = 20
	addr, gw, stream, det, reid := chainUp(t, "chain-res")
	run(t, 0, "fn", "deploy", det, "--stream", stream, "--min", "0", "--max", "1", "--policy", "replay", gw)

	if out := run(t, 3, "results", stream, "--after", "yolox-nano", "--fn", "person-reid", gw); !strings.Contains(out, "second stages there: none") {
		t.Fatalf("results of a second stage that is not deployed: %s", out)
	}
	if out := run(t, 2, "results", stream, "--fn", "person-reid", gw); !strings.Contains(out, "--after FIRST") {
		t.Fatalf("results --fn without --after: %s", out)
	}
	run(t, 0, "fn", "deploy", reid, "--stream", stream, "--after", "yolox-nano", "--classes", "person", "--min-size", "60",
		"--min", "0", "--max", "1", "--policy", "replay", gw)
	for _, args := range [][]string{{"--after", "yolox-nano", "--fn", "nanodet"}, {"--after", "nanodet"}} {
		out := run(t, 3, append([]string{"results", stream, gw}, args...)...)
		if !strings.Contains(out, "second stages there: yolox-nano → person-reid") {
			t.Fatalf("results %v: %s; want a 404 naming the second stage there", args, out)
		}
	}

	// Both followed from now (last 0): whatever comes is live, from NATS.
	cl := gatewayClient(t, addr)
	ctx, cancel := context.WithCancel(t.Context())
	var mu sync.Mutex
	enriched, own := map[string][]api.Result{}, map[string][]api.Result{} // by camera/seq
	var wg sync.WaitGroup
	follow := func(into map[string][]api.Result, results func(func(api.Result) error) error) {
		wg.Go(func() {
			if err := results(func(r api.Result) error {
				mu.Lock()
				defer mu.Unlock()
				k := fmt.Sprintf("%s/%d", r.Camera, r.Seq)
				into[k] = append(into[k], r)
				return nil
			}); err != nil {
				t.Errorf("follow: %v", err)
			}
		})
	}
	follow(enriched, func(fn func(api.Result) error) error {
		return cl.ResultsAfter(ctx, stream, "yolox-nano", "person-reid", 0, true, fn)
	})
	follow(own, func(fn func(api.Result) error) error { return cl.Results(ctx, stream, 0, true, fn) })
	defer func() { cancel(); wg.Wait() }()
	count := func(m map[string][]api.Result, camera string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for k := range m {
			if strings.HasPrefix(k, camera+"/") {
				n++
			}
		}
		return n
	}

	// A warm-up camera until both follows have had a live result (so both are subscribed),
	// then the camera this test counts.
	jpegs := ingest.SplitJPEGs(testkit.Media(t, "vtest_10s.mjpeg"))
	push := func(camera string, seq uint64) {
		t.Helper()
		if _, err := cl.PushFrame(t.Context(), stream, apiclient.Frame{Camera: camera, Seq: seq, Image: jpegs[int(seq)%len(jpegs)], ContentType: "image/jpeg"}); err != nil {
			t.Fatal(err)
		}
	}
	var warm uint64
	testkit.CheckFor(t, 3*time.Minute, 500*time.Millisecond, func() error {
		warm++
		push("warm", warm)
		if count(enriched, "warm") == 0 || count(own, "warm") == 0 {
			return fmt.Errorf("live results so far: %d enriched, %d of the stream's own", count(enriched, "warm"), count(own, "warm"))
		}
		return nil
	})
	for seq := uint64(1); seq <= frames; seq++ {
		push("live", seq)
	}
	testkit.CheckFor(t, 3*time.Minute, time.Second, func() error {
		if n, m := count(enriched, "live"), count(own, "live"); n < frames || m < frames {
			return fmt.Errorf("live: %d of %d frames with an enriched result, %d with the stream's own", n, frames, m)
		}
		return nil
	})
	cancel()
	wg.Wait()

	var crops int
	for k, rs := range enriched {
		for _, r := range rs {
			if r.Function != "person-reid" || len(r.Stages) != 2 || r.Stages[0].Function != "yolox-nano" || r.Stages[1].Function != "person-reid" || r.Status != api.StatusOK {
				t.Fatalf("live enriched result %s: function %s, stages %+v, %s %q", k, r.Function, r.Stages, r.Status, r.Error)
			}
			for _, x := range r.Detections {
				if len(x.Embedding) > 0 {
					crops++
				}
			}
		}
	}
	for k, rs := range own {
		for _, r := range rs {
			if r.Function != "yolox-nano" || len(r.Stages) != 0 {
				t.Fatalf("the stream's own live results carry %s (function %s, stages %+v): a second stage's results must stay on its own subject", k, r.Function, r.Stages)
			}
		}
	}
	if crops == 0 {
		t.Fatalf("%d live enriched results and not one embedded crop", len(enriched))
	}

	// The durable history through the binary: NDJSON of the same enriched results (--fn
	// left out: one second stage runs after yolox-nano), the last of them the topic's.
	kc := kafkaclient.New(testkit.Kafka(t), "test-chain-results")
	defer kc.Close()
	testkit.CheckFor(t, 30*time.Second, time.Second, func() error {
		out := run(t, 0, "results", stream, "--after", "yolox-nano", "--last", "5", "-o", "json", gw)
		recs, err := kc.LastResults(t.Context(), wire.AfterResultsTopic(stream, "yolox-nano", "person-reid"), 5)
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for _, b := range recs {
			var r wire.Result
			if err := json.Unmarshal(b, &r); err != nil {
				return err
			}
			want[r.ID] = true
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 5 || len(want) != 5 {
			return fmt.Errorf("results --after --last 5 -o json: %d lines, the topic's last 5 are %d:\n%s", len(lines), len(want), out)
		}
		for i, l := range lines {
			var got api.Result
			if err := json.Unmarshal([]byte(l), &got); err != nil {
				t.Fatalf("line %d: %v: %s", i, err, l)
			}
			if got.Function != "person-reid" || len(got.Stages) != 2 {
				t.Fatalf("line %d: %s is not an enriched result of person-reid: %s", i, got.ID, l)
			}
			if !want[got.ID] {
				return fmt.Errorf("line %d: %s is not among the topic's last 5 (%v)", i, got.ID, want)
			}
			if live := enriched[fmt.Sprintf("%s/%d", got.Camera, got.Seq)]; len(live) > 0 && live[0].ID != got.ID {
				t.Fatalf("line %d: %s from the topic, %s live", i, got.ID, live[0].ID)
			}
		}
		return nil
	})
	if out := run(t, 0, "results", stream, "--after", "yolox-nano", "--fn", "person-reid", "--last", "3", gw); !strings.Contains(out, "after yolox-nano:") || !strings.Contains(out, "embedded") {
		t.Fatalf("results --after as text: %s", out)
	}
	t.Logf("%d frames followed live: %d with an enriched result, %d with the stream's own (none enriched); %d embedded crops in the %d enriched results followed (warm-up included)",
		frames, count(enriched, "live"), count(own, "live"), crops, len(enriched))
}
