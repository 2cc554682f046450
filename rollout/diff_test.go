package rollout_test

import (
	"context"
	"encoding/json"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// bigDiffResults is the figure: a results topic the old diff refused (it read at
// most 200,000 results a side).
const bigDiffResults = 300_000

// diffHeapLimit bounds the heap while the diff reads 2 × 300,000 results (about 90 MB of
// JSON): the join holds the frames waiting for their other side, not the topics.
const diffHeapLimit = 96 << 20

// frames of the big diff: frame i is on partition i%2 at offset i/2. The primary lacks
// every frame i%100 == 1, the shadow every i%100 == 2; a person on every frame, which the
// shadow misplaces on every 50th; a car on every 10th, which the shadow also sees (wrongly)
// on every 7th.
type bigFrames struct{ both, onlyP, onlyC, personP, personC, personM, carP, carC, carM int }

var (
	personBox = wire.Box{X1: 0, Y1: 0, X2: 10, Y2: 10}
	wrongBox  = wire.Box{X1: 20, Y1: 20, X2: 30, Y2: 30}
	carBox    = wire.Box{X1: 100, Y1: 100, X2: 200, Y2: 150}
)

// results of frame i: the primary's and the shadow's (nil: none).
func bigResults(i int, all bool) (p, c []wire.Detection) {
	if all || i%100 != 1 {
		p = []wire.Detection{{ClassID: 0, Label: "person", Score: 0.9, Box: personBox}}
		if i%10 == 0 {
			p = append(p, wire.Detection{ClassID: 2, Label: "car", Score: 0.8, Box: carBox})
		}
	}
	if all || i%100 != 2 {
		box := personBox
		if i%50 == 0 {
			box = wrongBox
		}
		c = []wire.Detection{{ClassID: 0, Label: "person", Score: 0.9, Box: box}}
		if i%10 == 0 || i%7 == 0 {
			c = append(c, wire.Detection{ClassID: 2, Label: "car", Score: 0.8, Box: carBox})
		}
	}
	return p, c
}

func (b *bigFrames) count(i int, p, c []wire.Detection) {
	switch {
	case p == nil:
		b.onlyC++
		return
	case c == nil:
		b.onlyP++
		return
	}
	b.both++
	for _, d := range p {
		if d.ClassID == 0 {
			b.personP++
		} else {
			b.carP++
		}
	}
	for _, d := range c {
		if d.ClassID == 0 {
			b.personC++
		} else {
			b.carC++
		}
	}
	if i%50 != 0 {
		b.personM++
	}
	if i%10 == 0 {
		b.carM++
	}
}

// Issue #22 item 6: a shadow diff on a busy stream. 300,000 results a side on a real
// broker: the loop's diff reads them once, joins them by frame with at most MaxPending
// waiting, counts what was written, under a bounded heap; a GET answers from it; the next
// pass reads only what is new.
func TestShadowDiffOfABusyStream(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	st := e.stream(t, "busy", 2)
	primary, sh := e.primaryAndShadow(t, st)
	prod := resultsProducer(t)
	var want bigFrames
	bytes, base := 0, time.Now()
	write := func(from, to int, all bool) {
		t.Helper()
		var batch []*sarama.ProducerMessage
		add := func(topic string, i int, digest string, ds []wire.Detection) {
			part, off := int32(i%2), int64(i/2)
			r := wire.Result{ID: wire.ResultID(st.Name, "cam", uint64(i), digest), Stream: st.Name, Camera: "cam", Seq: uint64(i),
				Function: sh.Function, Digest: digest, Status: wire.StatusOK, Detections: ds,
				Timings: wire.Timings{EndToEnd: float64(10 + i%90)}, Source: wire.Source{Partition: part, Offset: off}}
			v, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			bytes += len(v)
			// Written over 30 s from when the test began (however long writing takes here),
			// so that the 5 minutes of the diff's window hold them all.
			at := base.Add(time.Duration(i) * 100 * time.Microsecond)
			batch = append(batch, &sarama.ProducerMessage{Topic: topic, Partition: part, Key: sarama.StringEncoder("cam"),
				Value: sarama.ByteEncoder(v), Timestamp: at})
		}
		flush := func() {
			if err := prod.SendMessages(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
		for i := from; i < to; i++ {
			p, c := bigResults(i, all)
			want.count(i, p, c)
			if p != nil {
				add(st.ResultsTopic, i, primary.Digest, p)
			}
			if c != nil {
				add(sh.ResultsTopic(st), i, sh.Digest, c)
			}
			if len(batch) >= 10_000 {
				flush()
			}
		}
		flush()
	}
	began := time.Now()
	write(0, bigDiffResults, false)
	t.Logf("wrote %d frames' results (%d primary, %d shadow, %.0f MB of JSON) in %.1f s",
		bigDiffResults, want.both+want.onlyP, want.both+want.onlyC, float64(bytes)/1e6, time.Since(began).Seconds())

	// The loop runs (it would pass every hour): GETs answer from its diff.
	loopCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.svc.ShadowGauges(time.Hour).Run(loopCtx) }()
	defer func() { stop(); wg.Wait() }()
	testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !e.svc.ShadowLoopRunning() {
			return errorString("the loop does not run yet")
		}
		return nil
	})

	runtime.GC()
	var peak uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	began = time.Now()
	d, err := e.svc.DiffShadow(ctx, st.Name, 0)
	took := time.Since(began)
	close(done)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	stats, ok := e.svc.ShadowJoinStats(st.Name)
	if !ok {
		t.Fatal("DiffShadow with the loop running kept no diff")
	}
	t.Logf("first pass: %d + %d results in %.1f s; at most %d frames waiting (bound %d); peak heap %.1f MiB (limit %d MiB)",
		stats.Read[0], stats.Read[1], took.Seconds(), stats.MaxPending, rollout.MaxPending, float64(peak)/(1<<20), diffHeapLimit>>20)
	if stats.Read != [2]int{want.both + want.onlyP, want.both + want.onlyC} || stats.Pending != 0 || stats.MaxPending > rollout.MaxPending {
		t.Fatalf("join stats %+v; want every result read once, none waiting, at most %d waiting", stats, rollout.MaxPending)
	}
	if peak > diffHeapLimit {
		t.Fatalf("peak heap %d MiB while diffing, want at most %d MiB", peak>>20, diffHeapLimit>>20)
	}
	checkBigDiff(t, d, want)
	if got := gauge(t, "diplip_shadow_frames", st.Name, "both"); got != float64(want.both) {
		t.Fatalf("diplip_shadow_frames{side=both} %v, want %d", got, want.both)
	}

	// 10 frames more, both sides: the next pass reads those 10 a side.
	write(bigDiffResults, bigDiffResults+10, true)
	d, err = e.svc.DiffShadow(ctx, st.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if stats, _ = e.svc.ShadowJoinStats(st.Name); stats.Read != [2]int{10, 10} || stats.Pending != 0 {
		t.Fatalf("second pass: %+v; want 10 results read a side", stats)
	}
	checkBigDiff(t, d, want)

}

func checkBigDiff(t *testing.T, d rollout.Diff, want bigFrames) {
	t.Helper()
	r := d.Report
	if r.Frames != want.both || r.OnlyPrimary != want.onlyP || r.OnlyCandidate != want.onlyC ||
		d.Primary.Results != want.both+want.onlyP || d.Candidate.Results != want.both+want.onlyC || len(r.Classes) != 2 {
		t.Fatalf("diff: %d frames, only %d/%d, results %d/%d, %d classes; want %+v",
			r.Frames, r.OnlyPrimary, r.OnlyCandidate, d.Primary.Results, d.Candidate.Results, len(r.Classes), want)
	}
	for _, c := range []struct {
		got     compare.ClassStats
		label   string
		p, c, m int
	}{{r.Classes[0], "person", want.personP, want.personC, want.personM}, {r.Classes[1], "car", want.carP, want.carC, want.carM}} {
		g := c.got
		if g.Label != c.label || g.Primary != c.p || g.Candidate != c.c || g.Matched != c.m ||
			math.Abs(g.Precision-float64(c.m)/float64(c.c)) > 1e-12 || math.Abs(g.Recall-float64(c.m)/float64(c.p)) > 1e-12 {
			t.Fatalf("class %s: %+v; want primary %d candidate %d matched %d", c.label, g, c.p, c.c, c.m)
		}
	}
	if len(d.Primary.Digests) != 1 || d.To.IsZero() || d.To.Sub(d.From) < 5*time.Minute {
		t.Fatalf("diff %+v", d)
	}
	// Latencies 10..99 ms: the percentiles come from the histogram, within 1%.
	if p := r.Primary; p.Frames != want.both || p.P50 < 53 || p.P50 > 56 || p.P99 < 97 || p.P99 > 100 {
		t.Fatalf("primary latency %+v", p)
	}
}

// gauge is the value of the gauge name of stream and side (or class).
func gauge(t *testing.T, name, stream, other string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var s, o string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "stream":
					s = l.GetValue()
				case "side", "class":
					o = l.GetValue()
				}
			}
			if s == stream && o == other {
				return m.GetGauge().GetValue()
			}
		}
	}
	return math.NaN()
}

