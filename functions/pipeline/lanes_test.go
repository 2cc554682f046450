package pipeline_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/functions/vision"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/testkit"
)

// Lanes change where a frame is inferred, not what comes out: Run called from 4
// goroutines on 2 lanes (sharing a session, or a session each) gives each frame the
// detections a serial run gives it, and a corrupt frame still fails alone.
func TestConcurrentLanesMatchSerial(t *testing.T) {
	// One intra-op thread on both sides, so the arithmetic is the same and the
	// detections must be equal, not only close.
	serial, err := pipeline.Load("../examples/yolox-nano", pipeline.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer serial.Close()
	frames := [][]byte{testkit.Media(t, "astronaut.png"), testkit.Media(t, "vtest_frame600.jpg"), testkit.Media(t, "chelsea.png")}
	want := make([]functions.FrameResult, len(frames))
	for i, f := range frames {
		res, _, err := serial.Run([][]byte{f})
		if err != nil || res[0].Err != nil {
			t.Fatalf("serial frame %d: %v %v", i, err, res[0].Err)
		}
		want[i] = res[0]
	}
	if _, ok := find(want[0].Detections, "person", functions.Box{X1: 11, Y1: 20, X2: 369, Y2: 507}, 8); !ok {
		t.Fatalf("astronaut: no person found serially: %+v", want[0].Detections)
	}

	spec, dir := exampleSpec(t)
	for _, tc := range []struct {
		name     string
		sessions int
	}{{"default", 0}, {"shared session", 1}, {"session per lane", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			laned, err := pipeline.Open(dir, spec, pipeline.Options{Lanes: 2, IntraOpThreads: 1, Sessions: tc.sessions})
			if err != nil {
				t.Fatal(err)
			}
			defer laned.Close()
			runConcurrently(t, laned, frames, want)
		})
	}
}

