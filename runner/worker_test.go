package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner"
)

// stream creates a frames and a results topic with the given partitions.
func stream(t *testing.T, partitions int32) ([]string, wire.Stream) {
	t.Helper()
	addrs, frames := testkit.Topic(t, partitions)
	_, results := testkit.Topic(t, partitions)
	return addrs, wire.Stream{Name: testkit.Name("s"), Topic: frames, ResultsTopic: results, Partitions: partitions}
}

func deployment(st wire.Stream, batch int) wire.Deployment {
	return wire.Deployment{Function: "det", Stream: st.Name, Digest: "r/fn@sha256:0123456789abcdef0123", Max: 2,
		Batch: batch, Device: "cpu", Policy: "replay"}
}

func produceFrames(t *testing.T, addrs []string, topic string, frames ...wire.Frame) {
	t.Helper()
	p, err := sarama.NewSyncProducer(addrs, kafkaclient.NewConfig("test-camera"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, f := range frames {
		if _, _, err := p.SendMessage(kafkaclient.FrameMessage(&f, topic)); err != nil {
			t.Fatal(err)
		}
	}
}

func frame(camera string, seq uint64, data []byte) wire.Frame {
	now := time.Now()
	return wire.Frame{Camera: camera, Seq: seq, CaptureTime: now, IngestTime: now, ContentType: wire.ContentJPEG, Data: data}
}

// results reads the results topic until want distinct frames have a result, and returns
// them by result id (a duplicate keeps the last copy).
func results(t *testing.T, addrs []string, topic string, want int) map[string]wire.Result {
	t.Helper()
	got := map[string]wire.Result{}
	for _, r := range allResults(t, addrs, topic, want) {
		got[r.ID] = r
	}
	return got
}

// startWorker runs a worker with its own Kafka client (as a runner process has) until
// the returned stop is called or the test ends.
func startWorker(t *testing.T, addrs []string, id string, cfg runner.WorkerConfig) (*runner.Worker, func()) {
	t.Helper()
	return startWorkerWith(t, addrs, kafkaclient.RunnerConfig(id), cfg)
}

// startWorkerWith is startWorker with the runner's Kafka config given.
func startWorkerWith(t *testing.T, addrs []string, kcfg *sarama.Config, cfg runner.WorkerConfig) (*runner.Worker, func()) {
	t.Helper()
	id := kcfg.ClientID
	kc := kafkaclient.NewWithConfig(addrs, kcfg)
	cfg.Kafka = kc
	w, err := runner.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker %s: %v", id, err)
			}
			kc.Close()
		})
	}
	t.Cleanup(stop)
	return w, stop
}

func byCameraSeq(rs map[string]wire.Result, camera string, seq uint64) wire.Result {
	for _, r := range rs {
		if r.Camera == camera && r.Seq == seq {
			return r
		}
	}
	return wire.Result{}
}

// The runner with the real YOLOX-Nano function: the detections on frame 600 match those
// observed in shared/media/SOURCE.md (IoU ≥ 0.7), the astronaut is one person, and a
// corrupt JPEG gets an error result without stopping the frames after it.
func TestWorkerRunsTheDetector(t *testing.T) {
	addrs, st := stream(t, 2)
	fn, err := pipeline.Load("../functions/examples/yolox-nano", pipeline.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	_, stop := startWorker(t, addrs, "detector", runner.WorkerConfig{Deployment: deployment(st, 4), Stream: st, Model: fn, Lanes: 2})
	defer stop()

	street, astro := testkit.Media(t, "vtest_frame600.jpg"), testkit.Media(t, "astronaut.png")
	produceFrames(t, addrs, st.Topic,
		frame("street", 1, street), frame("street", 2, []byte("\xff\xd8\xff garbage")), frame("street", 3, street),
		frame("space", 1, astro))
	rs := results(t, addrs, st.ResultsTopic, 4)

	for _, seq := range []uint64{1, 3} {
		r := byCameraSeq(rs, "street", seq)
		if r.Status != wire.StatusOK || r.Width != 768 || r.Height != 576 || r.Timings.Infer <= 0 || r.Timings.EndToEnd <= 0 {
			t.Fatalf("street #%d: %+v", seq, r)
		}
		for _, want := range []struct {
			label string
			box   functions.Box
		}{
			{"person", functions.Box{X1: 567, Y1: 197, X2: 598, Y2: 284}},
			{"person", functions.Box{X1: 282, Y1: 431, X2: 340, Y2: 576}},
			{"car", functions.Box{X1: 732, Y1: 52, X2: 767, Y2: 94}},
			{"truck", functions.Box{X1: 652, Y1: 42, X2: 723, Y2: 99}},
		} {
			best := float32(0)
			for _, d := range r.Detections {
				if d.Label == want.label {
					best = max(best, functions.IoU(functions.Box(d.Box), want.box))
				}
			}
			if best < 0.7 {
				t.Errorf("street #%d: best IoU with the observed %s %v is %.2f, want ≥ 0.7", seq, want.label, want.box, best)
			}
		}
	}
	if r := byCameraSeq(rs, "street", 2); r.Status != wire.StatusError || r.Error == "" {
		t.Fatalf("corrupt frame: %+v, want an error result", r)
	}
	a := byCameraSeq(rs, "space", 1)
	persons := 0
	for _, d := range a.Detections {
		if d.Label == "person" {
			persons++
		}
	}
	if a.Status != wire.StatusOK || persons != 1 {
		t.Fatalf("astronaut: %d persons in %+v, want 1", persons, a)
	}
}

// The pipeline's own rules (live policy, oversize and NaN results, corrupt frames, order
// across lanes, retries, shutdown) are tested without a broker in runner/flow; the tests
// here are the worker's with Kafka: what reaches the results topic and what is committed.

// fixedModel is a simulated accelerator: every batch takes a fixed time, every frame
// gets one detection whose score encodes the frame's first byte.
type fixedModel struct{ service time.Duration }

func (m *fixedModel) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	time.Sleep(m.service)
	out := make([]functions.FrameResult, len(frames))
	for i, f := range frames {
		out[i].Detections = []functions.Detection{{Label: "x", Score: float32(f[0]) / 255}}
	}
	return out, functions.BatchTimings{Infer: m.service}, nil
}

