package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner"
)

// committedResults reads every committed result of topic (read_committed, up to the last
// stable offset) once want distinct frames have one, and counts them by result id.
func committedResults(t *testing.T, addrs []string, topic string, want int) map[string]int {
	t.Helper()
	allResults(t, addrs, topic, want) // wait until every frame has a committed result
	kc := kafkaclient.New(addrs, "test-committed")
	defer kc.Close()
	recs, err := kc.LastResults(context.Background(), topic, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, b := range recs {
		var r wire.Result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != wire.StatusOK {
			t.Fatalf("result %+v, want ok", r)
		}
		ids[r.ID]++
	}
	return ids
}

// exactlyOnce fails unless every frame has exactly one committed result.
func exactlyOnce(t *testing.T, ids map[string]int, st wire.Stream, d wire.Deployment, frames []wire.Frame) {
	t.Helper()
	for _, f := range frames {
		if n := ids[wire.ResultID(st.Name, f.Camera, f.Seq, d.Digest)]; n != 1 {
			t.Errorf("frame %s/%d: %d committed results, want exactly 1", f.Camera, f.Seq, n)
		}
	}
	if len(ids) != len(frames) {
		t.Errorf("%d distinct results for %d frames", len(ids), len(frames))
	}
}

// Exactly-once across rebalances: while frames arrive, a second worker joins and then
// the first one leaves; every frame has one committed result (at-least-once writes some
// twice here).
func TestExactlyOnceAcrossJoinAndLeave(t *testing.T) {
	addrs, st := stream(t, 4)
	d := deployment(st, 4)
	d.Delivery = wire.ExactlyOnce
	start := func(id string) (*runner.Worker, func()) {
		return startWorker(t, addrs, id, runner.WorkerConfig{Deployment: d, Stream: st, Model: &fixedModel{service: 5 * time.Millisecond}})
	}
	var frames []wire.Frame
	for i := range 400 {
		frames = append(frames, frame(fmt.Sprintf("cam-%d", i%8), uint64(i+1), []byte{byte(i)}))
	}
	a, stopA := start("eos-a")
	var camera sync.WaitGroup
	cam, err := sarama.NewSyncProducer(addrs, kafkaclient.NewConfig("test-camera"))
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	camera.Go(func() { // 400 frames over about 8 s
		for i, f := range frames {
			if _, _, err := cam.SendMessage(kafkaclient.FrameMessage(&f, st.Topic)); err != nil {
				t.Error(err)
				return
			}
			if i%10 == 9 {
				time.Sleep(200 * time.Millisecond)
			}
		}
	})
	testkit.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if n := a.Stats.Frames.Load(); n < 50 {
			return fmt.Errorf("a has %d results", n)
		}
		return nil
	})
	b, _ := start("eos-b")
	testkit.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if b.Stats.Frames.Load() == 0 {
			return fmt.Errorf("b has no results yet (a holds %v, b holds %v)", a.Partitions(), b.Partitions())
		}
		return nil
	})
	stopA()
	camera.Wait()
	if a.Stats.Frames.Load() == int64(len(frames)) || b.Stats.Frames.Load() == 0 {
		t.Fatalf("the frames were not shared: a %d, b %d results", a.Stats.Frames.Load(), b.Stats.Frames.Load())
	}
	exactlyOnce(t, committedResults(t, addrs, st.ResultsTopic, len(frames)), st, d, frames)
	if a.Stats.Frames.Load()+b.Stats.Frames.Load() != int64(len(frames)) {
		t.Errorf("results committed: a %d + b %d, want %d", a.Stats.Frames.Load(), b.Stats.Frames.Load(), len(frames))
	}
}

// A zombie: a runner process is SIGSTOPped mid-stream past its group session timeout, so
// the coordinator gives its partition to b, which redoes the frames it had taken. When it
// is SIGCONTed it still holds results (and maybe an open transaction) for a partition it
// no longer owns: b's producer fenced its transactional id, so none of them becomes
// visible. Every frame has exactly one committed result.
func TestExactlyOnceFencesAZombie(t *testing.T) {
	addrs, st := stream(t, 1)
	d := deployment(st, 2)
	d.Delivery = wire.ExactlyOnce
	var frames []wire.Frame
	for i := range 300 {
		frames = append(frames, frame("cam", uint64(i+1), []byte{byte(i)}))
	}
	cam, err := sarama.NewSyncProducer(addrs, kafkaclient.NewConfig("test-camera"))
	if err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	ctx, stopCamera := context.WithCancel(context.Background())
	defer stopCamera()
	var camera sync.WaitGroup
	var sent atomic.Int64
	camera.Go(func() { // 20 fps until every frame is sent
		for _, f := range frames {
			if _, _, err := cam.SendMessage(kafkaclient.FrameMessage(&f, st.Topic)); err != nil {
				t.Error(err)
				return
			}
			sent.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	zombie := startCrashingRunner(t, helperSpec{Brokers: addrs, Stream: st, Deployment: d, Simulated: 60 * time.Millisecond})
	kc := kafkaclient.New(addrs, "test-zombie")
	defer kc.Close()
	testkit.CheckFor(t, time.Minute, 50*time.Millisecond, func() error {
		if n, err := kc.StoredRecords(st.ResultsTopic); err != nil || n < 20 {
			return fmt.Errorf("%d committed results (%v)", n, err)
		}
		return nil
	})
	if err := zombie.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGSTOP the first runner after %d frames", sent.Load())
	b, _ := startWorker(t, addrs, "successor", runner.WorkerConfig{Deployment: d, Stream: st, Model: &fixedModel{service: 2 * time.Millisecond}})
	testkit.CheckFor(t, time.Minute, 50*time.Millisecond, func() error { // after the zombie's session timeout
		if n := b.Stats.Frames.Load(); n < 40 {
			return fmt.Errorf("b has %d results (holds %v)", n, b.Partitions())
		}
		return nil
	})
	if err := zombie.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGCONT the first runner after %d frames", sent.Load())
	camera.Wait()
	exactlyOnce(t, committedResults(t, addrs, st.ResultsTopic, len(frames)), st, d, frames)
}
