package flow

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// A second stage (a deployment with role after) takes the first stage's result records as
// its items: for each it reads the frame the result names (FrameReader, by its source
// partition and offset), crops the selected detections and runs its model on the crops
// (CropModel), and writes an enriched result: the first stage's detections, each selected
// one carrying the second stage's output.

// FrameReader reads the frame record at a position of the stream's frames topic; the
// runner reads it from Kafka (read committed).
type FrameReader interface {
	ReadFrame(ctx context.Context, at wire.Source) (key string, headers []wire.Header, value []byte, err error)
}

// CropModel runs a second stage's model on the crops of several encoded frames as one
// batch: results[j][i] answers boxes[j][i], frameErrs[j] says why frame j could not be
// decoded; the error return is for the whole batch (the model or its device failed).
// functions/pipeline.Function is one.
type CropModel interface {
	RunCropsOf(frames [][]byte, boxes [][]functions.Box) (results [][]functions.FrameResult, frameErrs []error, tm functions.BatchTimings, err error)
}

// MaxCropsPerRun bounds the crops of one CropModel run: a batch's frames are split into
// runs of at most this many crops (a frame's crops are never split).
const MaxCropsPerRun = 64

// cropJob is a frame of a second stage's batch with detections to crop.
type cropJob struct {
	it    *Item
	sel   []int // the selected detections, indexes into it.Result.Detections
	frame []byte
	start time.Time
}

// processAfter is process for a second stage (live, a shadow or a replay of one): each
// item is a first stage's result record. The frames with selected detections are read,
// then their crops run in as few model runs as MaxCropsPerRun allows. A replay's StopAt
// is in its input's offsets (the first stage's results), like the items'. A live
// deployment's max age counts from the frame's capture time, which the first stage's
// result carries: a frame older than that when its batch starts gets a skipped result
// (the first stage's detections, no crops run), as a first stage skips it.
func (p *Pipeline) processAfter(ctx context.Context, items []*Item, start time.Time) {
	d := p.cfg.Deployment
	var jobs []cropJob
	for _, it := range items {
		if end, ok := d.StopAt[it.Partition]; ok && it.Offset >= end {
			it.Skip = true // past the window's end
			continue
		}
		var first wire.Result
		if err := json.Unmarshal(it.Value, &first); err != nil || first.Function != d.After.Function {
			it.Skip = true // another function's result on the stream's results topic (or not a result)
			continue
		}
		if len(d.Cameras) > 0 && !slices.Contains(d.Cameras, first.Camera) {
			it.Skip = true
			continue
		}
		it.Result = enriched(d, first)
		if first.Status != wire.StatusOK {
			continue // nothing to crop: the first stage's status stands
		}
		if !first.CaptureTime.IsZero() && stale(d, first.CaptureTime, start) {
			it.Result.Status, it.Result.Error = wire.StatusSkipped, staleError(d)
			continue
		}
		if job, ok := p.readAfter(ctx, it, &first); ok {
			jobs = append(jobs, job)
		}
	}
	for len(jobs) > 0 {
		n, crops := 1, len(jobs[0].sel)
		for n < len(jobs) && crops+len(jobs[n].sel) <= MaxCropsPerRun {
			crops += len(jobs[n].sel)
			n++
		}
		p.runAfter(ctx, jobs[:n], crops)
		jobs = jobs[n:]
	}
}

// enriched is a second stage's result for first before its crops are run.
func enriched(d wire.Deployment, first wire.Result) wire.Result {
	r := first
	r.Function, r.Digest = d.Function, d.Digest
	r.ID = wire.ResultID(d.Stream, first.Camera, first.Seq, d.Digest)
	if first.Camera == "" {
		r.ID = wire.ResultIDAt(d.Stream, first.Source.Partition, first.Source.Offset, d.Digest)
	}
	r.Stages = []wire.Stage{{Function: first.Function, Digest: first.Digest}, {Function: d.Function, Digest: d.Digest}}
	r.Raw, r.Labels, r.Embedding = nil, nil, nil // the first stage's own frame outputs are not the chain's
	r.Timings = wire.Timings{}
	return r
}

