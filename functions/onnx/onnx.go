// Package onnx runs a function's model with ONNX Runtime (through onnxruntime_go): it
// loads the session, checks the model against the function spec, and turns a batch of
// encoded frames into results. It knows nothing of Kafka or NATS.
//
// ONNX Runtime's environment is process-wide; Init sets it up once, finding the shared
// library that setup installed (or DIPLIP_ORT_LIB).
package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/vision"
	"github.com/diplip/diplip/internal/assets"
)

var (
	initOnce sync.Once
	initErr  error
)

// Init loads the ONNX Runtime shared library and creates its environment, once per
// process. Later calls return the first call's result.
func Init() error {
	initOnce.Do(func() {
		lib, err := assets.ORTLibrary()
		if err != nil {
			initErr = fmt.Errorf("onnx runtime library: %w", err)
			return
		}
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			initErr = fmt.Errorf("initialising onnx runtime from %s (want version ≥ 1.24): %w", lib, err)
		}
	})
	return initErr
}

// Options choose where and how a session runs.
type Options struct {
	// Device is "cpu" (default) or "cuda:N".
	Device string
	// IntraOpThreads for the CPU provider, per lane. Default: the number of CPUs divided
	// by Lanes, at least 1.
	IntraOpThreads int
	// Lanes is how many Run calls may work at once, so that the caller can keep Lanes
	// batches in flight from as many goroutines; further concurrent calls wait for a free
	// lane. It pays only when the caller does keep them in flight. Default 1: one
	// session, which a single caller drives with all the CPUs' intra-op threads.
	// DefaultLanes gives the count that measured best.
	//
	// On the CPU with one intra-op thread per lane, the lanes share one session: its Run
	// then works on the calling goroutine's thread alone, and sharing measured as fast as
	// a session per lane (66 against 67 frames/s, YOLOX-Nano on 2 cores) for about 15 MB
	// of memory per lane instead of 28. Otherwise each lane has a session of its own,
	// with its own intra-op thread pool (or CUDA stream).
	Lanes int
	// Spin lets ONNX Runtime's idle intra-op threads spin-wait for the next run. It shaves
	// a little off a dedicated loop but burns cores that Kafka, the gateway and the
	// runner's own I/O need on a shared machine, so it is off by default.
	Spin bool
}

// DefaultLanes is the number of lanes to run a small model (YOLOX-Nano class) with on
// cpus CPUs, leaving IntraOpThreads at its default: one lane per CPU, each inferring on
// one thread. Small models parallelise poorly inside one run, so whole runs side by side
// keep the cores busier: on a 2-core Xeon, BenchmarkLanes (ONNX Runtime 1.32, YOLOX-Nano,
// one 768×576 frame per Run) ran about 66 frames/s as 2 lanes × 1 thread against 41 as
// 1 lane × 2 threads, and 62 as 4 lanes × 1 thread (more lanes than CPUs gain nothing).
// Larger machines were not measured; the memory grows by about 15 MB per lane.
func DefaultLanes(cpus int) int {
	return max(1, cpus)
}

