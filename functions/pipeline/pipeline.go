// Package pipeline turns encoded frames into results: it decodes them and lays them out
// with functions/vision (OpenCV, through gocv), infers them with a functions/onnx session
// and decodes the outputs with the spec's functions.Decoder. It is the function a runner
// runs. It knows nothing of Kafka or NATS.
//
// It is a package of its own, rather than part of functions/onnx, so that the session
// layer needs no OpenCV: a program that feeds its own tensors (cmd/diplip-gpucheck) links
// only libc. And not part of functions/vision, which knows pixels and nothing of models.
package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/functions/vision"
)

// Options are the session's options (device, lanes, threads, CUDA settings).
type Options = onnx.Options

// ErrClosed is returned by Run on a closed Function.
var ErrClosed = onnx.ErrClosed

// Function is a loaded function: its spec, its labels, its decoder and its session. Run
// is safe for concurrent use.
type Function struct {
	Spec *functions.Spec
	// DynamicBatch reports whether one Run call infers the whole batch (the model's batch
	// axis is dynamic) or one frame at a time (fixed at 1).
	DynamicBatch bool
	// Device is where the session runs, e.g. "cpu" or "cuda:0".
	Device string

	session *onnx.Session
	labels  []string
	decoder functions.Decoder
}

// Load reads the function in dir (function.yaml, its model and labels), checks the model
// against the spec and creates the session.
func Load(dir string, opts Options) (*Function, error) {
	spec, err := functions.LoadSpec(dir)
	if err != nil {
		return nil, err
	}
	return Open(dir, spec, opts)
}

// Open loads spec's labels and model, whose files are in dir, and creates the session
// (or sessions, see Options.Lanes).
func Open(dir string, spec *functions.Spec, opts Options) (*Function, error) {
	fn := &Function{Spec: spec}
	if spec.Labels != "" {
		b, err := os.ReadFile(filepath.Join(dir, spec.Labels))
		if err != nil {
			return nil, fmt.Errorf("labels: %w", err)
		}
		fn.labels = functions.ParseLabels(string(b))
	}
	fn.decoder, _ = functions.DecoderFor(spec.Output.Decoder) // the session's CheckModel fails for an unknown one
	s, err := onnx.Open(dir, spec, opts)
	if err != nil {
		return nil, err
	}
	fn.session, fn.DynamicBatch, fn.Device = s, s.DynamicBatch, s.Device
	return fn, nil
}

// Close waits for the Run calls in progress, then frees the session. Later Run calls
// return ErrClosed; later Close calls return the first one's result.
func (f *Function) Close() error { return f.session.Close() }

// Run decodes, preprocesses and infers a batch of encoded frames (JPEG or PNG) in one
// lane, waiting for a free one. Frames are decoded and laid out in parallel, with the
// lane's share of the CPUs (one goroutine per CPU with one lane; serially when the lanes
// are as many as the CPUs, since the lanes are then the parallelism). A frame that cannot
// be decoded gets a result with Err set; the others are processed. The error return is
// for failures of the whole batch (the runtime failed). Timings are summed over frames.
func (f *Function) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	var tm functions.BatchTimings
	results := make([]functions.FrameResult, len(frames))
	l, err := f.session.Lane()
	if err != nil {
		return results, tm, err
	}
	defer l.Release()

	n := f.session.FrameLen()
	// The lane's buffer needs no clearing: Fill writes every value of a frame's part.
	input := l.Input(len(frames))
	geoms := make([]functions.Geometry, len(frames))
	decode := make([]time.Duration, len(frames))
	prep := make([]time.Duration, len(frames))

	one := func(i int) {
		t0 := time.Now()
		m, err := vision.Decode(frames[i])
		decode[i] = time.Since(t0)
		if err != nil {
			results[i].Err = err
			return
		}
		t0 = time.Now()
		results[i].Width, results[i].Height = m.Cols(), m.Rows()
		geoms[i], results[i].Err = vision.Fill(m, f.Spec.Input, input[i*n:(i+1)*n])
		m.Close()
		prep[i] = time.Since(t0)
	}
	if workers := min(len(frames), runtime.NumCPU()/f.session.Lanes()); workers <= 1 {
		for i := range frames {
			one(i)
		}
	} else {
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Go(func() {
				for i := range next {
					one(i)
				}
			})
		}
		for i := range frames {
			next <- i
		}
		close(next)
		wg.Wait()
	}

	// Close the gaps failed frames left, so the tensor holds only good ones, in order.
	var ok []int
	for i := range frames {
		tm.Decode += decode[i]
		tm.Preprocess += prep[i]
		if results[i].Err == nil {
			if k := len(ok); k != i {
				copy(input[k*n:(k+1)*n], input[i*n:(i+1)*n])
			}
			ok = append(ok, i)
		}
	}
	if len(ok) == 0 {
		return results, tm, nil
	}

	err = f.inferDecode(l, input, ok, geoms, results, &tm)
	return results, tm, err
}

