package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/functions/vision"
	"github.com/diplip/diplip/registry"
)

// minCalibration is the fewest frames fn quantize calibrates on: fewer give ranges that
// say more about the frames than about the camera.
const minCalibration = 10

func fnQuantizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "quantize",
		Usage:     "make a static INT8 copy of a function, calibrated on frames a stream recorded, and measure what it costs",
		ArgsUsage: "REF",
		UsageText: "diplip fn quantize REF --calibrate STREAM -t NEWREF [--frames 200] [--from TIME] [--to TIME]\n" +
			"                   [--method auto|entropy|minmax|percentile] [--keep-head] [--keep NODE,...] [--check] [--push]\n\n" +
			"Reads --frames frames the stream recorded (read committed, spread evenly over the window), runs\n" +
			"the FP32 model of REF on them to learn each activation's range, and writes a static INT8 model\n" +
			"(QDQ: uint8 activations, int8 weights per output channel) into a new function image NEWREF with\n" +
			"the same spec. Its labels say which image, stream, window and method it came from. Nothing\n" +
			"but this binary is needed: the quantizer is written in Go.\n\n" +
			"--method auto (the default) writes the model with each way of choosing ranges (entropy,\n" +
			"percentile 99.999 and 99.99, min/max: no one of them is best for every model), scores each\n" +
			"against FP32 on --choose-frames other frames of the window, and keeps the best.\n\n" +
			"--check runs other frames of the same window (between the calibration frames) through both\n" +
			"models here and prints INT8's precision, recall and F1 against FP32, and both models' time per\n" +
			"frame on this machine. For a live check on the camera, run the copy as a shadow:\n" +
			"   diplip fn deploy NEWREF --stream S --shadow;  diplip fn diff S;  diplip fn promote S\n\n" +
			"Example:\n   diplip fn quantize 127.0.0.1:8080/fn/yolox-nano:v1 --calibrate demo -t 127.0.0.1:8080/fn/yolox-nano:int8 --check --push",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "calibrate", Required: true, Usage: "the stream whose recorded frames calibrate the model"},
			&cli.StringFlag{Name: "tag", Aliases: []string{"t"}, Required: true, Usage: "the new image's reference, e.g. 127.0.0.1:8080/fn/NAME:int8"},
			&cli.IntFlag{Name: "frames", Value: 200, Usage: "frames to calibrate on (at least 10; a window with fewer gives what it has)"},
			&cli.StringFlag{Name: "from", Usage: "the window's start (RFC 3339; default the earliest retained frame)"},
			&cli.StringFlag{Name: "to", Usage: "the window's end (RFC 3339; default the latest frame)"},
			&cli.StringFlag{Name: "method", Value: methodAuto, Usage: "how a range is chosen from what calibration saw: auto (try each below, keep the one that agrees best with FP32), entropy (the KL-divergence threshold, TensorRT style), minmax or percentile"},
			&cli.IntFlag{Name: "choose-frames", Value: 50, Usage: "--method auto: frames (neither calibrated nor checked on) the methods are scored on"},
			&cli.Float64Flag{Name: "percentile", Value: 99.99, Usage: "--method percentile: the share of values each range covers"},
			&cli.BoolFlag{Name: "keep-head", Usage: "leave the model's last convolutions (the prediction head) in FP32"},
			&cli.StringSliceFlag{Name: "keep", Usage: "leave these nodes (node or output tensor names) in FP32"},
			&cli.BoolFlag{Name: "check", Usage: "compare INT8 with FP32 on other frames of the window and print precision, recall and F1"},
			&cli.IntFlag{Name: "check-frames", Value: 100, Usage: "--check: frames to compare on"},
			&cli.BoolFlag{Name: "push", Usage: "push the new image after building it"},
			&cli.BoolFlag{Name: "insecure", Usage: "allow plain HTTP to a registry that is not on loopback"},
			&cli.StringFlag{Name: "store", Value: filepath.Join(defaultStateDir(), "images"), EnvVars: []string{"DIPLIP_IMAGE_STORE"},
				Usage: "where built images are kept until pushed (an OCI image layout)"},
			&cli.StringFlag{Name: "cache", Value: filepath.Join(defaultStateDir(), "cache"), Usage: "the content-addressed function cache REF is pulled into"},
		}, globalFlags...),
		Action: gatewayAction("image reference", fnQuantize),
	}
}