// resultsProducer writes result records to the partition they name, in batches.
func resultsProducer(t *testing.T) sarama.SyncProducer {
	t.Helper()
	cfg := kafkaclient.NewConfig("test-results")
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Compression = sarama.CompressionLZ4
	cfg.Producer.Flush.Bytes = 512 << 10
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	prod, err := sarama.NewSyncProducer(testkit.Kafka(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	return prod
}

// A shadow diff covers the last 5 minutes of results; a frame one side has waits while the
// other side has not got past it (in flight), and counts as one side's once the other side
// went past it in its partition or is more than a minute further in time. The loop's diff
// and one read at another IoU (the recent window read at once) agree.
func TestShadowDiffWindowAndWaiting(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	st := e.stream(t, "win", 2)
	primary, sh := e.primaryAndShadow(t, st)
	now := time.Now()
	var batch []*sarama.ProducerMessage
	add := func(topic, digest string, i int, at time.Time) {
		r := wire.Result{Stream: st.Name, Camera: "cam", Seq: uint64(i), Function: sh.Function, Digest: digest, Status: wire.StatusOK,
			Detections: []wire.Detection{{ClassID: 0, Label: "person", Box: personBox}}, Source: wire.Source{Partition: int32(i % 2), Offset: int64(i / 2)}}
		v, _ := json.Marshal(r)
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Partition: int32(i % 2), Value: sarama.ByteEncoder(v), Timestamp: at})
	}
	for i := range 1110 {
		at, p, c := now.Add(-3*time.Minute), true, true
		switch {
		case i < 100: // written 5.5 minutes ago: read, but out of the window
			at = now.Add(-330 * time.Second)
		case i == 1099: // the shadow never gets past it on partition 1, but is 3 minutes further
			c = false
		case i >= 1100: // now: the shadow's last results are on partition 0, and not 1108's
			at, c = now, i%2 == 0 && i != 1108
		}
		if p {
			add(st.ResultsTopic, primary.Digest, i, at)
		}
		if c {
			add(sh.ResultsTopic(st), sh.Digest, i, at)
		}
	}
	if err := resultsProducer(t).SendMessages(batch); err != nil {
		t.Fatal(err)
	}
	check := func(d rollout.Diff, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		// 100..1098 and 1100..1106 even; 1099 one-sided; 1101..1109 odd and 1108 in flight.
		if r := d.Report; r.Frames != 999+4 || r.OnlyPrimary != 1 || r.OnlyCandidate != 0 || d.Primary.Results != 1004 || d.Candidate.Results != 1003 {
			t.Fatalf("diff %d frames, only %d/%d, results %d/%d; want 1003, 1/0, 1004/1003",
				r.Frames, r.OnlyPrimary, r.OnlyCandidate, d.Primary.Results, d.Candidate.Results)
		}
	}
	check(e.svc.DiffShadow(ctx, st.Name, 0.4)) // no loop: the recent window read at once

	loopCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.svc.ShadowGauges(time.Hour).Run(loopCtx) }()
	defer func() { stop(); wg.Wait() }()
	testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !e.svc.ShadowLoopRunning() {
			return errorString("the loop does not run yet")
		}
		return nil
	})
	check(e.svc.DiffShadow(ctx, st.Name, 0))
	if stats, _ := e.svc.ShadowJoinStats(st.Name); stats.Read != [2]int{1110, 1103} {
		t.Fatalf("join stats %+v; want every result read", stats)
	}
	d, err := e.svc.DiffShadow(ctx, st.Name, 0)
	check(d, err)
	if stats, _ := e.svc.ShadowJoinStats(st.Name); d.Pending != 6 || gauge(t, "diplip_shadow_frames", st.Name, "pending") != 6 ||
		stats.Pending != 6 || stats.Read != [2]int{0, 0} {
		t.Fatalf("join stats %+v after a second pass; want 6 frames in flight, nothing new read", stats)
	}
}