// Function is a loaded function: its spec, its labels and its lanes, each with an ONNX
// Runtime session (its own or a shared one) and an input buffer. Run is safe for
// concurrent use.
type Function struct {
	Spec *functions.Spec
	// DynamicBatch reports whether one Run call runs the whole batch (the model's batch
	// axis is dynamic) or one frame at a time (fixed at 1).
	DynamicBatch bool
	// Device is where the session runs, e.g. "cpu" or "cuda:0".
	Device string

	labels  []string
	decoder functions.Decoder
	// lanes is how many Run calls work at once; a Run takes a lane from free and gives it
	// back. Close takes them all, then closes done and destroys the sessions.
	lanes     int
	free      chan *lane
	sessions  []*ort.DynamicAdvancedSession
	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

// lane is what one Run call holds: a session (shared by all lanes when the function was
// opened with a single session) and the input buffer it reuses between runs.
type lane struct {
	session *ort.DynamicAdvancedSession
	input   []float32
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

// Open creates the session (or sessions, see Options.Lanes) for spec, whose files are in
// dir.
func Open(dir string, spec *functions.Spec, opts Options) (*Function, error) {
	return open(dir, spec, opts, 0)
}

// open creates the function with sessions sessions for its lanes, or with 0 as
// Options.Lanes says. BenchmarkLanes measures the choices.
func open(dir string, spec *functions.Spec, opts Options, sessions int) (*Function, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	modelPath := filepath.Join(dir, spec.Model)
	fn := &Function{Spec: spec}
	if spec.Labels != "" {
		b, err := os.ReadFile(filepath.Join(dir, spec.Labels))
		if err != nil {
			return nil, fmt.Errorf("labels: %w", err)
		}
		fn.labels = functions.ParseLabels(string(b))
	}
	ins, outs, err := ModelTensors(modelPath)
	if err != nil {
		return nil, err
	}
	fn.decoder, _ = functions.DecoderFor(spec.Output.Decoder) // CheckModel fails for an unknown one
	if fn.DynamicBatch, err = spec.CheckModel(ins, outs); err != nil {
		return nil, fmt.Errorf("%s does not match %s: %w", spec.Model, functions.SpecFile, err)
	}

	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx session options: %w", err)
	}
	defer so.Destroy()
	fn.lanes = max(1, opts.Lanes)
	threads := opts.IntraOpThreads
	if threads <= 0 {
		threads = max(1, runtime.NumCPU()/fn.lanes)
	}
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("onnx intra-op threads: %w", err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("onnx inter-op threads: %w", err)
	}
	if !opts.Spin {
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return nil, fmt.Errorf("onnx session config: %w", err)
		}
	}
	fn.Device = "cpu"
	if d := opts.Device; d != "" && d != "cpu" {
		if err := appendCUDA(so, d); err != nil {
			return nil, err
		}
		fn.Device = d
	}
	if sessions <= 0 {
		sessions = fn.lanes
		if threads == 1 && fn.Device == "cpu" {
			sessions = 1
		}
	}
	for range min(sessions, fn.lanes) {
		s, err := ort.NewDynamicAdvancedSession(modelPath, []string{spec.Input.Tensor}, spec.Output.Tensors, so)
		if err != nil {
			for _, s := range fn.sessions {
				s.Destroy()
			}
			return nil, fmt.Errorf("loading %s with onnx runtime on %s: %w", modelPath, fn.Device, err)
		}
		fn.sessions = append(fn.sessions, s)
	}
	fn.free = make(chan *lane, fn.lanes)
	for i := range fn.lanes {
		fn.free <- &lane{session: fn.sessions[i%len(fn.sessions)]}
	}
	fn.done = make(chan struct{})
	return fn, nil
}

func appendCUDA(so *ort.SessionOptions, device string) error {
	idx, ok := strings.CutPrefix(device, "cuda:")
	if _, err := strconv.Atoi(idx); !ok || err != nil {
		return fmt.Errorf("device %q: want cpu or cuda:N", device)
	}
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("device %s: the CUDA provider is not available in this ONNX Runtime: %w", device, err)
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": idx}); err != nil {
		return fmt.Errorf("device %s: %w", device, err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return fmt.Errorf("device %s: %w", device, err)
	}
	return nil
}

// ModelTensors reads a model's inputs and outputs without creating a session for it.
func ModelTensors(modelPath string) (inputs, outputs []functions.TensorInfo, err error) {
	if err := Init(); err != nil {
		return nil, nil, err
	}
	ins, outs, err := ort.GetInputOutputInfo(modelPath)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s as an ONNX model: %w", modelPath, err)
	}
	conv := func(infos []ort.InputOutputInfo) []functions.TensorInfo {
		var ts []functions.TensorInfo
		for _, i := range infos {
			ts = append(ts, functions.TensorInfo{Name: i.Name, Shape: slicesInt64(i.Dimensions)})
		}
		return ts
	}
	return conv(ins), conv(outs), nil
}

func slicesInt64(s ort.Shape) []int64 { return append([]int64(nil), s...) }

// ErrClosed is returned by Run on a closed Function.
var ErrClosed = errors.New("onnx: function closed")