// quantized is what fn quantize did, as -o json prints it.
type quantized struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	Pushed bool   `json:"pushed"`
	From   string `json:"from"` // the FP32 image, by digest
	Stream string `json:"stream"`
	// Window is the span of the frames calibrated on.
	Window     [2]time.Time         `json:"window"`
	Calibrated int                  `json:"calibrated_frames"`
	Report     *onnx.QuantizeReport `json:"report"`
	FP32Bytes  int64                `json:"fp32_bytes"`
	Auto       *autoChoice          `json:"auto,omitempty"`
	Check      *quantizeCheck       `json:"check,omitempty"`
	Warnings   []string             `json:"warnings,omitempty"`
}

// methodAuto is --method auto: try each way of choosing ranges, keep the best.
const methodAuto = "auto"

// autoChoice is what --method auto tried and kept.
type autoChoice struct {
	Frames     int               `json:"frames"` // scored on
	Candidates []pipeline.Scored `json:"candidates"`
	Chosen     int               `json:"chosen"` // index in Candidates
}

// chooseMethod reads the choose frames and writes into dir the INT8 function whose
// method agrees best with FP32 on them.
func chooseMethod(ctx context.Context, c *cli.Context, cl *apiclient.Client, cal *pipeline.Calibration, stream string,
	frames []api.SampleFrame, dir string) (*autoChoice, *onnx.QuantizeReport, error) {
	var jpegs [][]byte
	err := eachFrame(ctx, c, cl, stream, frames, "reading frames to choose on", func(_ api.SampleFrame, jpeg []byte) error {
		jpegs = append(jpegs, jpeg)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(jpegs) == 0 {
		return nil, nil, errors.New("no frame left to choose a method on (expired since sampled)")
	}
	fmt.Fprintf(c.App.ErrWriter, "choosing among %d methods on %d frames\n", len(pipeline.AutoCandidates), len(jpegs))
	scores, best, rep, err := cal.Choose(dir, jpegs, pipeline.AutoCandidates, pipeline.Options{Lanes: 1, IntraOpThreads: runtime.NumCPU()})
	if err != nil {
		return nil, nil, err
	}
	return &autoChoice{Frames: len(jpegs), Candidates: scores, Chosen: best}, rep, nil
}

// quantizeCheck is INT8 against FP32 on frames that were not calibrated on.
type quantizeCheck struct {
	Frames  int                `json:"frames"`
	Overall compare.ClassStats `json:"overall"`
	// MsPerFrame of each model on this machine, measured side by side (batches alternate).
	FP32MsPerFrame float64 `json:"fp32_ms_per_frame"`
	INT8MsPerFrame float64 `json:"int8_ms_per_frame"`
}

func fnQuantize(c *cli.Context, cl *apiclient.Client, arg string) error {
	ctx := c.Context
	ref, err := parseRef(c, arg)
	if err != nil {
		return err
	}
	newRef, err := parseRef(c, c.String("tag"))
	if err != nil {
		return err
	}
	opt := onnx.QuantizeOptions{Method: onnx.CalibrationMethod(c.String("method")), Percentile: c.Float64("percentile"),
		Keep: c.StringSlice("keep"), KeepHead: c.Bool("keep-head"), Threads: runtime.NumCPU()}
	auto := opt.Method == methodAuto
	chooseN := 0
	switch {
	case auto:
		opt.Method = onnx.Entropy // keeps the histograms every candidate needs
		if chooseN = c.Int("choose-frames"); chooseN < 1 {
			return cli.Exit(fmt.Sprintf("--choose-frames %d: want at least 1", chooseN), exitUsage)
		}
	case opt.Method == onnx.MinMax, opt.Method == onnx.Percentile, opt.Method == onnx.Entropy:
	default:
		return cli.Exit(fmt.Sprintf("--method %q: want auto, minmax, percentile or entropy", opt.Method), exitUsage)
	}
	if p := opt.Percentile; p <= 50 || p > 100 {
		return cli.Exit(fmt.Sprintf("--percentile %g: want more than 50 and at most 100", p), exitUsage)
	}
	want := c.Int("frames")
	if want < minCalibration {
		return cli.Exit(fmt.Sprintf("--frames %d: calibration needs at least %d frames", want, minCalibration), exitUsage)
	}
	checkN := 0
	if c.Bool("check") {
		if checkN = c.Int("check-frames"); checkN < 1 {
			return cli.Exit(fmt.Sprintf("--check-frames %d: want at least 1", checkN), exitUsage)
		}
	}

	// The FP32 function, pinned to its digest.
	pinned, err := registry.Resolve(ctx, ref)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return cli.Exit(fmt.Sprintf("function image %s not found in its registry; push it first with: diplip fn push %s", ref, ref), exitNotFound)
	}
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", ref, err), exitFailed)
	}
	dir, spec, err := (&registry.Cache{Dir: c.String("cache")}).Pull(ctx, pinned)
	if errors.Is(err, registry.ErrNotFunction) {
		return cli.Exit(err.Error(), exitUsage)
	}
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	cal, err := pipeline.NewCalibration(dir, spec, opt)
	if errors.Is(err, onnx.ErrAlreadyQuantized) {
		return cli.Exit(fmt.Sprintf("%s: %v; quantize the FP32 image it came from", ref, err), exitUsage)
	}
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", ref, err), exitUsage)
	}
	defer cal.Close()

	// Calibration frames and, between them, the others (auto's, then the check's): every
	// frame of the sample is one of them, so neither choosing nor checking sees a frame
	// the ranges came from.
	stream := c.String("calibrate")
	sample, err := cl.SampleFrames(ctx, stream, want+chooseN+checkN, c.String("from"), c.String("to"))
	if err != nil {
		return err
	}
	calib, held := splitSample(sample.Frames, want, chooseN+checkN)
	choose, check := splitSample(held, chooseN, checkN)
	out := quantized{Ref: newRef.String(), From: pinned.String(), Stream: stream, FP32Bytes: int64(cal.FP32Bytes())}
	if len(calib) < minCalibration {
		return cli.Exit(fmt.Sprintf("stream %q holds %d frames in the window; calibration needs at least %d (record more, or widen --from/--to)",
			stream, sample.Held, minCalibration), exitUsage)
	}
	if len(calib) < want || len(choose) < chooseN || len(check) < checkN {
		out.Warnings = append(out.Warnings, fmt.Sprintf("stream %q holds %d frames in the window: calibrating on %d of the %d asked, choosing on %d, checking on %d",
			stream, sample.Held, len(calib), want, len(choose), len(check)))
	}
	if auto && len(choose) == 0 {
		return cli.Exit(fmt.Sprintf("stream %q holds %d frames in the window: none left to choose a method on (use --method, or record more)", stream, sample.Held), exitUsage)
	}
	for _, w := range out.Warnings {
		fmt.Fprintln(c.App.ErrWriter, "warning: "+w)
	}
	out.Window = [2]time.Time{calib[0].Time, calib[0].Time}
	for _, f := range calib {
		out.Window[0], out.Window[1] = minTime(out.Window[0], f.Time), maxTime(out.Window[1], f.Time)
	}

	err = eachFrame(ctx, c, cl, stream, calib, "calibrating", func(f api.SampleFrame, jpeg []byte) error {
		if err := cal.Observe(jpeg); !errors.Is(err, vision.ErrCorruptFrame) {
			return err
		}
		return nil // a corrupt frame: the runner gives it an error result too; skip it here
	})
	if err != nil {
		return err
	}
	if out.Calibrated = cal.Frames(); out.Calibrated < minCalibration {
		return cli.Exit(fmt.Sprintf("only %d of the %d frames read decoded; calibration needs at least %d", out.Calibrated, len(calib), minCalibration), exitUsage)
	}
	// The new function: the same files, the INT8 model in place of the FP32 one.
	newDir, err := os.MkdirTemp("", "diplip-quantize-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(newDir)
	if auto {
		if out.Auto, out.Report, err = chooseMethod(ctx, c, cl, cal, stream, choose, newDir); err != nil {
			return cli.Exit(fmt.Sprintf("quantize %s: %v", ref, err), exitFailed)
		}
		chosen := out.Auto.Candidates[out.Auto.Chosen]
		opt.Method, opt.Percentile = chosen.Method, chosen.Percentile
	} else if out.Report, err = cal.Write(newDir); err != nil {
		return cli.Exit(fmt.Sprintf("quantize %s: %v", ref, err), exitFailed)
	}
	img, _, err := registry.Build(newDir, checkWithONNXRuntime)
	if err != nil {
		return cli.Exit(fmt.Sprintf("the INT8 model does not load: %v", err), exitFailed)
	}
	if len(check) > 0 {
		if out.Check, err = checkQuantized(ctx, c, cl, stream, check, dir, newDir, spec); err != nil {
			return err
		}
	}
	labels := map[string]string{
		registry.LabelQuantizedFrom:   pinned.String(),
		registry.LabelQuantizedStream: stream,
		registry.LabelQuantizedWindow: out.Window[0].UTC().Format(time.RFC3339Nano) + "/" + out.Window[1].UTC().Format(time.RFC3339Nano),
		registry.LabelQuantizedMethod: methodLabel(opt, out.Calibrated, auto),
	}
	if a := agreementLabel(out); a != "" {
		labels[registry.LabelQuantizedAgreement] = a
	}
	if img, err = registry.WithLabels(img, labels); err != nil {
		return err
	}
	if err := (&registry.Store{Dir: c.String("store")}).Put(newRef, img); err != nil {
		return err
	}
	d, _ := img.Digest()
	out.Digest = newRef.Context().Digest(d.String()).String()
	if c.Bool("push") {
		if _, err := push(c, img, newRef); err != nil {
			return err
		}
		out.Pushed = true
	}
	return render(c, out, func(w *tabwriter.Writer) { printQuantized(w, out) })
}

