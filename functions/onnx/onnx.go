// Package onnx runs a model with ONNX Runtime (through onnxruntime_go): it loads the
// session on the CPU or a CUDA device, checks the model against the function spec, and
// runs float32 tensors in and out, in lanes. It knows nothing of Kafka or NATS, and
// nothing of pixels: decoding frames and laying them out is functions/vision's (gocv),
// and the frame pipeline that joins the two is functions/pipeline. So a program that
// feeds its own tensors (cmd/diplip-gpucheck) links only libc and the ONNX Runtime
// library it opens at run time.
//
// ONNX Runtime's environment is process-wide; Init sets it up once, finding the shared
// library that setup installed (or DIPLIP_ORT_LIB).
package onnx

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diplip/diplip/functions"
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

// Version is the loaded ONNX Runtime's version, e.g. "1.32.0" (Init first).
func Version() string {
	if Init() != nil {
		return ""
	}
	return ort.GetVersion()
}

// Options choose where and how a session runs.
type Options struct {
	// Device is "cpu" (default) or "cuda:N".
	Device string
	// IntraOpThreads for the CPU provider, per lane. Default: the number of CPUs divided
	// by Lanes, at least 1.
	IntraOpThreads int
	// Lanes is how many runs may work at once, so that the caller can keep Lanes
	// batches in flight from as many goroutines; further concurrent calls wait for a free
	// lane. It pays only when the caller does keep them in flight. Default 1: one
	// session, which a single caller drives with all the CPUs' intra-op threads.
	// DefaultLanes gives the count that measured best on the CPU.
	//
	// On the CPU with one intra-op thread per lane, the lanes share one session: its Run
	// then works on the calling goroutine's thread alone, and sharing measured as fast as
	// a session per lane (66 against 67 frames/s, YOLOX-Nano on 2 cores) for about 15 MB
	// of memory per lane instead of 28. Otherwise each lane has a session of its own,
	// with its own intra-op thread pool (or, on a GPU, its own CUDA stream and memory
	// arena).
	Lanes int
	// Sessions overrides that choice: 1 makes all lanes share one session, Lanes gives
	// each lane its own. Default 0: as Lanes describes. BenchmarkLanes compares them.
	Sessions int
	// Spin lets ONNX Runtime's idle intra-op threads spin-wait for the next run. It shaves
	// a little off a dedicated loop but burns cores that Kafka, the gateway and the
	// runner's own I/O need on a shared machine, so it is off by default.
	Spin bool
	// GPUMemLimit caps the CUDA provider's memory arena, in bytes, per session (so a
	// runner with L lanes on a GPU may hold up to L × GPUMemLimit). Default 0: no cap
	// (the provider's default, the whole device). Only for cuda:N.
	GPUMemLimit int64
	// ArenaExtendStrategy is how the CUDA arena grows: "kNextPowerOfTwo" (the provider's
	// default; fewer, larger allocations) or "kSameAsRequested" (exactly what is asked;
	// the better fit under a GPUMemLimit). Default "": the provider's. Only for cuda:N.
	ArenaExtendStrategy string
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

// Session is a model loaded for a spec: its lanes, each with an ONNX Runtime session
// (its own or a shared one) and an input buffer. Its methods are safe for concurrent use.
type Session struct {
	Spec *functions.Spec
	// DynamicBatch reports whether one run infers the whole batch (the model's batch
	// axis is dynamic) or one frame at a time (fixed at 1).
	DynamicBatch bool
	// Device is where the session runs, e.g. "cpu" or "cuda:0".
	Device string

	// lanes is how many runs work at once; a run takes a lane from free and gives it
	// back. Close takes them all, then closes done and destroys the sessions.
	lanes     int
	free      chan *Lane
	sessions  []*ort.DynamicAdvancedSession
	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

// Lane is what one run holds: a session (shared by all lanes when the session was
// opened with a single one) and the input buffer it reuses between runs. A Lane is used
// by one goroutine at a time, between Session.Lane and Lane.Release.
type Lane struct {
	s       *Session
	session *ort.DynamicAdvancedSession
	input   []float32
}

// Open loads the model spec names, in dir, checks it against spec and creates the
// session (or sessions, see Options.Lanes) on opts.Device. A device that cannot be used
// (no CUDA provider, a library it needs missing, no such GPU) is an error wrapping
// ErrDeviceUnavailable that says which.
func Open(dir string, spec *functions.Spec, opts Options) (*Session, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	modelPath := modelPath(dir, spec)
	ins, outs, err := ModelTensors(modelPath)
	if err != nil {
		return nil, err
	}
	s := &Session{Spec: spec}
	if s.DynamicBatch, err = spec.CheckModel(ins, outs); err != nil {
		return nil, fmt.Errorf("%s does not match %s: %w", spec.Model, functions.SpecFile, err)
	}

	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx session options: %w", err)
	}
	defer so.Destroy()
	s.lanes = max(1, opts.Lanes)
	threads := opts.IntraOpThreads
	if threads <= 0 {
		threads = max(1, runtime.NumCPU()/s.lanes)
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
	s.Device = "cpu"
	if d := opts.Device; d != "" && d != "cpu" {
		if err := appendCUDA(so, d, opts); err != nil {
			return nil, err
		}
		s.Device = d
	} else if opts.GPUMemLimit != 0 || opts.ArenaExtendStrategy != "" {
		return nil, fmt.Errorf("device cpu: the GPU memory limit and arena strategy are options of cuda:N devices")
	}
	sessions := opts.Sessions
	if sessions <= 0 {
		sessions = s.lanes
		if threads == 1 && s.Device == "cpu" {
			sessions = 1
		}
	}
	for range min(sessions, s.lanes) {
		sess, err := ort.NewDynamicAdvancedSession(modelPath, []string{spec.Input.Tensor}, spec.Output.Tensors, so)
		if err != nil {
			for _, sess := range s.sessions {
				sess.Destroy()
			}
			if s.Device != "cpu" {
				return nil, cudaFailed(s.Device, fmt.Errorf("loading %s: %w", modelPath, err))
			}
			return nil, fmt.Errorf("loading %s with onnx runtime on %s: %w", modelPath, s.Device, err)
		}
		s.sessions = append(s.sessions, sess)
	}
	s.free = make(chan *Lane, s.lanes)
	for i := range s.lanes {
		s.free <- &Lane{s: s, session: s.sessions[i%len(s.sessions)]}
	}
	s.done = make(chan struct{})
	return s, nil
}

// Lanes is how many runs the session works on at once (Options.Lanes).
func (s *Session) Lanes() int { return s.lanes }

// FrameLen is the number of float32 values one frame takes in the input tensor.
func (s *Session) FrameLen() int { return FrameLen(s.Spec.Input) }

// FrameLen is the number of float32 values one frame of in takes in the input tensor.
func FrameLen(in functions.Input) int { return 3 * in.Width * in.Height }

// ErrClosed is returned by Lane and Infer on a closed Session.
var ErrClosed = errors.New("onnx: session closed")

// Lane waits for a free lane and takes it; the caller gives it back with Release.
func (s *Session) Lane() (*Lane, error) {
	select {
	case l := <-s.free:
		return l, nil
	case <-s.done:
		return nil, ErrClosed
	}
}

// Release gives the lane back to its session.
func (l *Lane) Release() { l.s.free <- l }

// Input returns the lane's input buffer for n frames laid back to back, FrameLen values
// each. It is reused by the lane's next run, and not cleared: the caller writes it all.
func (l *Lane) Input(n int) []float32 {
	need := n * l.s.FrameLen()
	if cap(l.input) < need {
		l.input = make([]float32, need)
	}
	return l.input[:need]
}

// Infer runs the model on the first n frames of the lane's input buffer (or of input,
// when it is not the lane's buffer) and returns the outputs spec.Output.Tensors names,
// in that order. A model with a fixed batch axis runs once per frame.
func (l *Lane) Infer(input []float32, n int) ([]Output, error) {
	s := l.s
	per := s.FrameLen()
	if n <= 0 || len(input) < n*per {
		return nil, fmt.Errorf("onnx input: %d values for %d frames of %d", len(input), n, per)
	}
	in := s.Spec.Input
	shape := ort.NewShape(1, 3, int64(in.Height), int64(in.Width))
	if in.Layout == "NHWC" {
		shape = ort.NewShape(1, int64(in.Height), int64(in.Width), 3)
	}
	runs := [][2]int{{0, n}} // [first frame, frame count] per Run call
	if !s.DynamicBatch {
		runs = runs[:0]
		for i := range n {
			runs = append(runs, [2]int{i, 1})
		}
	}
	outs := make([]Output, len(s.Spec.Output.Tensors))
	for _, r := range runs {
		shape[0] = int64(r[1])
		t, err := ort.NewTensor(shape, input[r[0]*per:(r[0]+r[1])*per])
		if err != nil {
			return nil, fmt.Errorf("onnx input tensor: %w", err)
		}
		values := make([]ort.Value, len(outs))
		err = l.session.Run([]ort.Value{t}, values)
		t.Destroy()
		if err != nil {
			return nil, fmt.Errorf("onnx run (%d frames) on %s: %w", r[1], s.Device, err)
		}
		for j, v := range values {
			ft, isFloat := v.(*ort.Tensor[float32])
			if !isFloat {
				for _, v := range values[j:] {
					v.Destroy()
				}
				return nil, fmt.Errorf("output %q is not a float32 tensor", s.Spec.Output.Tensors[j])
			}
			outs[j].Name = s.Spec.Output.Tensors[j]
			if len(runs) == 1 {
				// The tensor's data is a Go copy of what ONNX Runtime wrote, which
				// outlives the tensor: no need to copy it again.
				outs[j].Data = ft.GetData()
			} else {
				d := ft.GetData()
				if outs[j].Data == nil { // the whole batch's room at once: appending frame by frame regrew it (~5 MB a frame for YOLOX-Nano)
					outs[j].Data = make([]float32, 0, len(d)*len(runs))
				}
				outs[j].Data = append(outs[j].Data, d...)
			}
			outs[j].Shape = append([]int64(nil), ft.GetShape()[1:]...)
			v.Destroy()
		}
	}
	return outs, nil
}

// Infer takes a lane, runs the model on n frames laid back to back in input, and gives
// the lane back.
func (s *Session) Infer(input []float32, n int) ([]Output, error) {
	l, err := s.Lane()
	if err != nil {
		return nil, err
	}
	defer l.Release()
	return l.Infer(input, n)
}

// Output is one output tensor's values for a whole batch, and its shape per frame.
type Output struct {
	Name  string
	Data  []float32
	Shape []int64 // without the batch axis
}

// Frame returns frame k's slice of the output.
func (o Output) Frame(k int) functions.Tensor {
	n := 1
	for _, d := range o.Shape {
		n *= int(d)
	}
	return functions.Tensor{Name: o.Name, Shape: o.Shape, Data: o.Data[k*n : (k+1)*n]}
}

// Close waits for the runs in progress, then frees the sessions. Later runs return
// ErrClosed; later Close calls return the first one's result.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		for range s.lanes {
			<-s.free
		}
		close(s.done)
		var errs []error
		for _, sess := range s.sessions {
			errs = append(errs, sess.Destroy())
		}
		s.sessions = nil
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
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
			ts = append(ts, functions.TensorInfo{Name: i.Name, Shape: append([]int64(nil), i.Dimensions...)})
		}
		return ts
	}
	return conv(ins), conv(outs), nil
}
