package flow

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// lane runs batches through the model until work closes. When ctx ends, a batch whose
// model run keeps failing is given up (its records get no result and are redone).
func (p *Pipeline) lane(ctx context.Context, work <-chan batch, done chan<- batch) {
	for b := range work {
		p.process(ctx, b.items)
		done <- b
	}
}

// process turns a batch into results. Frame errors (a record that is not a frame, an
// image that does not decode) become error results; a failed model run is retried.
func (p *Pipeline) process(ctx context.Context, items []*Item) {
	start := time.Now()
	d := p.cfg.Deployment
	if d.SecondStage() { // live, a shadow or a replay of one
		p.processAfter(ctx, items, start)
		return
	}
	var frames [][]byte
	var inferIdx []int
	for i, it := range items {
		r := &it.Result
		r.Stream, r.Function, r.Digest = d.Stream, d.Function, d.Digest
		r.Source = wire.Source{Partition: it.Partition, Offset: it.Offset}
		if end, ok := d.StopAt[it.Partition]; ok && it.Offset >= end {
			it.Skip = true // past the window's end
			continue
		}
		f, err := wire.DecodeFrame(it.Key, it.Headers, it.Value)
		if len(d.Cameras) > 0 && !slices.Contains(d.Cameras, f.Camera) {
			it.Skip = true
			continue
		}
		r.Camera, r.Seq, r.CaptureTime = f.Camera, f.Seq, f.CaptureTime
		if r.Camera == "" {
			r.Camera = it.Key
		}
		r.ID = wire.ResultID(d.Stream, r.Camera, r.Seq, d.Digest)
		if !f.IngestTime.IsZero() {
			r.Timings.Queue = ms(start.Sub(f.IngestTime))
		}
		switch {
		case err != nil:
			r.Status, r.Error = wire.StatusError, err.Error()
			r.ID = wire.ResultIDAt(d.Stream, it.Partition, it.Offset, d.Digest)
		case stale(d, f.CaptureTime, start):
			r.Status, r.Error = wire.StatusSkipped, staleError(d)
		default:
			frames = append(frames, f.Data)
			inferIdx = append(inferIdx, i)
		}
	}
	if len(frames) == 0 {
		return
	}
	out, tm, err := p.run(ctx, frames)
	n := float64(len(frames))
	for k, i := range inferIdx {
		r := &items[i].Result
		r.Timings.Batch = len(frames)
		r.Timings.Decode, r.Timings.Preprocess, r.Timings.Infer = ms(tm.Decode)/n, ms(tm.Preprocess)/n, ms(tm.Infer)/n
		switch {
		case err != nil: // only when ctx ended during retries
			items[i].GivenUp = true
		case out[k].Err != nil:
			r.Status, r.Error = wire.StatusError, out[k].Err.Error()
		default:
			r.Status = wire.StatusOK
			r.Width, r.Height, r.Raw = out[k].Width, out[k].Height, out[k].Raw
			r.Detections = toWire(out[k].Detections)
			r.Labels = labelsToWire(out[k].Labels)
			if e := out[k].Embedding; len(e) > 0 {
				if slices.ContainsFunc(e, notFinite) {
					r.Status, r.Error = wire.StatusError, "the embedding has values that are not finite (NaN or Inf)"
				} else {
					r.Embedding = e
				}
			}
		}
	}
	if err == nil {
		metrics.BatchSize.WithLabelValues(d.Key()).Observe(n)
		metrics.Inference.WithLabelValues(d.Key()).Observe(tm.Infer.Seconds())
	}
}

// stale reports whether a frame captured at captured is older than a live deployment's
// max age at now: it gets a skipped result instead of an inference.
func stale(d wire.Deployment, captured, now time.Time) bool {
	return d.Policy == wire.PolicyLive && d.MaxAge > 0 && now.Sub(captured) > time.Duration(d.MaxAge)
}

// staleError is a skipped frame's result error.
func staleError(d wire.Deployment) string {
	return fmt.Sprintf("older than the deployment's max age %v", time.Duration(d.MaxAge))
}

// run calls the model, retrying a failed run with backoff (RetryBackoff doubling to 30 s) until it
// succeeds or ctx ends.
func (p *Pipeline) run(ctx context.Context, frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	wait := p.cfg.RetryBackoff
	for {
		out, tm, err := p.cfg.Model.Run(frames)
		p.recordRun(err)
		if err == nil {
			return out, tm, nil
		}
		select {
		case <-ctx.Done():
			return nil, tm, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// recordRun counts consecutive inference failures; a success clears them.
func (p *Pipeline) recordRun(err error) {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	if err == nil {
		p.failedRuns, p.unhealthyWhy = 0, ""
		return
	}
	p.failedRuns++
	p.log.Error("inference failed; retrying the batch", "consecutive", p.failedRuns, "err", err)
	if p.failedRuns >= UnhealthyAfter {
		p.unhealthyWhy = fmt.Sprintf("%d inference runs in a row failed; last: %v", p.failedRuns, err)
	}
}

// toWire converts a function's detections to the result record's, dropping any whose
// numbers are not finite (JSON cannot carry NaN or Inf).
func toWire(ds []functions.Detection) []wire.Detection {
	out := make([]wire.Detection, 0, len(ds))
	for _, d := range ds {
		v := []float32{d.Score, d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2}
		if slices.ContainsFunc(v, notFinite) {
			continue
		}
		out = append(out, wire.Detection{ClassID: d.ClassID, Label: d.Label, Score: d.Score,
			Box: wire.Box{X1: d.Box.X1, Y1: d.Box.Y1, X2: d.Box.X2, Y2: d.Box.Y2}})
	}
	return out
}

// labelsToWire converts a classifier's labels to the result record's, dropping any whose
// score is not finite.
func labelsToWire(ls []functions.ClassScore) []wire.ClassScore {
	if len(ls) == 0 {
		return nil
	}
	out := make([]wire.ClassScore, 0, len(ls))
	for _, l := range ls {
		if !notFinite(l.Score) {
			out = append(out, wire.ClassScore{ClassID: l.ClassID, Label: l.Label, Score: l.Score})
		}
	}
	return out
}

func notFinite(f float32) bool { return math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