// Close waits for the Run calls in progress, then frees the sessions. Later Run calls
// return ErrClosed; later Close calls return the first one's result.
func (f *Function) Close() error {
	f.closeOnce.Do(func() {
		for range f.lanes {
			<-f.free
		}
		close(f.done)
		var errs []error
		for _, s := range f.sessions {
			errs = append(errs, s.Destroy())
		}
		f.sessions = nil
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

// Run decodes, preprocesses and infers a batch of encoded frames (JPEG or PNG) in one
// lane, waiting for a free one. Frames are decoded and laid out in parallel, with the
// lane's share of the CPUs (one goroutine per CPU with one lane; serially when the lanes
// are as many as the CPUs, since the lanes are then the parallelism). A frame that cannot
// be decoded gets a result with Err set; the others are processed. The error return is
// for failures of the whole batch (the runtime failed). Timings are summed over frames.
func (f *Function) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	var tm functions.BatchTimings
	results := make([]functions.FrameResult, len(frames))
	var l *lane
	select {
	case l = <-f.free:
	case <-f.done:
		return results, tm, ErrClosed
	}
	defer func() { f.free <- l }()

	n := vision.TensorLen(f.Spec.Input)
	// The lane's buffer needs no clearing: Fill writes every value of a frame's part.
	if cap(l.input) < len(frames)*n {
		l.input = make([]float32, len(frames)*n)
	}
	input := l.input[:len(frames)*n]
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
	if workers := min(len(frames), runtime.NumCPU()/f.lanes); workers <= 1 {
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

	t0 := time.Now()
	outs, err := f.infer(l.session, input[:len(ok)*n], len(ok))
	tm.Infer = time.Since(t0)
	if err != nil {
		return results, tm, err
	}
	t0 = time.Now()
	for k, i := range ok {
		tensors := make([]functions.Tensor, len(outs))
		for j, o := range outs {
			tensors[j] = o.frame(k)
		}
		r, err := f.decoder.Decode(f.Spec, tensors, geoms[i], f.labels)
		r.Width, r.Height, r.Err = results[i].Width, results[i].Height, err
		results[i] = r
	}
	tm.Postprocess = time.Since(t0)
	return results, tm, nil
}

// output is one output tensor's values for the whole batch and its per-frame shape.
type output struct {
	name  string
	data  []float32
	shape []int64 // without the batch axis
}

// infer runs the model in session on n frames laid out back to back in input.
func (f *Function) infer(session *ort.DynamicAdvancedSession, input []float32, n int) ([]output, error) {
	in := f.Spec.Input
	shape := ort.NewShape(1, 3, int64(in.Height), int64(in.Width))
	if in.Layout == "NHWC" {
		shape = ort.NewShape(1, int64(in.Height), int64(in.Width), 3)
	}
	per := len(input) / n
	runs := [][2]int{{0, n}} // [first frame, frame count] per Run call
	if !f.DynamicBatch {
		runs = runs[:0]
		for i := range n {
			runs = append(runs, [2]int{i, 1})
		}
	}
	outs := make([]output, len(f.Spec.Output.Tensors))
	for _, r := range runs {
		shape[0] = int64(r[1])
		t, err := ort.NewTensor(shape, input[r[0]*per:(r[0]+r[1])*per])
		if err != nil {
			return nil, fmt.Errorf("onnx input tensor: %w", err)
		}
		values := make([]ort.Value, len(outs))
		err = session.Run([]ort.Value{t}, values)
		t.Destroy()
		if err != nil {
			return nil, fmt.Errorf("onnx run (%d frames): %w", r[1], err)
		}
		for j, v := range values {
			ft, isFloat := v.(*ort.Tensor[float32])
			if !isFloat {
				v.Destroy()
				return nil, fmt.Errorf("output %q is not a float32 tensor", f.Spec.Output.Tensors[j])
			}
			outs[j].name = f.Spec.Output.Tensors[j]
			if len(runs) == 1 {
				// The tensor's data is a Go copy of what ONNX Runtime wrote, which
				// outlives the tensor: no need to copy it again.
				outs[j].data = ft.GetData()
			} else {
				outs[j].data = append(outs[j].data, ft.GetData()...)
			}
			outs[j].shape = slicesInt64(ft.GetShape()[1:])
			v.Destroy()
		}
	}
	return outs, nil
}

// frame returns frame k's slice of the output.
func (o output) frame(k int) functions.Tensor {
	n := 1
	for _, d := range o.shape {
		n *= int(d)
	}
	return functions.Tensor{Name: o.name, Shape: o.shape, Data: o.data[k*n : (k+1)*n]}
}

// Devices lists where this process can run models: "cpu", then "cuda:0" when the ONNX
// Runtime library has a working CUDA provider. It loads ONNX Runtime (Init) to ask; a
// process that need not hold the runtime before it runs a model (an idle runner) should
// call ProbeDevices instead.
func Devices() []string {
	devs := []string{"cpu"}
	if Init() != nil {
		return devs
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return devs
	}
	defer so.Destroy()
	if appendCUDA(so, "cuda:0") == nil {
		devs = append(devs, "cuda:0")
	}
	return devs
}