// Two workers share four partitions; one leaves mid-stream and the survivor takes its
// partitions: every frame gets a result (duplicates allowed, same id).
func TestWorkersSharePartitionsAndSurviveALeaver(t *testing.T) {
	addrs, st := stream(t, 4)
	d := deployment(st, 4)
	start := func(id string) (*runner.Worker, func()) {
		return startWorker(t, addrs, id, runner.WorkerConfig{Deployment: d, Stream: st, Model: &fixedModel{service: 10 * time.Millisecond}})
	}
	a, stopA := start("runner-a")
	b, _ := start("runner-b")
	// The group protocol splits the four partitions between the two, two each (with
	// cooperative-sticky, the first to join may hold all four until a follow-up rebalance).
	testkit.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if len(a.Partitions()) != 2 || len(b.Partitions()) != 2 {
			return fmt.Errorf("a holds %v, b holds %v", a.Partitions(), b.Partitions())
		}
		return nil
	})
	var frames []wire.Frame
	for i := range 200 {
		frames = append(frames, frame(fmt.Sprintf("cam-%d", i%8), uint64(i+1), []byte{byte(i)}))
	}
	produceFrames(t, addrs, st.Topic, frames[:100]...)
	testkit.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if a.Stats.Frames.Load() == 0 || b.Stats.Frames.Load() == 0 {
			return fmt.Errorf("work not shared yet: a %d, b %d", a.Stats.Frames.Load(), b.Stats.Frames.Load())
		}
		return nil
	})
	stopA()
	produceFrames(t, addrs, st.Topic, frames[100:]...)
	testkit.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if len(b.Partitions()) != 4 {
			return fmt.Errorf("the survivor holds %v, want all four", b.Partitions())
		}
		return nil
	})
	rs := results(t, addrs, st.ResultsTopic, 200)
	for _, f := range frames {
		if r := byCameraSeq(rs, f.Camera, f.Seq); r.Status != wire.StatusOK {
			t.Fatalf("frame %s/%d: %+v", f.Camera, f.Seq, r)
		}
	}
}

// flakyModel fails its first runs, as a device that ran out of memory for a while would,
// then works.
type flakyModel struct {
	fixedModel
	failFirst int
	runs      atomic.Int64
}

func (m *flakyModel) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	if m.runs.Add(1) <= int64(m.failFirst) {
		return nil, functions.BatchTimings{}, fmt.Errorf("CUDA error: out of memory")
	}
	return m.fixedModel.Run(frames)
}

// A failing model run is a run error, not a frame error: the batch is retried with
// backoff, nothing is committed as done, the function is reported unhealthy after
// UnhealthyAfter failures in a row, and when the model works again every frame gets its
// real result (no error results were written for the transient failure).
func TestWorkerRetriesAFailingModelAndCommitsNothing(t *testing.T) {
	addrs, st := stream(t, 1)
	var frames []wire.Frame
	for i := range 6 {
		frames = append(frames, frame("cam", uint64(i+1), []byte{byte(i + 1)}))
	}
	produceFrames(t, addrs, st.Topic, frames...)
	model := &flakyModel{fixedModel: fixedModel{service: time.Millisecond}, failFirst: runner.UnhealthyAfter + 1}
	d := deployment(st, 1)
	w, _ := startWorker(t, addrs, "flaky", runner.WorkerConfig{Deployment: d, Stream: st, Model: model, RetryBackoff: 100 * time.Millisecond})
	testkit.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if why := w.Unhealthy(); !strings.Contains(why, "in a row failed") || !strings.Contains(why, "out of memory") {
			return fmt.Errorf("Unhealthy() = %q", why)
		}
		return nil
	})
	if n := w.Stats.Frames.Load(); n != 0 {
		t.Fatalf("%d results written while the model was failing, want none", n)
	}
	kc := kafkaclient.New(addrs, "test-lag")
	defer kc.Close()
	if lag, err := kc.Lag(d.Group(), st.Topic); err != nil || lag != 6 {
		t.Fatalf("lag while failing: %d (%v), want all 6 frames uncommitted", lag, err)
	}
	rs := results(t, addrs, st.ResultsTopic, 6)
	for _, r := range rs {
		if r.Status != wire.StatusOK {
			t.Fatalf("result %+v, want ok once the model works again", r)
		}
	}
	testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if why := w.Unhealthy(); why != "" {
			return fmt.Errorf("still unhealthy after recovering: %q", why)
		}
		return nil
	})
}

