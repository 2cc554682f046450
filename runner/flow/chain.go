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

// CropModel runs a second stage's model on the crops of one encoded frame; results[i]
// answers boxes[i]. functions/pipeline.Function is one.
type CropModel interface {
	RunCrops(frame []byte, boxes []functions.Box) ([]functions.FrameResult, functions.BatchTimings, error)
}

// processAfter is process for a second stage: each item is a first stage's result record.
func (p *Pipeline) processAfter(ctx context.Context, items []*Item) {
	d := p.cfg.Deployment
	for _, it := range items {
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
		p.runAfter(ctx, it, &first)
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

// runAfter reads the item's frame and runs the model on its selected detections' crops.
// A frame that cannot be read or decoded gets an error result; a failed model run is
// retried with backoff until ctx ends (then the item is given up, to be redone).
func (p *Pipeline) runAfter(ctx context.Context, it *Item, first *wire.Result) {
	d, r := p.cfg.Deployment, &it.Result
	start := time.Now()
	sel := Selected(d.After, r.Detections)
	metrics.ChainCropsPerFrame.WithLabelValues(d.Key()).Observe(float64(len(sel)))
	if len(sel) == 0 {
		return // nothing selected: the result is the first stage's detections
	}
	key, hs, value, err := p.cfg.Frames.ReadFrame(ctx, first.Source)
	if err != nil {
		if ctx.Err() != nil {
			it.GivenUp = true
			return
		}
		r.Status, r.Error = wire.StatusError, fmt.Sprintf("reading the frame at partition %d offset %d: %v", first.Source.Partition, first.Source.Offset, err)
		return
	}
	metrics.ChainFrameBytes.WithLabelValues(d.Key()).Add(float64(len(value)))
	f, err := wire.DecodeFrame(key, hs, value)
	if err != nil {
		r.Status, r.Error = wire.StatusError, "the first stage's frame: "+err.Error()
		return
	}
	boxes := make([]functions.Box, len(sel))
	for k, i := range sel {
		b := r.Detections[i].Box
		boxes[k] = functions.Box{X1: b.X1, Y1: b.Y1, X2: b.X2, Y2: b.Y2}
	}
	out, tm, err := p.runCrops(ctx, f.Data, boxes)
	if err != nil { // only when ctx ended during retries
		it.GivenUp = true
		return
	}
	crops := 0
	for k, i := range sel {
		o, x := out[k], &r.Detections[i]
		if o.Err != nil {
			continue
		}
		crops++
		if len(o.Embedding) > 0 && !slices.ContainsFunc(o.Embedding, notFinite) {
			x.Embedding = o.Embedding
		}
		x.Labels = labelsToWire(o.Labels)
	}
	metrics.ChainCrops.WithLabelValues(d.Key()).Add(float64(crops))
	r.Timings = wire.Timings{Decode: ms(tm.Decode), Preprocess: ms(tm.Preprocess), Infer: ms(tm.Infer), Batch: len(boxes)}
	if !f.IngestTime.IsZero() {
		r.Timings.Queue = ms(start.Sub(f.IngestTime))
	}
	metrics.Inference.WithLabelValues(d.Key()).Observe(tm.Infer.Seconds())
}

// runCrops calls the crop model, retrying a failed run as run does.
func (p *Pipeline) runCrops(ctx context.Context, frame []byte, boxes []functions.Box) ([]functions.FrameResult, functions.BatchTimings, error) {
	wait := p.cfg.RetryBackoff
	for {
		out, tm, err := p.cfg.Model.(CropModel).RunCrops(frame, boxes)
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