// splitSample deals the sample's frames (in stream order) into calibration and check
// frames alternately while both want more, then the rest to whichever still does.
func splitSample(frames []api.SampleFrame, calibN, checkN int) (calib, check []api.SampleFrame) {
	for i, f := range frames {
		switch {
		case len(check) < checkN && (i%2 == 1 || len(calib) >= calibN):
			check = append(check, f)
		case len(calib) < calibN:
			calib = append(calib, f)
		}
	}
	return calib, check
}

// eachFrame reads the frames from the gateway and calls fn with each, with a progress
// bar on a terminal.
func eachFrame(ctx context.Context, c *cli.Context, cl *apiclient.Client, stream string, frames []api.SampleFrame, what string,
	fn func(api.SampleFrame, []byte) error) error {
	var bar *progressbar.ProgressBar
	if interactive() {
		bar = progressbar.Default(int64(len(frames)), what)
		defer bar.Finish()
	}
	for _, f := range frames {
		jpeg, err := cl.Frame(ctx, stream, f.Partition, f.Offset)
		if apiclient.IsNotFound(err) {
			continue // expired since the sample was taken
		}
		if err != nil {
			return err
		}
		if err := fn(f, jpeg); err != nil {
			return err
		}
		if bar != nil {
			_ = bar.Add(1)
		}
	}
	return nil
}

