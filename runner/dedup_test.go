package runner_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner"
)

// cameraFrame is a frame the camera numbered itself (?seq=N), as the gateway stores it.
func cameraFrame(camera string, seq uint64) wire.Frame {
	f := frame(camera, seq, []byte{byte(seq)})
	f.CameraSeq = true
	return f
}

// A camera that numbers its frames retries pushes whose answers it lost, so the gateway
// stored those frames twice: an exactly-once deployment commits one result per seq. The
// seqs it remembers move with the partition: after the first runner stops, the second
// skips a repeat of a seq the first one committed. A frame the gateway numbered is never
// taken for a repeat.
func TestExactlyOnceSkipsACamerasRepeatedSeq(t *testing.T) {
	addrs, st := stream(t, 1)
	d := deployment(st, 4)
	d.Delivery = wire.ExactlyOnce
	cfg := runner.WorkerConfig{Deployment: d, Stream: st, Model: &fixedModel{service: time.Millisecond}}
	var first []wire.Frame
	for seq := uint64(1); seq <= 20; seq++ {
		first = append(first, cameraFrame("cam", seq))
		if seq == 5 || seq == 12 { // the retry after a lost answer
			first = append(first, cameraFrame("cam", seq))
		}
	}
	first = append(first, cameraFrame("cam", 3)) // a late repeat
	gw := frame("gw-numbered", 7, []byte{7})
	first = append(first, gw, gw) // the gateway's numbers: two frames for all it knows
	a, stopA := startWorker(t, addrs, "dedup-a", cfg)
	produceFrames(t, addrs, st.Topic, first...)
	testkit.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		if n := a.Stats.Frames.Load(); n < 22 {
			return fmt.Errorf("a: %d results", n)
		}
		return nil
	})
	stopA()
	if n := a.Stats.Duplicates.Load(); n != 3 {
		t.Errorf("a skipped %d repeats, want 3", n)
	}
	b, _ := startWorker(t, addrs, "dedup-b", cfg)
	second := []wire.Frame{cameraFrame("cam", 20)} // a repeat of the last seq a committed
	for seq := uint64(21); seq <= 30; seq++ {
		second = append(second, cameraFrame("cam", seq))
	}
	produceFrames(t, addrs, st.Topic, second...)
	testkit.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
		if n := b.Stats.Frames.Load(); n < 10 {
			return fmt.Errorf("b: %d results", n)
		}
		return nil
	})
	ids := committedResults(t, addrs, st.ResultsTopic, 31)
	for seq := uint64(1); seq <= 30; seq++ {
		if n := ids[wire.ResultID(st.Name, "cam", seq, d.Digest)]; n != 1 {
			t.Errorf("seq %d: %d committed results, want 1", seq, n)
		}
	}
	if n := ids[wire.ResultID(st.Name, gw.Camera, gw.Seq, d.Digest)]; n != 2 {
		t.Errorf("the gateway-numbered frame stored twice: %d committed results, want 2", n)
	}
	if n := b.Stats.Duplicates.Load(); n != 1 {
		t.Errorf("b skipped %d repeats, want 1 (the seqs did not move with the partition)", n)
	}
}
