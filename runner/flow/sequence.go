package flow

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// sequence hands finished batches' items to out in batch order, running the stage on
// each result and encoding it first; each batch handed on frees its place.
func (p *Pipeline) sequence(done <-chan batch, out func(*Item), places <-chan struct{}) {
	var next uint64
	waiting := map[uint64]batch{}
	var idle <-chan time.Time
	if p.cfg.Stage != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		idle = t.C
	}
	for {
		var b batch
		select {
		case now := <-idle:
			p.cfg.Stage.CloseIdle(now)
			continue
		case nb, ok := <-done:
			if !ok {
				return
			}
			b = nb
		}
		waiting[b.n] = b
		for {
			b, ok := waiting[next]
			if !ok {
				break
			}
			delete(waiting, next)
			next++
			for _, it := range b.items {
				if !it.GivenUp && !it.Skip {
					if p.cfg.Stage != nil {
						it.State = p.cfg.Stage.Apply(&it.Result, time.Now())
					}
					p.encode(it)
				}
				out(it)
			}
			<-places
		}
	}
}

// encode writes an item's result record (it.Payload), replacing a result that cannot be
// written with an error result that says why.
func (p *Pipeline) encode(it *Item) {
	r := &it.Result
	if !r.CaptureTime.IsZero() {
		r.Timings.EndToEnd = ms(time.Since(r.CaptureTime))
	}
	b, err := json.Marshal(r)
	if err == nil && len(b) > MaxResultBytes {
		err = fmt.Errorf("the result is %d bytes, over the %d-byte limit of a result record", len(b), MaxResultBytes)
	}
	if err != nil {
		p.log.Warn("result replaced by an error result", "camera", r.Camera, "seq", r.Seq, "err", err)
		*r = ErrorResult(*r, err)
		b, _ = json.Marshal(r)
	}
	it.Payload = b
	if len(it.State) > MaxResultBytes {
		p.log.Error("tracker checkpoint over the record limit; the camera's state is not saved for this frame",
			"camera", r.Camera, "bytes", len(it.State))
		metrics.TrackerCheckpointErrors.WithLabelValues(p.cfg.Deployment.Key()).Inc()
		it.State = nil
	}
}

// ErrorResult keeps a result's identity and says why it carries no output.
func ErrorResult(r wire.Result, err error) wire.Result {
	return wire.Result{ID: r.ID, Stream: r.Stream, Camera: r.Camera, Seq: r.Seq, CaptureTime: r.CaptureTime,
		Function: r.Function, Digest: r.Digest, Status: wire.StatusError, Error: err.Error(), Width: r.Width,
		Height: r.Height, Timings: r.Timings, Source: r.Source}
}