// A replay diff streams both topics through the join: frames outside the replay's window
// are left out, a result written twice counts once, a frame the replay lacks counts as the
// primary's only, a result of another digest is not the replay's.
func TestReplayDiffStreams(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	st := e.stream(t, "rd", 1)
	e.push(t, st, 4)
	r, err := e.svc.StartReplay(ctx, rollout.ReplayRequest{Stream: st.Name, Ref: e.ref, Name: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	captured := time.Now().Add(-time.Hour)
	var batch []*sarama.ProducerMessage
	add := func(topic, digest string, off int64, at time.Time, boxes ...wire.Box) {
		res := wire.Result{Stream: st.Name, Camera: "c", Seq: uint64(off + 1), CaptureTime: captured.Add(time.Duration(off) * time.Second),
			Function: r.Function, Digest: digest, Status: wire.StatusOK, Source: wire.Source{Partition: 0, Offset: off}}
		for _, b := range boxes {
			res.Detections = append(res.Detections, wire.Detection{ClassID: 0, Label: "person", Box: b})
		}
		v, _ := json.Marshal(res)
		batch = append(batch, &sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.ByteEncoder(v), Timestamp: at})
	}
	for off := range int64(4) {
		add(st.ResultsTopic, "sha256:live", off, captured.Add(time.Minute), personBox)
	}
	add(st.ResultsTopic, "sha256:live", 0, captured.Add(2*time.Minute), personBox) // at least once
	add(st.ResultsTopic, "sha256:live", 9, captured.Add(2*time.Minute), personBox) // after the window
	now := time.Now()
	add(r.ResultsTopic(st), r.Digest, 0, now, personBox)
	add(r.ResultsTopic(st), r.Digest, 1, now, personBox)
	add(r.ResultsTopic(st), "sha256:other", 2, now, personBox)
	add(r.ResultsTopic(st), r.Digest, 3, now, wrongBox)
	if err := resultsProducer(t).SendMessages(batch); err != nil {
		t.Fatal(err)
	}
	d, err := e.svc.DiffReplay(ctx, st.Name, "r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	o := d.Report.Overall
	if d.Report.Frames != 3 || d.Report.OnlyPrimary != 1 || d.Report.OnlyCandidate != 0 || d.Primary.Results != 4 || d.Candidate.Results != 3 ||
		o.Primary != 3 || o.Candidate != 3 || o.Matched != 2 || len(d.Primary.Digests) != 1 || d.Primary.Digests[0] != "sha256:live" ||
		d.Candidate.Kind != "replay" || d.Candidate.Name != "r1" || !d.From.IsZero() {
		t.Fatalf("replay diff %+v", d)
	}
}

// primaryAndShadow deploys the example function on st and a shadow of it.
func (e *env) primaryAndShadow(t *testing.T, st wire.Stream) (primary, shadow wire.Deployment) {
	t.Helper()
	primary, err := e.svc.Deploy(context.Background(), rollout.Request{Ref: e.ref, Stream: st.Name})
	if err != nil {
		t.Fatal(err)
	}
	if shadow, err = e.svc.Deploy(context.Background(), rollout.Request{Ref: e.ref, Stream: st.Name, Role: wire.RoleShadow}); err != nil {
		t.Fatal(err)
	}
	return primary, shadow
}