// agreementLabel is the image's measured agreement with FP32: the check's when there
// was one (frames neither calibrated nor chosen on), else auto's choice's; "" if neither.
func agreementLabel(q quantized) string {
	switch {
	case q.Check != nil && q.Check.Frames > 0:
		return fmt.Sprintf("f1=%.3f frames=%d on=check", q.Check.Overall.F1, q.Check.Frames)
	case q.Auto != nil:
		return fmt.Sprintf("f1=%.3f frames=%d on=auto", q.Auto.Candidates[q.Auto.Chosen].Overall.F1, q.Auto.Frames)
	}
	return ""
}

func methodLabel(opt onnx.QuantizeOptions, frames int, auto bool) string {
	s := fmt.Sprintf("%s frames=%d", opt.Method, frames)
	if opt.Method == onnx.Percentile {
		s += fmt.Sprintf(" percentile=%g", opt.Percentile)
	}
	if auto {
		s += " chosen-by=auto"
	}
	if opt.KeepHead {
		s += " keep-head"
	}
	if len(opt.Keep) > 0 {
		s += " keep=" + strings.Join(opt.Keep, ",")
	}
	return s
}

// checkQuantized runs the check frames through the FP32 function in fp32Dir and the INT8
// one in int8Dir, batch by batch alternately so that both see the same machine, and
// scores INT8's detections against FP32's.
func checkQuantized(ctx context.Context, c *cli.Context, cl *apiclient.Client, stream string, frames []api.SampleFrame,
	fp32Dir, int8Dir string, spec *functions.Spec) (*quantizeCheck, error) {
	opts := pipeline.Options{Lanes: 1, IntraOpThreads: runtime.NumCPU()}
	fp32, err := pipeline.Open(fp32Dir, spec, opts)
	if err != nil {
		return nil, err
	}
	defer fp32.Close()
	int8, err := pipeline.Open(int8Dir, spec, opts)
	if err != nil {
		return nil, err
	}
	defer int8.Close()

	var prim, cand []compare.Frame
	var tFP32, tINT8 time.Duration
	var batch [][]byte
	var seqs []uint64
	run := func() error {
		if len(batch) == 0 {
			return nil
		}
		for _, side := range []struct {
			fn  *pipeline.Function
			t   *time.Duration
			out *[]compare.Frame
		}{{fp32, &tFP32, &prim}, {int8, &tINT8, &cand}} {
			t0 := time.Now()
			rs, _, err := side.fn.Run(batch)
			*side.t += time.Since(t0)
			if err != nil {
				return err
			}
			for i, r := range rs {
				if r.Err == nil {
					*side.out = append(*side.out, compare.FromResult("", seqs[i], r))
				}
			}
		}
		batch, seqs = batch[:0], seqs[:0]
		return nil
	}
	err = eachFrame(ctx, c, cl, stream, frames, "checking", func(f api.SampleFrame, jpeg []byte) error {
		batch, seqs = append(batch, jpeg), append(seqs, uint64(f.Partition)<<48|uint64(f.Offset))
		if len(batch) == max(1, spec.Batch.Max) {
			return run()
		}
		return nil
	})
	if err == nil {
		err = run()
	}
	if err != nil {
		return nil, err
	}
	rep := compare.Compare(prim, cand, compare.DefaultIoU)
	chk := &quantizeCheck{Frames: rep.Frames, Overall: rep.Overall}
	if rep.Frames > 0 {
		chk.FP32MsPerFrame = float64(tFP32.Microseconds()) / 1000 / float64(len(prim))
		chk.INT8MsPerFrame = float64(tINT8.Microseconds()) / 1000 / float64(len(cand))
	}
	return chk, nil
}