// Selected are the indexes of the first stage's detections the second stage runs on:
// those AfterInfo selects, highest score first, at most MaxPerFrame.
func Selected(a *wire.AfterInfo, ds []wire.Detection) []int {
	var idx []int
	for i, x := range ds {
		if a.Selects(x) {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(i, j int) int { return cmp.Compare(ds[j].Score, ds[i].Score) })
	if a.MaxPerFrame > 0 && len(idx) > a.MaxPerFrame {
		idx = idx[:a.MaxPerFrame]
	}
	return idx
}

// tooSmall counts the detections of a selected class that are less than MinSize high.
func tooSmall(a *wire.AfterInfo, ds []wire.Detection) int {
	n := 0
	for _, x := range ds {
		if (len(a.Classes) == 0 || slices.Contains(a.Classes, x.Label)) && x.Box.Y2-x.Box.Y1 < float32(a.MinSize) {
			n++
		}
	}
	return n
}

// readAfter selects the item's detections and reads its frame: false when there is
// nothing to run (nothing selected, or the frame could not be read or decoded: an error
// result; or ctx ended: given up).
func (p *Pipeline) readAfter(ctx context.Context, it *Item, first *wire.Result) (cropJob, bool) {
	d, r := p.cfg.Deployment, &it.Result
	job := cropJob{it: it, start: time.Now(), sel: Selected(d.After, r.Detections)}
	metrics.ChainCropsPerFrame.WithLabelValues(d.Key()).Observe(float64(len(job.sel)))
	if small := tooSmall(d.After, r.Detections); small > 0 {
		metrics.ChainTooSmall.WithLabelValues(d.Key()).Add(float64(small))
	}
	if len(job.sel) == 0 {
		return job, false // nothing selected: the result is the first stage's detections
	}
	key, hs, value, err := p.cfg.Frames.ReadFrame(ctx, first.Source)
	if err != nil {
		if ctx.Err() != nil {
			it.GivenUp = true
			return job, false
		}
		r.Status, r.Error = wire.StatusError, fmt.Sprintf("reading the frame at partition %d offset %d: %v", first.Source.Partition, first.Source.Offset, err)
		return job, false
	}
	metrics.ChainFrameBytes.WithLabelValues(d.Key()).Add(float64(len(value)))
	f, err := wire.DecodeFrame(key, hs, value)
	if err != nil {
		r.Status, r.Error = wire.StatusError, "the first stage's frame: "+err.Error()
		return job, false
	}
	if !f.IngestTime.IsZero() {
		r.Timings.Queue = ms(job.start.Sub(f.IngestTime))
	}
	job.frame = f.Data
	return job, true
}

// runAfter runs the model on the crops of jobs' frames as one batch, retrying a failed run
// with backoff until ctx ends (then the items are given up, to be redone), and puts each
// crop's output on its detection.
func (p *Pipeline) runAfter(ctx context.Context, jobs []cropJob, crops int) {
	d := p.cfg.Deployment
	frames, boxes := make([][]byte, len(jobs)), make([][]functions.Box, len(jobs))
	for j, job := range jobs {
		frames[j] = job.frame
		for _, i := range job.sel {
			b := job.it.Result.Detections[i].Box
			boxes[j] = append(boxes[j], functions.Box{X1: b.X1, Y1: b.Y1, X2: b.X2, Y2: b.Y2})
		}
	}
	out, frameErrs, tm, err := p.runCrops(ctx, frames, boxes)
	n := float64(len(jobs))
	ran := 0
	for j, job := range jobs {
		r := &job.it.Result
		switch {
		case err != nil: // only when ctx ended during retries
			job.it.GivenUp = true
			continue
		case frameErrs[j] != nil:
			r.Status, r.Error = wire.StatusError, "the first stage's frame: "+frameErrs[j].Error()
			continue
		}
		for k, i := range job.sel {
			o, x := out[j][k], &r.Detections[i]
			if o.Err != nil {
				continue
			}
			ran++
			if len(o.Embedding) > 0 && !slices.ContainsFunc(o.Embedding, notFinite) {
				x.Embedding = o.Embedding
			}
			x.Labels = labelsToWire(o.Labels)
			if len(o.Detections) > 0 { // a detector's, already in the frame's pixels
				x.Detections = toWire(o.Detections)
			}
		}
		r.Timings.Decode, r.Timings.Preprocess, r.Timings.Infer = ms(tm.Decode)/n, ms(tm.Preprocess)/n, ms(tm.Infer)/n
		r.Timings.Batch = crops
	}
	if err == nil {
		metrics.ChainCrops.WithLabelValues(d.Key()).Add(float64(ran))
		metrics.Inference.WithLabelValues(d.Key()).Observe(tm.Infer.Seconds())
	}
}

// runCrops calls the crop model, retrying a failed run as run does.
func (p *Pipeline) runCrops(ctx context.Context, frames [][]byte, boxes [][]functions.Box) ([][]functions.FrameResult, []error, functions.BatchTimings, error) {
	wait := p.cfg.RetryBackoff
	for {
		out, frameErrs, tm, err := p.cfg.Model.(CropModel).RunCropsOf(frames, boxes)
		p.recordRun(err)
		if err == nil {
			return out, frameErrs, tm, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, tm, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
