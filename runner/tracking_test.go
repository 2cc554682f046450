package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner"
)

// fixedZones is a ZoneSource with the same zones for every camera.
type fixedZones []wire.Zone

func (z fixedZones) Camera(stream, camera string) ([]wire.Zone, uint64) { return z, 1 }

// allResults reads every record of a results topic until want distinct frames
// (camera, seq) have a result, duplicates included.
func allResults(t *testing.T, addrs []string, topic string, want int) []wire.Result {
	t.Helper()
	c, err := sarama.NewConsumer(addrs, kafkaclient.NewConfig("test-all-results"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, _ := c.Partitions(topic)
	ch := make(chan *sarama.ConsumerMessage, 256)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				ch <- m
			}
		}()
	}
	var out []wire.Result
	seen := map[string]bool{}
	deadline := time.After(3 * time.Minute)
	for len(seen) < want {
		select {
		case m := <-ch:
			var r wire.Result
			if err := json.Unmarshal(m.Value, &r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
			seen[fmt.Sprintf("%s/%d", r.Camera, r.Seq)] = true
		case <-deadline:
			t.Fatalf("%d of %d frames have results", len(seen), want)
		}
	}
	return out
}

// finalCounts is each camera's counts as of its last counted frame.
func finalCounts(rs []wire.Result) map[string][]wire.ZoneCount {
	last := map[string]wire.Result{}
	for _, r := range rs {
		if len(r.Counts) == 0 {
			continue // a redelivered frame its checkpoint had already counted
		}
		if l, ok := last[r.Camera]; !ok || r.Seq > l.Seq {
			last[r.Camera] = r
		}
	}
	out := map[string][]wire.ZoneCount{}
	for cam, r := range last {
		out[cam] = r.Counts
	}
	return out
}