func printQuantized(w *tabwriter.Writer, q quantized) {
	verb := "built"
	if q.Pushed {
		verb = "built and pushed"
	}
	fmt.Fprintf(w, "%s %s\n%s\n", verb, q.Ref, q.Digest)
	fmt.Fprintf(w, "from\t%s\n", q.From)
	fmt.Fprintf(w, "calibrated on\t%d frames of stream %s, %s to %s\n", q.Calibrated, q.Stream,
		q.Window[0].UTC().Format(time.RFC3339), q.Window[1].UTC().Format(time.RFC3339))
	if r := q.Report; r != nil {
		fmt.Fprintf(w, "model\t%s → %s (%s)\n", humanBytes(q.FP32Bytes), humanBytes(int64(r.Bytes)), strings.ReplaceAll(strings.TrimSpace(r.String()), "\n", "; "))
	}
	if a := q.Auto; a != nil {
		fmt.Fprintf(w, "method\t%s, chosen on %d other frames (F1 against FP32: %s)\n", a.Candidates[a.Chosen].Candidate, a.Frames, pipeline.ScoreList(a.Candidates))
	}
	if k := q.Check; k != nil {
		o := k.Overall
		fmt.Fprintf(w, "check\t%d other frames: INT8 against FP32 precision %.3f, recall %.3f, F1 %.3f (%d vs %d detections, %d matched at IoU %.1f)\n",
			k.Frames, o.Precision, o.Recall, o.F1, o.Candidate, o.Primary, o.Matched, compare.DefaultIoU)
		if k.INT8MsPerFrame > 0 {
			fmt.Fprintf(w, "time\tINT8 %.1f ms, FP32 %.1f ms per frame here (%.2f×), decode and pre-processing included\n",
				k.INT8MsPerFrame, k.FP32MsPerFrame, k.FP32MsPerFrame/k.INT8MsPerFrame)
		}
	}
	fmt.Fprintf(w, "next\tdiplip fn deploy %s --stream %s --shadow; diplip fn diff %s\n", q.Ref, q.Stream, q.Stream)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
