package flow_test

// The pipeline on its own: no broker, a fake model, records made in memory.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

func deployment(batch int) wire.Deployment {
	return wire.Deployment{Function: "det", Stream: "s", Digest: "r/fn@sha256:0123456789abcdef0123", Batch: batch,
		Device: "cpu", Policy: "replay"}
}

func frame(camera string, seq uint64, data ...byte) wire.Frame {
	now := time.Now()
	return wire.Frame{Camera: camera, Seq: seq, CaptureTime: now, IngestTime: now, ContentType: wire.ContentJPEG, Data: data}
}

// record is f as a consumer hands it over, at partition p, offset off.
func record(p int32, off int64, f wire.Frame) *flow.Item {
	return &flow.Item{Partition: p, Offset: off, Key: f.Key(), Headers: f.Headers(), Value: f.Data}
}

// start runs a pipeline on items (then closes its input) until it returns; what comes
// out arrives on the returned channel, which closes after the last item.
func start(ctx context.Context, p *flow.Pipeline, items []*flow.Item) <-chan *flow.Item {
	in := make(chan *flow.Item, len(items))
	for _, it := range items {
		in <- it
	}
	close(in)
	out := make(chan *flow.Item, len(items))
	go func() {
		p.Run(ctx, in, func(it *flow.Item) { out <- it })
		close(out)
	}()
	return out
}

// runAll runs items through a pipeline made of cfg and returns them in the order they came out.
func runAll(t *testing.T, cfg flow.Config, items []*flow.Item) []*flow.Item {
	t.Helper()
	var got []*flow.Item
	for it := range start(context.Background(), flow.New(cfg), items) {
		got = append(got, it)
	}
	if len(got) != len(items) {
		t.Fatalf("%d items came out, want %d", len(got), len(items))
	}
	return got
}

// scoreModel gives every frame one detection whose score encodes the frame's first byte
// (so a result shows whose it is); optional jitter makes lanes finish out of order. It
// records the batch sizes and how many runs were in flight at once.
type scoreModel struct {
	jitter               bool
	n, inFlight, highest atomic.Int64
	mu                   sync.Mutex
	batches              []int
	frames               [][]byte
}

func (m *scoreModel) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	now := m.inFlight.Add(1)
	defer m.inFlight.Add(-1)
	for h := m.highest.Load(); now > h && !m.highest.CompareAndSwap(h, now); h = m.highest.Load() {
	}
	if m.jitter {
		time.Sleep(time.Duration(1+m.n.Add(1)%3*4) * time.Millisecond)
	}
	m.mu.Lock()
	m.batches = append(m.batches, len(frames))
	m.frames = append(m.frames, frames...)
	m.mu.Unlock()
	out := make([]functions.FrameResult, len(frames))
	for i, f := range frames {
		switch f[0] {
		case 0xEE:
			out[i].Err = errors.New("not a JPEG")
		case 0xF0: // raw tensors far larger than a result record may be
			out[i].Raw = map[string][]float32{"output": make([]float32, 1<<20)}
		case 0xF1: // a NaN score, as a broken export can give
			out[i].Detections = []functions.Detection{{Label: "x", Score: float32(math.NaN())}, {Label: "y", Score: 0.5}}
		default:
			out[i].Detections = []functions.Detection{{Label: "x", Score: float32(f[0]) / 255}}
		}
	}
	return out, functions.BatchTimings{Infer: time.Millisecond}, nil
}

// With two lanes finishing out of order and records of two partitions interleaved, every
// record comes out once, in the order it went in (so each partition's offsets only grow),
// with its own frame's result.
func TestLanesKeepConsumptionOrder(t *testing.T) {
	model := &scoreModel{jitter: true}
	var items []*flow.Item
	for i := range 200 {
		items = append(items, record(int32(i%2), int64(i/2), frame(fmt.Sprintf("cam-%d", i%4), uint64(i/4+1), byte(i))))
	}
	got := runAll(t, flow.Config{Deployment: deployment(2), Model: model, Lanes: 2}, items)
	last := map[int32]int64{0: -1, 1: -1}
	for i, it := range got {
		if it != items[i] {
			t.Fatalf("item %d out is partition %d offset %d, want partition %d offset %d",
				i, it.Partition, it.Offset, items[i].Partition, items[i].Offset)
		}
		if it.Offset <= last[it.Partition] {
			t.Fatalf("partition %d: offset %d after %d", it.Partition, it.Offset, last[it.Partition])
		}
		last[it.Partition] = it.Offset
		r := it.Result
		if r.Status != wire.StatusOK || len(r.Detections) != 1 || r.Detections[0].Score != float32(byte(i))/255 ||
			r.Source != (wire.Source{Partition: it.Partition, Offset: it.Offset}) || it.Payload == nil {
			t.Fatalf("item %d: %+v", i, r)
		}
	}
	if model.highest.Load() < 2 {
		t.Fatalf("at most %d model runs at once, want 2 lanes", model.highest.Load())
	}
}