// Tracking on the sample video with a counting line across the walkway, by the real
// detector: a run whose partitions move to another runner mid-video (the first runner
// stops, is SIGKILLed while it works through the video — in both delivery modes — or a
// second one joins) gives every frame the track ids and the final counts of an
// uninterrupted run: a track alive across the move keeps its id, where a restarted
// tracker would number it anew.
func TestTrackingStateMovesWithThePartition(t *testing.T) {
	raw := testkit.Media(t, "vtest_10s.mjpeg")
	jpegs := ingest.SplitJPEGs(raw)
	if len(jpegs) > 80 {
		jpegs = jpegs[:80]
	}
	fn, err := pipeline.Load("../functions/examples/yolox-nano", pipeline.Options{Lanes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	zones := fixedZones{{Name: "walkway", Line: []wire.Point{{X: 0, Y: 300}, {X: 767, Y: 300}}}}
	// Two cameras on the stream's two partitions, so that a joining runner takes one.
	cams := camerasOnDistinctPartitions(t, 2)

	runWith := func(t *testing.T, delivery wire.Delivery, moves func(addrs []string, st wire.Stream, d wire.Deployment, half func())) tracked {
		addrs, st := stream(t, 2)
		d := deployment(st, 2)
		d.Track, d.Delivery = &wire.TrackParams{}, delivery
		var frames []wire.Frame
		for i, j := range jpegs {
			for _, c := range cams {
				frames = append(frames, frame(c, uint64(i+1), j))
			}
		}
		produceFrames(t, addrs, st.Topic, frames[:len(frames)/2]...)
		moves(addrs, st, d, func() { produceFrames(t, addrs, st.Topic, frames[len(frames)/2:]...) })
		rs := allResults(t, addrs, st.ResultsTopic, len(frames))
		if delivery.Transactional() {
			ids := map[string]bool{}
			for _, r := range rs {
				if ids[r.ID] {
					t.Fatalf("exactly-once: two committed results %s", r.ID)
				}
				ids[r.ID] = true
			}
		}
		out := tracked{counts: finalCounts(rs), ids: trackIDs(rs)}
		for _, c := range cams {
			seenMax := uint64(0)
			for _, r := range rs {
				if r.Camera != c {
					continue
				}
				for _, det := range r.Detections {
					seenMax = max(seenMax, det.TrackID)
				}
			}
			if seenMax < 2 {
				t.Fatalf("camera %s: track ids up to %d; the tracker did not run", c, seenMax)
			}
		}
		return out
	}
	run := func(t *testing.T, moves func(addrs []string, st wire.Stream, d wire.Deployment, half func())) tracked {
		return runWith(t, wire.AtLeastOnce, moves)
	}
	workerCfg := func(st wire.Stream, d wire.Deployment) runner.WorkerConfig {
		return runner.WorkerConfig{Deployment: d, Stream: st, Model: fn, Lanes: 2, Zones: zones}
	}

	var want tracked
	t.Run("uninterrupted", func(t *testing.T) {
		want = run(t, func(addrs []string, st wire.Stream, d wire.Deployment, half func()) {
			startWorker(t, addrs, "alone", workerCfg(st, d))
			half()
		})
		// Tracks alive across the middle of the video, where the runs below move: their
		// ids are what a move must keep.
		across := 0
		for _, c := range cams {
			before, after := map[uint64]bool{}, map[uint64]bool{}
			for seq := 1; seq <= len(jpegs); seq++ {
				for _, id := range want.ids[fmt.Sprintf("%s/%d", c, seq)] {
					if seq <= len(jpegs)/2 {
						before[id] = true
					} else if before[id] && !after[id] {
						after[id] = true
						across++
					}
				}
			}
		}
		if across == 0 {
			t.Fatal("no track is alive across the middle of the video: the runs below would not show ids kept")
		}
		t.Logf("%d tracks alive across the middle of the video", across)
		total := int64(0)
		for _, cs := range want.counts {
			for _, c := range cs {
				total += c.In + c.Out
			}
		}
		if total == 0 {
			t.Fatalf("no crossing counted on the walkway line: %v", want.counts)
		}
		t.Logf("counts: %v", want.counts)
	})
	t.Run("first runner stops, another continues", func(t *testing.T) {
		got := run(t, func(addrs []string, st wire.Stream, d wire.Deployment, half func()) {
			a, stopA := startWorker(t, addrs, "first", workerCfg(st, d))
			testkit.CheckFor(t, 2*time.Minute, 100*time.Millisecond, func() error {
				if n := a.Stats.Frames.Load(); n < int64(len(jpegs)*len(cams)/2) {
					return fmt.Errorf("first runner: %d results", n)
				}
				return nil
			})
			stopA()
			startWorker(t, addrs, "second", workerCfg(st, d))
			half()
		})
		got.same(t, want)
	})
	sigkill := func(t *testing.T, delivery wire.Delivery) {
		got := runWith(t, delivery, func(addrs []string, st wire.Stream, d wire.Deployment, half func()) {
			cmd := startCrashingRunner(t, helperSpec{Brokers: addrs, Stream: st, Deployment: d, Zones: zones})
			half() // the whole video waits: the runner is killed in the middle of its work
			kc := kafkaclient.New(addrs, "test-crash")
			defer kc.Close()
			total := int64(len(jpegs) * len(cams))
			var n int64
			testkit.CheckFor(t, 2*time.Minute, 20*time.Millisecond, func() error { // half the frames have results
				var err error
				if n, err = kc.StoredRecords(st.ResultsTopic); err != nil || n < total/2 {
					return fmt.Errorf("%d results (%v)", n, err)
				}
				return nil
			})
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			if n >= total {
				t.Fatalf("the runner had every result (%d) when it was killed: nothing was in flight", n)
			}
			t.Logf("SIGKILL with %d of %d results written", n, total)
			startWorker(t, addrs, "after-crash", workerCfg(st, d))
		})
		got.same(t, want)
	}
	t.Run("the first runner is SIGKILLed mid-video", func(t *testing.T) { sigkill(t, wire.AtLeastOnce) })
	// Exactly-once: the checkpoints are written in the results' transactions, so the
	// state the next runner restores is the one of the last committed frame.
	t.Run("exactly-once, the first runner is SIGKILLed mid-video", func(t *testing.T) { sigkill(t, wire.ExactlyOnce) })
	t.Run("a second runner joins mid-video", func(t *testing.T) {
		got := run(t, func(addrs []string, st wire.Stream, d wire.Deployment, half func()) {
			a, _ := startWorker(t, addrs, "first", workerCfg(st, d))
			testkit.CheckFor(t, 2*time.Minute, 100*time.Millisecond, func() error {
				if n := a.Stats.Frames.Load(); n < int64(len(jpegs)*len(cams)/2) {
					return fmt.Errorf("first runner: %d results", n)
				}
				return nil
			})
			b, _ := startWorker(t, addrs, "joiner", workerCfg(st, d))
			testkit.CheckFor(t, time.Minute, 100*time.Millisecond, func() error {
				if len(a.Partitions()) != 1 || len(b.Partitions()) != 1 {
					return fmt.Errorf("partitions: first %v, joiner %v", a.Partitions(), b.Partitions())
				}
				return nil
			})
			half()
		})
		got.same(t, want)
	})
}

// tracked is what a tracking run gave: each camera's final counts, and each frame's
// track ids ("camera/seq": sorted, without the untracked 0).
type tracked struct {
	counts map[string][]wire.ZoneCount
	ids    map[string][]uint64
}

// trackIDs is each frame's track ids; a frame redelivered after its checkpoint (tracked
// already, so none this time) adds nothing.
func trackIDs(rs []wire.Result) map[string][]uint64 {
	out := map[string][]uint64{}
	for _, r := range rs {
		k := fmt.Sprintf("%s/%d", r.Camera, r.Seq)
		for _, det := range r.Detections {
			if det.TrackID != 0 && !slices.Contains(out[k], det.TrackID) {
				out[k] = append(out[k], det.TrackID)
			}
		}
		slices.Sort(out[k])
	}
	return out
}

// same fails unless got has the uninterrupted run's counts and every frame its track ids.
func (got tracked) same(t *testing.T, want tracked) {
	t.Helper()
	if !equalCounts(got.counts, want.counts) {
		t.Errorf("counts after the move %v, uninterrupted %v", got.counts, want.counts)
	}
	var differ []string
	for k, ids := range want.ids {
		if !slices.Equal(got.ids[k], ids) {
			differ = append(differ, fmt.Sprintf("%s: %v, uninterrupted %v", k, got.ids[k], ids))
		}
	}
	for k, ids := range got.ids {
		if _, ok := want.ids[k]; !ok {
			differ = append(differ, fmt.Sprintf("%s: %v, uninterrupted none", k, ids))
		}
	}
	slices.Sort(differ)
	if len(differ) > 0 {
		t.Errorf("%d frames' track ids differ from the uninterrupted run's (a track lost its id in the move), first: %v",
			len(differ), differ[:min(5, len(differ))])
	}
}

func equalCounts(a, b map[string][]wire.ZoneCount) bool {
	if len(a) != len(b) {
		return false
	}
	for cam, ca := range a {
		if !slices.Equal(ca, b[cam]) {
			return false
		}
	}
	return true
}

// camerasOnDistinctPartitions picks n camera ids that the producer's hash partitioner
// puts on n different partitions of an n-partition topic.
func camerasOnDistinctPartitions(t *testing.T, n int) []string {
	t.Helper()
	p := sarama.NewHashPartitioner("any")
	var out []string
	used := map[int32]bool{}
	for i := 0; len(out) < n && i < 1000; i++ {
		id := fmt.Sprintf("walk-%d", i)
		part, err := p.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(id)}, int32(n))
		if err != nil {
			t.Fatal(err)
		}
		if !used[part] {
			used[part] = true
			out = append(out, id)
		}
	}
	return out
}