// inferDecode infers the first len(ok) frames of the lane's input and decodes each
// frame's outputs into results[ok[k]], mapped back with geoms[ok[k]].
func (f *Function) inferDecode(l *onnx.Lane, input []float32, ok []int, geoms []functions.Geometry,
	results []functions.FrameResult, tm *functions.BatchTimings) error {
	t0 := time.Now()
	outs, err := l.Infer(input, len(ok))
	tm.Infer = time.Since(t0)
	if err != nil {
		return err
	}
	t0 = time.Now()
	for k, i := range ok {
		tensors := make([]functions.Tensor, len(outs))
		for j, o := range outs {
			tensors[j] = o.Frame(k)
		}
		r, err := f.decoder.Decode(f.Spec, tensors, geoms[i], f.labels)
		r.Width, r.Height, r.Err = results[i].Width, results[i].Height, err
		results[i] = r
	}
	tm.Postprocess = time.Since(t0)
	return nil
}

// RunCrops is a second stage's run: it decodes one encoded frame, cuts out each box
// (source pixels, rounded outwards and clipped to the frame), lays each crop out as the
// spec's input, and infers the crops as one batch in one lane. results[i] answers
// boxes[i]: its Width and Height are the crop's, and any detections are in the frame's
// pixels. A box with no pixel inside the frame gets a result with Err set. The error
// return is for the frame (it cannot be decoded) or the whole batch (the runtime failed).
func (f *Function) RunCrops(frame []byte, boxes []functions.Box) ([]functions.FrameResult, functions.BatchTimings, error) {
	var tm functions.BatchTimings
	results := make([]functions.FrameResult, len(boxes))
	t0 := time.Now()
	m, err := vision.Decode(frame)
	tm.Decode = time.Since(t0)
	if err != nil {
		return results, tm, err
	}
	defer m.Close()
	if len(boxes) == 0 {
		return results, tm, nil
	}
	l, err := f.session.Lane()
	if err != nil {
		return results, tm, err
	}
	defer l.Release()
	n := f.session.FrameLen()
	input := l.Input(len(boxes))
	geoms := make([]functions.Geometry, len(boxes))
	var ok []int
	t0 = time.Now()
	for i, b := range boxes {
		crop, r, err := vision.Crop(m, b)
		if err != nil {
			results[i].Err = err
			continue
		}
		k := len(ok)
		g, err := vision.Fill(crop, f.Spec.Input, input[k*n:(k+1)*n])
		crop.Close()
		if err != nil {
			results[i].Err = err
			continue
		}
		// Map decoded boxes into the frame: the crop starts at r.Min.
		g.OffX -= int(float32(r.Min.X) * g.ScaleX)
		g.OffY -= int(float32(r.Min.Y) * g.ScaleY)
		g.SrcW, g.SrcH = m.Cols(), m.Rows()
		geoms[i] = g
		results[i].Width, results[i].Height = r.Dx(), r.Dy()
		ok = append(ok, i)
	}
	tm.Preprocess = time.Since(t0)
	if len(ok) == 0 {
		return results, tm, nil
	}
	err = f.inferDecode(l, input, ok, geoms, results, &tm)
	return results, tm, err
}

// RunCropsOf is RunCrops over several frames at once, for a second stage's batch: each
// frame is decoded once and the crops of every frame are inferred as one batch in one
// lane (the caller bounds how many). results[j][i] answers boxes[j][i]; frameErrs[j] says
// why frame j could not be decoded (its crops are not run). The error return is for the
// whole batch (the runtime failed).
func (f *Function) RunCropsOf(frames [][]byte, boxes [][]functions.Box) (results [][]functions.FrameResult, frameErrs []error, tm functions.BatchTimings, err error) {
	results, frameErrs = make([][]functions.FrameResult, len(frames)), make([]error, len(frames))
	total := 0
	for j := range frames {
		results[j] = make([]functions.FrameResult, len(boxes[j]))
		total += len(boxes[j])
	}
	if total == 0 {
		return results, frameErrs, tm, nil
	}
	l, err := f.session.Lane()
	if err != nil {
		return results, frameErrs, tm, err
	}
	defer l.Release()
	n := f.session.FrameLen()
	input := l.Input(total)
	flat := make([]functions.FrameResult, total)
	geoms := make([]functions.Geometry, total)
	var ok []int
	at := 0 // flat index of frame j's first box
	for j, frame := range frames {
		t0 := time.Now()
		m, err := vision.Decode(frame)
		tm.Decode += time.Since(t0)
		if err != nil {
			frameErrs[j] = err
			at += len(boxes[j])
			continue
		}
		t0 = time.Now()
		for i, b := range boxes[j] {
			crop, r, err := vision.Crop(m, b)
			if err != nil {
				flat[at+i].Err = err
				continue
			}
			k := len(ok)
			g, err := vision.Fill(crop, f.Spec.Input, input[k*n:(k+1)*n])
			crop.Close()
			if err != nil {
				flat[at+i].Err = err
				continue
			}
			g.OffX -= int(float32(r.Min.X) * g.ScaleX) // decoded boxes into the frame: the crop starts at r.Min
			g.OffY -= int(float32(r.Min.Y) * g.ScaleY)
			g.SrcW, g.SrcH = m.Cols(), m.Rows()
			geoms[at+i] = g
			flat[at+i].Width, flat[at+i].Height = r.Dx(), r.Dy()
			ok = append(ok, at+i)
		}
		m.Close()
		tm.Preprocess += time.Since(t0)
		at += len(boxes[j])
	}
	if len(ok) > 0 {
		err = f.inferDecode(l, input, ok, geoms, flat, &tm)
	}
	at = 0
	for j := range frames {
		copy(results[j], flat[at:at+len(boxes[j])])
		at += len(boxes[j])
	}
	return results, frameErrs, tm, err
}