// gatedModel fails while failing is set, as a device that ran out of memory for a while
// would, and records when it was called.
type gatedModel struct {
	scoreModel
	failing atomic.Bool
	mu      sync.Mutex
	calls   []time.Time
}

func (m *gatedModel) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	m.mu.Lock()
	m.calls = append(m.calls, time.Now())
	m.mu.Unlock()
	if m.failing.Load() {
		return nil, functions.BatchTimings{}, errors.New("CUDA error: out of memory")
	}
	return m.scoreModel.Run(frames)
}

// A failing model run is a run error, not a frame error: the batch is retried with
// backoff (doubling), nothing comes out of the pipeline meanwhile (so nothing of it is
// committed), the function is unhealthy after UnhealthyAfter failures in a row, and once
// the model works again every frame gets its real result and the function is healthy.
func TestRetriesAFailingModelThenRecovers(t *testing.T) {
	model := &gatedModel{}
	model.failing.Store(true)
	p := flow.New(flow.Config{Deployment: deployment(1), Model: model, RetryBackoff: 20 * time.Millisecond})
	var items []*flow.Item
	for i := range 6 {
		items = append(items, record(0, int64(i), frame("cam", uint64(i+1), byte(i+1))))
	}
	out := start(context.Background(), p, items)
	deadline := time.Now().Add(10 * time.Second)
	for p.Unhealthy() == "" {
		if time.Now().After(deadline) {
			t.Fatal("not unhealthy after 10 s of failing runs")
		}
		select {
		case it := <-out:
			t.Fatalf("item out while the model fails: %+v", it.Result)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if why := p.Unhealthy(); !strings.Contains(why, fmt.Sprintf("%d inference runs in a row failed", flow.UnhealthyAfter)) ||
		!strings.Contains(why, "out of memory") {
		t.Fatalf("Unhealthy() = %q", why)
	}
	model.mu.Lock()
	calls := append([]time.Time(nil), model.calls...)
	model.mu.Unlock()
	if len(calls) < flow.UnhealthyAfter {
		t.Fatalf("unhealthy after %d runs, want %d", len(calls), flow.UnhealthyAfter)
	}
	for i, least := range []time.Duration{20 * time.Millisecond, 40 * time.Millisecond} {
		if gap := calls[i+1].Sub(calls[i]); gap < least {
			t.Fatalf("retry %d after %v, want at least %v (backoff doubling from 20ms)", i+1, gap, least)
		}
	}
	select {
	case it := <-out:
		t.Fatalf("item out while the model fails: %+v", it.Result)
	default:
	}
	model.failing.Store(false)
	n := 0
	for it := range out {
		if it.Result.Status != wire.StatusOK || it.GivenUp || it.Offset != int64(n) {
			t.Fatalf("item %d: %+v, want its ok result once the model works again", n, it.Result)
		}
		n++
	}
	if n != len(items) {
		t.Fatalf("%d items out, want %d", n, len(items))
	}
	if why := p.Unhealthy(); why != "" {
		t.Fatalf("still unhealthy after recovering: %q", why)
	}
}

// A record that is not a frame and a frame the model cannot read both get an error
// result (the first with an id made from its offset, and without a model run); the
// frames around them are processed.
func TestCorruptFramesGetErrorResults(t *testing.T) {
	model := &scoreModel{}
	items := []*flow.Item{
		record(0, 0, frame("cam", 1, 1)),
		{Partition: 0, Offset: 1, Key: "cam", Headers: []wire.Header{{Key: wire.HeaderSeq, Value: "not a number"}}, Value: []byte{2}},
		record(0, 2, frame("cam", 3, 0xEE)),
		record(0, 3, frame("cam", 4, 4)),
	}
	got := runAll(t, flow.Config{Deployment: deployment(4), Model: model}, items)
	d := deployment(4)
	if r := got[1].Result; r.Status != wire.StatusError || !strings.Contains(r.Error, wire.ErrBadFrame.Error()) ||
		r.ID != wire.ResultIDAt(d.Stream, 0, 1, d.Digest) || r.Camera != "cam" {
		t.Fatalf("not a frame: %+v", r)
	}
	if r := got[2].Result; r.Status != wire.StatusError || r.Error != "not a JPEG" || r.ID != wire.ResultID(d.Stream, "cam", 3, d.Digest) {
		t.Fatalf("corrupt image: %+v", r)
	}
	for _, i := range []int{0, 3} {
		if r := got[i].Result; r.Status != wire.StatusOK {
			t.Fatalf("frame at offset %d: %+v", i, r)
		}
	}
	if len(model.frames) != 3 {
		t.Fatalf("the model saw %d frames, want 3 (not the record that is no frame)", len(model.frames))
	}
}

// Live policy: frames older than the deployment's max age are answered "skipped" without
// inference; fresh ones are processed, in batches of up to the batch size.
func TestLivePolicySkipsStaleFrames(t *testing.T) {
	d := deployment(8)
	d.Policy, d.MaxAge = wire.PolicyLive, wire.Duration(5*time.Second)
	model := &scoreModel{}
	var items []*flow.Item
	for i := range 20 {
		f := frame("cam", uint64(i+1), byte(i))
		if i < 5 {
			f.CaptureTime = time.Now().Add(-time.Minute)
		}
		items = append(items, record(0, int64(i), f))
	}
	got := runAll(t, flow.Config{Deployment: d, Model: model, MaxDelay: 20 * time.Millisecond}, items)
	for i, it := range got {
		want := wire.StatusOK
		if i < 5 {
			want = wire.StatusSkipped
		}
		if r := it.Result; r.Status != want || it.Skip || it.Payload == nil {
			t.Fatalf("frame %d: status %q, want %q (%+v)", i+1, r.Status, want, r)
		}
		if want == wire.StatusSkipped && !strings.Contains(it.Result.Error, "max age") {
			t.Fatalf("frame %d: %q does not name the max age", i+1, it.Result.Error)
		}
	}
	if len(model.frames) != 15 {
		t.Fatalf("the model saw %d frames, want the 15 fresh ones", len(model.frames))
	}
	for _, n := range model.batches {
		if n > 8 {
			t.Fatalf("a batch of %d frames exceeds the batch size 8", n)
		}
	}
}

// A deployment limited to some cameras and to a window of offsets (a replay) skips the
// other records: they come out with no result, to be committed as done.
func TestCamerasAndWindowSkip(t *testing.T) {
	d := deployment(2)
	d.Cameras, d.StopAt = []string{"a"}, map[int32]int64{0: 6}
	var items []*flow.Item
	for i := range 10 { // offsets 0..9, cameras a and b alternating
		items = append(items, record(0, int64(i), frame([]string{"a", "b"}[i%2], uint64(i/2+1), byte(i+1))))
	}
	for i, it := range runAll(t, flow.Config{Deployment: d, Model: &scoreModel{}}, items) {
		if want := i%2 == 0 && i < 6; it.Skip == want || (want && it.Result.Status != wire.StatusOK) || (!want && it.Payload != nil) {
			t.Fatalf("offset %d: skip %v, payload %d bytes, %+v", i, it.Skip, len(it.Payload), it.Result)
		}
	}
}

// A result too large for a record becomes an error result naming the reason; NaN scores
// never reach JSON (the detection is dropped, the rest of the result stays).
func TestOversizeAndNaNResults(t *testing.T) {
	items := []*flow.Item{record(0, 0, frame("cam", 1, 0xF0)), record(0, 1, frame("cam", 2, 0xF1)), record(0, 2, frame("cam", 3, 3))}
	got := runAll(t, flow.Config{Deployment: deployment(1), Model: &scoreModel{}}, items)
	if r := got[0].Result; r.Status != wire.StatusError || !strings.Contains(r.Error, "limit of a result record") || r.Raw != nil ||
		len(got[0].Payload) > flow.MaxResultBytes {
		t.Fatalf("oversize result (%d bytes): %+v", len(got[0].Payload), r.Error)
	}
	if r := got[1].Result; r.Status != wire.StatusOK || len(r.Detections) != 1 || r.Detections[0].Label != "y" {
		t.Fatalf("NaN result: %+v", r)
	}
	if r := got[2].Result; r.Status != wire.StatusOK {
		t.Fatalf("the frame after: %+v", r)
	}
}

// failingModel never works.
type failingModel struct{ runs atomic.Int64 }

func (m *failingModel) Run([][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	m.runs.Add(1)
	return nil, functions.BatchTimings{}, errors.New("device lost")
}

// At shutdown (ctx ends) a batch whose model run keeps failing is given up: its items
// come out without a result, so that the partition's next owner redoes them, and Run
// returns.
func TestShutdownGivesUpInFlightBatches(t *testing.T) {
	model := &failingModel{}
	var items []*flow.Item
	for i := range 8 {
		items = append(items, record(int32(i%2), int64(i/2), frame("cam", uint64(i+1), byte(i))))
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := start(ctx, flow.New(flow.Config{Deployment: deployment(2), Model: model, Lanes: 2, RetryBackoff: time.Hour}), items)
	for model.runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	n := 0
	timeout := time.After(10 * time.Second)
	for n < len(items) {
		select {
		case it, ok := <-out:
			if !ok {
				t.Fatalf("%d items out, want %d", n, len(items))
			}
			if !it.GivenUp || it.Payload != nil || it != items[n] {
				t.Fatalf("item %d: given up %v, payload %d bytes", n, it.GivenUp, len(it.Payload))
			}
			n++
		case <-timeout:
			t.Fatalf("%d items out 10 s after shutdown, want %d given up", n, len(items))
		}
	}
	if _, ok := <-out; ok {
		t.Fatal("more items than went in")
	}
}

// recordingStage tags each result with its place in the order it saw them and returns a
// checkpoint naming it.
type recordingStage struct{ seen []string }

func (s *recordingStage) Apply(r *wire.Result, _ time.Time) []byte {
	s.seen = append(s.seen, fmt.Sprintf("%s/%d", r.Camera, r.Seq))
	r.Detections[0].TrackID = uint64(len(s.seen))
	return []byte(s.seen[len(s.seen)-1])
}

func (s *recordingStage) CloseIdle(time.Time) {}

// The stage sees results in consumption order, before they are encoded; its checkpoint
// goes with the item.
func TestStageRunsInOrderBeforeEncoding(t *testing.T) {
	stage := &recordingStage{}
	var items []*flow.Item
	for i := range 40 {
		items = append(items, record(0, int64(i), frame(fmt.Sprintf("cam-%d", i%3), uint64(i+1), byte(i))))
	}
	got := runAll(t, flow.Config{Deployment: deployment(3), Model: &scoreModel{jitter: true}, Lanes: 2, Stage: stage}, items)
	for i, it := range got {
		want := fmt.Sprintf("cam-%d/%d", i%3, i+1)
		if stage.seen[i] != want || string(it.State) != want {
			t.Fatalf("result %d: the stage saw %q, checkpoint %q, want %q", i, stage.seen[i], it.State, want)
		}
		if !strings.Contains(string(it.Payload), fmt.Sprintf(`"track_id":%d`, i+1)) {
			t.Fatalf("result %d encoded before the stage ran: %s", i, it.Payload)
		}
	}
}

// stallModel holds its first run until release is closed, counting the runs.
type stallModel struct {
	runs    atomic.Int64
	release chan struct{}
}

func (m *stallModel) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	if m.runs.Add(1) == 1 {
		<-m.release
	}
	return make([]functions.FrameResult, len(frames)), functions.BatchTimings{}, nil
}

// A lane slow on one batch holds up the others after a few batches: the sequencer does
// not keep every batch they could finish meanwhile (its memory, and the records taken
// but not yet handed on, stay bounded), and everything comes out in order once it ends.
func TestSlowLaneHoldsUpTheOthersAfterAFewBatches(t *testing.T) {
	m := &stallModel{release: make(chan struct{})}
	var items []*flow.Item
	for i := range 50 {
		items = append(items, record(0, int64(i), frame("cam", uint64(i+1), byte(i))))
	}
	out := start(context.Background(), flow.New(flow.Config{Deployment: deployment(1), Model: m, Lanes: 2}), items)
	time.Sleep(200 * time.Millisecond)
	// 2 × lanes places, plus the batch before the held one when the held one is the
	// second (the lanes start in either order).
	if n := m.runs.Load(); n > 5 {
		t.Fatalf("%d batches run while one is held, want at most 5", n)
	}
	close(m.release)
	var offsets []int64
	for it := range out {
		offsets = append(offsets, it.Offset)
	}
	for i, off := range offsets {
		if off != int64(i) {
			t.Fatalf("came out in order %v", offsets)
		}
	}
	if len(offsets) != len(items) {
		t.Fatalf("%d items out of %d", len(offsets), len(items))
	}
}