// TestHelperTrackingWorker is not a test: it is the entry of the runner process that
// TestTrackingStateMovesWithThePartition SIGKILLs mid-video and TestExactlyOnceFencesAZombie
// SIGSTOPs (os/exec's helper-process idiom). It runs a worker from DIPLIP_HELPER_WORKER
// until it is killed.
func TestHelperTrackingWorker(t *testing.T) {
	spec := os.Getenv("DIPLIP_HELPER_WORKER")
	if spec == "" {
		return
	}
	var h helperSpec
	if err := json.Unmarshal([]byte(spec), &h); err != nil {
		t.Fatal(err)
	}
	var model runner.Model = &fixedModel{service: h.Simulated}
	if h.ResultBytes > 0 {
		model = bigResults(h.ResultBytes)
	} else if h.Simulated == 0 {
		fn, err := pipeline.Load("../functions/examples/yolox-nano", pipeline.Options{Lanes: 2})
		if err != nil {
			t.Fatal(err)
		}
		model = fn
	}
	kcfg := kafkaclient.RunnerConfig("crashing-runner")
	if h.Delay > 0 { // every request to the brokers is held up
		kcfg.Net.Proxy.Enable, kcfg.Net.Proxy.Dialer = true, slowDialer{h.Delay}
	}
	kc := kafkaclient.NewWithConfig(h.Brokers, kcfg)
	w, err := runner.NewWorker(runner.WorkerConfig{Kafka: kc, Deployment: h.Deployment, Stream: h.Stream, Model: model, Lanes: 2,
		Zones: fixedZones(h.Zones), MaxBytesInFlight: h.MaxBytesInFlight})
	if err != nil {
		t.Fatal(err)
	}
	if h.StatsFile != "" {
		go writeMemory(w, h.StatsFile)
	}
	_ = w.Run(context.Background()) // until SIGKILL
}

type helperSpec struct {
	Brokers    []string
	Stream     wire.Stream
	Deployment wire.Deployment
	Zones      []wire.Zone
	Simulated  time.Duration // > 0: a simulated model with this service time instead of the detector
	// For the memory test (memory_test.go): results of ResultBytes each, requests to the
	// brokers Delay late, the worker's bound, and where it writes what it held.
	ResultBytes      int
	Delay            time.Duration
	MaxBytesInFlight int64
	StatsFile        string
}

// startCrashingRunner runs a worker in a child process, to be SIGKILLed or SIGSTOPped.
func startCrashingRunner(t *testing.T, h helperSpec) *exec.Cmd {
	t.Helper()
	b, _ := json.Marshal(h)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTrackingWorker$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DIPLIP_HELPER_WORKER="+string(b))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}