// With two lanes and frames of four cameras on two partitions, each partition's results
// come out in offset order and none is missing, though the lanes finish out of order.
func TestLanesKeepPartitionOrder(t *testing.T) {
	addrs, st := stream(t, 2)
	model := &jitterModel{}
	_, stop := startWorker(t, addrs, "lanes", runner.WorkerConfig{Deployment: deployment(st, 2), Stream: st, Model: model, Lanes: 2})
	defer stop()
	var frames []wire.Frame
	for i := range 200 {
		frames = append(frames, frame(fmt.Sprintf("cam-%d", i%4), uint64(i/4+1), []byte{byte(i)}))
	}
	produceFrames(t, addrs, st.Topic, frames...)
	rs := results(t, addrs, st.ResultsTopic, 200)
	for _, f := range frames {
		if r := byCameraSeq(rs, f.Camera, f.Seq); r.Status != wire.StatusOK {
			t.Fatalf("frame %s/%d: %+v", f.Camera, f.Seq, r)
		}
	}
	// Read the results topic in its order: per source partition, offsets only grow.
	c, err := sarama.NewConsumer(addrs, kafkaclient.NewConfig("test-order"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	last := map[int32]int64{}
	n := 0
	for _, p := range []int32{0, 1} {
		pc, err := c.ConsumePartition(st.ResultsTopic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		hw := pc.HighWaterMarkOffset()
		for hw > 0 {
			m := <-pc.Messages()
			var r wire.Result
			if err := json.Unmarshal(m.Value, &r); err != nil {
				t.Fatal(err)
			}
			if prev, ok := last[r.Source.Partition]; ok && r.Source.Offset <= prev {
				t.Fatalf("results partition %d: source offset %d of partition %d after %d", p, r.Source.Offset, r.Source.Partition, prev)
			}
			last[r.Source.Partition] = r.Source.Offset
			n++
			if m.Offset+1 >= hw {
				break
			}
		}
		pc.Close()
	}
	if n != 200 || model.concurrent.Load() < 2 {
		t.Fatalf("%d results in the topic, want 200; lanes at once: %d, want 2", n, model.concurrent.Load())
	}
}

// jitterModel takes a varying time per batch, so lanes finish out of order, and records
// how many runs were in flight at once.
type jitterModel struct {
	inFlight, concurrent atomic.Int64
	n                    atomic.Int64
}

func (m *jitterModel) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	now := m.inFlight.Add(1)
	defer m.inFlight.Add(-1)
	for c := m.concurrent.Load(); now > c && !m.concurrent.CompareAndSwap(c, now); c = m.concurrent.Load() {
	}
	time.Sleep(time.Duration(1+m.n.Add(1)%3*4) * time.Millisecond)
	out := make([]functions.FrameResult, len(frames))
	for i, f := range frames {
		out[i].Detections = []functions.Detection{{Label: "x", Score: float32(f[0]) / 255}}
	}
	return out, functions.BatchTimings{}, nil
}

// A deployment limited to some cameras and to a window of offsets (a replay) writes
// results only for those frames, and commits every frame, so its lag goes to zero.
func TestWorkerCamerasAndWindow(t *testing.T) {
	addrs, st := stream(t, 1)
	var frames []wire.Frame
	for i := range 10 { // offsets 0..9, cameras a and b alternating
		frames = append(frames, frame([]string{"a", "b"}[i%2], uint64(i/2+1), []byte{byte(i + 1)}))
	}
	produceFrames(t, addrs, st.Topic, frames...)
	d := deployment(st, 2)
	d.Cameras, d.StopAt = []string{"a"}, map[int32]int64{0: 6}
	w, _ := startWorker(t, addrs, "window", runner.WorkerConfig{Deployment: d, Stream: st, Model: &fixedModel{}})
	kc := kafkaclient.New(addrs, "test-window")
	defer kc.Close()
	testkit.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if lag, err := kc.Lag(d.Group(), st.Topic); err != nil || lag != 0 {
			return fmt.Errorf("lag %d (%v)", lag, err)
		}
		return nil
	})
	rs := results(t, addrs, st.ResultsTopic, 3) // camera a at offsets 0, 2, 4
	for _, r := range rs {
		if r.Camera != "a" || r.Source.Offset >= 6 {
			t.Fatalf("a result outside the cameras or the window: %+v", r)
		}
	}
	if n := w.Stats.Frames.Load(); n != 3 {
		t.Fatalf("%d results, want 3", n)
	}
}
