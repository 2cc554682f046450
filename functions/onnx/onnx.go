// Package onnx runs a function's model with ONNX Runtime (through onnxruntime_go): it
// loads the session, checks the model against the function spec, and turns a batch of
// encoded frames into results. It knows nothing of Kafka or NATS.
//
// ONNX Runtime's environment is process-wide; Init sets it up once, finding the shared
// library that setup installed (or DIPLIP_ORT_LIB).
package onnx

import (
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
	// IntraOpThreads for the CPU provider. Default: the number of CPUs.
	IntraOpThreads int
	// Spin lets ONNX Runtime's idle intra-op threads spin-wait for the next run. It shaves
	// a little off a dedicated loop but burns cores that Kafka, the gateway and the
	// runner's own I/O need on a shared machine, so it is off by default.
	Spin bool
}

// Function is a loaded function: its spec, its labels and an ONNX Runtime session.
// Run is safe for concurrent use (ONNX Runtime sessions are).
type Function struct {
	Spec *functions.Spec
	// DynamicBatch reports whether one Run call runs the whole batch (the model's batch
	// axis is dynamic) or one frame at a time (fixed at 1).
	DynamicBatch bool
	// Device is where the session runs, e.g. "cpu" or "cuda:0".
	Device string

	labels  []string
	decoder functions.Decoder
	session *ort.DynamicAdvancedSession
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

// Open creates the session for spec, whose files are in dir.
func Open(dir string, spec *functions.Spec, opts Options) (*Function, error) {
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
	threads := opts.IntraOpThreads
	if threads <= 0 {
		threads = runtime.NumCPU()
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
	fn.session, err = ort.NewDynamicAdvancedSession(modelPath, []string{spec.Input.Tensor}, spec.Output.Tensors, so)
	if err != nil {
		return nil, fmt.Errorf("loading %s with onnx runtime on %s: %w", modelPath, fn.Device, err)
	}
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

// Close frees the session. The Function must not be used afterwards.
func (f *Function) Close() error {
	if f.session == nil {
		return nil
	}
	err := f.session.Destroy()
	f.session = nil
	return err
}

// Run decodes, preprocesses and infers a batch of encoded frames (JPEG or PNG). Frames
// are decoded and laid out in parallel, one goroutine per CPU. A frame that cannot be
// decoded gets a result with Err set; the others are processed. The error return is for
// failures of the whole batch (the runtime failed). Timings are summed over frames.
func (f *Function) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	var tm functions.BatchTimings
	results := make([]functions.FrameResult, len(frames))
	n := vision.TensorLen(f.Spec.Input)
	input := make([]float32, len(frames)*n)
	geoms := make([]functions.Geometry, len(frames))
	decode := make([]time.Duration, len(frames))
	prep := make([]time.Duration, len(frames))

	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.NumCPU(), len(frames)) {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				m, err := vision.Decode(frames[i])
				decode[i] = time.Since(t0)
				if err != nil {
					results[i].Err = err
					continue
				}
				t0 = time.Now()
				results[i].Width, results[i].Height = m.Cols(), m.Rows()
				geoms[i], results[i].Err = vision.Fill(m, f.Spec.Input, input[i*n:(i+1)*n])
				m.Close()
				prep[i] = time.Since(t0)
			}
		})
	}
	for i := range frames {
		next <- i
	}
	close(next)
	wg.Wait()

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
	outs, err := f.infer(input[:len(ok)*n], len(ok))
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

// infer runs the model on n frames laid out back to back in input.
func (f *Function) infer(input []float32, n int) ([]output, error) {
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
		err = f.session.Run([]ort.Value{t}, values)
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
			outs[j].data = append(outs[j].data, ft.GetData()...)
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
// Runtime library has a working CUDA provider.
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