// runConcurrently runs each frame 3 times from each of 4 goroutines, half of the runs in
// a batch after a corrupt frame, and checks the results against want.
func runConcurrently(t *testing.T, laned *pipeline.Function, frames [][]byte, want []functions.FrameResult) {
	corrupt := []byte("\xff\xd8\xff\xe0 not really a jpeg")
	var wg sync.WaitGroup
	errs := make(chan error, 4*3*len(frames))
	for g := range 4 {
		wg.Go(func() {
			for r := range 3 {
				for k := range frames {
					i := (g + r + k) % len(frames)
					batch := [][]byte{frames[i]}
					if (g+r)%2 == 1 {
						batch = [][]byte{corrupt, frames[i]}
					}
					res, _, err := laned.Run(batch)
					if err != nil {
						errs <- fmt.Errorf("goroutine %d: %w", g, err)
						return
					}
					got := res[len(res)-1]
					if len(res) == 2 && !errors.Is(res[0].Err, vision.ErrCorruptFrame) {
						errs <- fmt.Errorf("goroutine %d: corrupt frame: err = %v", g, res[0].Err)
					}
					if got.Err != nil || got.Width != want[i].Width || got.Height != want[i].Height || !slices.Equal(got.Detections, want[i].Detections) {
						errs <- fmt.Errorf("goroutine %d frame %d: got %+v, want %+v", g, i, got, want[i])
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Close waits for the runs in progress; a later Run fails with ErrClosed, and a second
// Close is harmless.
func TestCloseWaitsForRunsAndRefusesLaterOnes(t *testing.T) {
	fn, err := pipeline.Load("../examples/yolox-nano", pipeline.Options{Lanes: 2, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	frame := testkit.Media(t, "vtest_frame600.jpg")
	var wg sync.WaitGroup
	ran := make(chan struct{}, 2)
	for range 2 {
		wg.Go(func() {
			for i := range 4 {
				if _, _, err := fn.Run([][]byte{frame}); err != nil && !errors.Is(err, pipeline.ErrClosed) {
					t.Error(err)
				}
				if i == 0 {
					ran <- struct{}{}
				}
			}
		})
	}
	// Close while both goroutines are running their later frames.
	<-ran
	<-ran
	if err := fn.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, _, err := fn.Run([][]byte{frame}); !errors.Is(err, pipeline.ErrClosed) {
		t.Fatalf("Run after Close: err = %v, want ErrClosed", err)
	}
	if err := fn.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// sampleFrames returns the first n frames of the sample MJPEG video (768×576 JPEGs).
func sampleFrames(tb testing.TB, n int) [][]byte {
	tb.Helper()
	p, err := assets.Media("vtest_10s.mjpeg")
	if err != nil {
		tb.Skip(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	// A baseline JPEG's entropy-coded data stuffs every 0xFF, so a start-of-image marker
	// followed by another marker only begins a frame.
	soi := []byte{0xff, 0xd8, 0xff}
	var frames [][]byte
	for len(frames) < n {
		i := bytes.Index(b, soi)
		if i < 0 {
			break
		}
		b = b[i:]
		j := bytes.Index(b[len(soi):], soi)
		if j < 0 {
			frames = append(frames, b)
			break
		}
		frames = append(frames, b[:len(soi)+j])
		b = b[len(soi)+j:]
	}
	if len(frames) < n {
		tb.Fatalf("%s: %d frames, want %d", p, len(frames), n)
	}
	return frames
}

// BenchmarkLanes runs YOLOX-Nano on the sample video's frames, one frame per Run, from
// as many goroutines as lanes, and reports frames/s: one session with all the CPUs'
// threads called serially, against lanes with a session each or lanes sharing one.
//
//	go test -run XXX -bench Lanes -benchtime 200x -count 3 ./functions/pipeline/
func BenchmarkLanes(b *testing.B) {
	spec, dir := exampleSpec(b)
	frames := sampleFrames(b, 50)
	cpus := runtime.NumCPU()
	type config struct {
		lanes, threads int
		shared         bool
	}
	configs := []config{{1, cpus, false}, {1, 1, false}, {cpus, 1, false}, {cpus, 1, true}, {2 * cpus, 1, false}}
	if cpus >= 4 {
		configs = append(configs, config{cpus / 2, 2, false})
	}
	for _, c := range configs {
		name := fmt.Sprintf("lanes=%d/threads=%d/sessions", c.lanes, c.threads)
		if c.shared {
			name = fmt.Sprintf("lanes=%d/threads=%d/shared", c.lanes, c.threads)
		}
		b.Run(name, func(b *testing.B) {
			sessions := c.lanes
			if c.shared {
				sessions = 1
			}
			fn, err := pipeline.Open(dir, spec, pipeline.Options{Lanes: c.lanes, IntraOpThreads: c.threads, Sessions: sessions})
			if err != nil {
				b.Fatal(err)
			}
			defer fn.Close()
			runFrames(b, fn, frames, c.lanes)
		})
	}
}

// BenchmarkFrames runs YOLOX-Nano on the sample video's frames one at a time with the
// default options (one lane, a thread per CPU), reporting where the time goes. Run it
// with DIPLIP_ORT_LIB set to compare ONNX Runtime builds.
func BenchmarkFrames(b *testing.B) {
	spec, dir := exampleSpec(b)
	frames := sampleFrames(b, 50)
	fn, err := pipeline.Open(dir, spec, pipeline.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer fn.Close()
	if lib, err := assets.ORTLibrary(); err == nil {
		b.Logf("onnx runtime: %s", lib)
	}
	runFrames(b, fn, frames, 1)
}

// runFrames runs b.N frames through fn from goroutines goroutines, one frame per Run,
// after a warm-up run per goroutine, and reports frames/s and the per-frame stages.
func runFrames(b *testing.B, fn *pipeline.Function, frames [][]byte, goroutines int) {
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			if _, _, err := fn.Run([][]byte{frames[g%len(frames)]}); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	var (
		next atomic.Int64
		mu   sync.Mutex
		tm   functions.BatchTimings
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range goroutines {
		wg.Go(func() {
			var own functions.BatchTimings
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					break
				}
				res, t, err := fn.Run([][]byte{frames[int(i)%len(frames)]})
				if err == nil {
					err = res[0].Err
				}
				if err != nil {
					b.Error(err)
					return
				}
				own.Decode += t.Decode
				own.Preprocess += t.Preprocess
				own.Infer += t.Infer
				own.Postprocess += t.Postprocess
			}
			mu.Lock()
			tm.Decode += own.Decode
			tm.Preprocess += own.Preprocess
			tm.Infer += own.Infer
			tm.Postprocess += own.Postprocess
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / n / 1000 }
	b.ReportMetric(n/elapsed.Seconds(), "frames/s")
	b.ReportMetric(ms(tm.Decode), "decode-ms")
	b.ReportMetric(ms(tm.Preprocess), "preprocess-ms")
	b.ReportMetric(ms(tm.Infer), "infer-ms")
	b.ReportMetric(ms(tm.Postprocess), "post-ms")
}

func exampleSpec(tb testing.TB) (*functions.Spec, string) {
	dir := "../examples/yolox-nano"
	spec, err := functions.LoadSpec(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return spec, dir
}

// BenchmarkRunBatch8 runs YOLOX-Nano (a fixed batch of 1: one Run per frame) on batches
// of 8 frames as a runner does, reporting the bytes allocated per batch: the outputs of a
// batch are gathered into one slice per output tensor.
func BenchmarkRunBatch8(b *testing.B) {
	spec, dir := exampleSpec(b)
	frames := sampleFrames(b, 8)
	fn, err := pipeline.Open(dir, spec, pipeline.Options{Lanes: 1, IntraOpThreads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer fn.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := fn.Run(frames); err != nil {
			b.Fatal(err)
		}
	}
}
