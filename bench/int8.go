package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/internal/wire"
)

// The INT8 rows (issue #26): `limit-int8` and `drain-int8`, env's function with a static
// INT8 copy of its model, both against the FP32 `limit` of the same run, and the INT8
// detections scored against FP32's on the frames it was not calibrated on.

// calibFrames is how many of the sample's frames (the first) calibrate the quantizer;
// of the others, every other one chooses the range method (as fn quantize --method auto
// does) and the rest measure F1.
const calibFrames = 20

// runINT8 measures the INT8 rows with the function directory sw.INT8Dir, or one it
// quantizes from env's function on the first calibFrames frames (quantizeFunction).
func runINT8(ctx context.Context, sw *Sweep, env *Env, limit, drain Row) ([]Row, error) {
	dir, made := sw.INT8Dir, ""
	held := env.Frames // the frames F1 is measured on
	if dir == "" {
		tmp, err := os.MkdirTemp("", "diplip-bench-int8-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		var choose [][]byte
		held = nil
		for i, f := range env.Frames[calibFrames:] {
			if i%2 == 0 {
				choose = append(choose, f)
			} else {
				held = append(held, f)
			}
		}
		env.say("int8: quantizing %s (static) on the first %d frames, choosing the range method on %d others", filepath.Base(env.FunctionDir), calibFrames, len(choose))
		if made, err = quantizeFunction(env.FunctionDir, tmp, env.Frames[:calibFrames], choose); err != nil {
			return nil, err
		}
		dir = tmp
	} else {
		made = "INT8 function " + dir + " (int8_dir), F1 over all frames"
	}
	ref, spec, err := pushFunction(ctx, env, dir, "int8")
	if err != nil {
		return nil, err
	}
	env.say("int8: scoring INT8 detections against FP32 on %d frames", len(held))
	score, err := scoreINT8(env.FunctionDir, dir, spec, held)
	if err != nil {
		return nil, err
	}
	// The machine's speed drifts over a run (other work on it): the FP32 loop again right
	// before the INT8 one, in the same configuration, is a side-by-side check of the ratio.
	_, again, err := loopRowResult(ctx, sw, env, "limit (FP32, again)", limit)
	if err != nil {
		return nil, err
	}
	m := *env
	m.Ref, m.FunctionDir = ref, dir
	lr, err := loopRow(ctx, sw, &m, "limit-int8", limit)
	if err != nil {
		return nil, err
	}
	lr.Note = fmt.Sprintf("%s; %s; %s; target ≥ 1.4; the FP32 loop again just before: %.1f fps (INT8 / that: %.2f), CPU %.1f ms per frame, %s",
		made, score, lr.Note, again.fps, ratio(lr.FPS, again.fps), again.cpuPerFrame*1000, again.stagesNote())
	rows := []Row{lr}
	env.say("drain-int8: %d frames already in Kafka, one runner", sw.Drain)
	dr, err := runDrain(ctx, &m, sw.Drain, sw.Cameras, 0, limit, wire.AtLeastOnce)
	if err != nil {
		return rows, fmt.Errorf("drain: %w", err)
	}
	dr.Scenario = "drain-int8"
	dr.Note = fmt.Sprintf("ratio: fps / limit (FP32), target ≥ 1.3; fps / this run's FP32 drain: %.2f; ", ratio(dr.FPS, drain.FPS)) + dr.Note
	return append(rows, dr), nil
}

// scoreINT8 runs the FP32 function (dir fp32) and its INT8 copy (dir int8) on frames and
// scores INT8's detections against FP32's (functions/compare: class-aware, IoU 0.5), as
// "INT8 vs FP32 over N frames: F1 …, precision …, recall …, mean IoU …, detections …".
func scoreINT8(fp32, int8 string, spec *functions.Spec, frames [][]byte) (string, error) {
	detect := func(dir string) ([]compare.Frame, error) {
		fn, err := pipeline.Load(dir, pipeline.Options{Lanes: 1})
		if err != nil {
			return nil, err
		}
		defer fn.Close()
		out := make([]compare.Frame, 0, len(frames))
		for i, b := range frames {
			rs, _, err := fn.Run([][]byte{b})
			if err != nil {
				return nil, err
			}
			out = append(out, compare.FromResult("sample", uint64(i), rs[0]))
		}
		return out, nil
	}
	a, err := detect(fp32)
	if err != nil {
		return "", fmt.Errorf("FP32: %w", err)
	}
	b, err := detect(int8)
	if err != nil {
		return "", fmt.Errorf("INT8: %w", err)
	}
	return f1Note(compare.Compare(a, b, compare.DefaultIoU)), nil
}

// f1Note is a compare report as the INT8 rows' note says it.
func f1Note(rep compare.Report) string {
	o := rep.Overall
	return fmt.Sprintf("INT8 vs FP32 over %d frames (class-aware IoU %.1f): F1 %.3f (target ≥ 0.95), precision %.3f, recall %.3f, mean IoU %.3f, detections %d vs %d",
		rep.Frames, compare.DefaultIoU, o.F1, o.Precision, o.Recall, o.MeanIoU, o.Candidate, o.Primary)
}
