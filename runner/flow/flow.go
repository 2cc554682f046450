// Package flow is the runner's pipeline without Kafka in it: consumed records are
// batched, inferred in lanes and handed on in the order they were consumed.
//
//	in ──► batcher ──► lanes (Model.Run, Lanes at once) ──► sequencer ──► out
//
// The batcher takes up to a deployment's batch size of records, waiting at most MaxDelay
// after the first, and numbers the batches; the lanes run them through the model in any
// order, retrying a failed run with backoff; the sequencer puts the batches back in
// number order, runs the tracker stage on each result, encodes it and calls out once per
// record, so each partition's records come out in consumption order.
//
// A record carries its partition, offset, key, headers and value as plain fields: where
// the records come from (a Kafka consumer group) and where the results go (a producer,
// a transaction) is the runner's delivery, not this package's.
package flow

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/wire"
)

// Model runs a function on a batch of encoded frames. functions/pipeline.Function is the real
// one; bench uses a simulated accelerator with a fixed service time. Run is called from
// Config.Lanes goroutines at once. A frame it cannot use (a corrupt JPEG) gets
// FrameResult.Err; the error return means the model or its device failed for the batch.
type Model interface {
	Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error)
}

// UnhealthyAfter is how many consecutive failed inference runs mark a function unhealthy.
const UnhealthyAfter = 3

// MaxResultBytes is the largest result record the pipeline encodes; a bigger one (e.g. the
// raw decoder's tensors) is replaced by an error result that says so. The producer's own
// limit (sarama's Producer.MaxMessageBytes, 1 MB by default, and the broker's) is set
// above it by kafkaclient.RunnerConfig.
const MaxResultBytes = 900 << 10

// Item is one consumed record on its way through the pipeline.
type Item struct {
	// The record as consumed.
	Partition int32
	Offset    int64
	Key       string
	Headers   []wire.Header
	Value     []byte
	// Meta is the caller's; the pipeline carries it untouched (the runner's delivery keeps
	// the item's partition claim there).
	Meta any
	// Held is the caller's too: the bytes it counts for the item in flight.
	Held int64

	// Set by the pipeline before the item comes out.
	Result  wire.Result
	Payload []byte // the encoded result record; nil when Skip or GivenUp
	State   []byte // the camera's tracker checkpoint, written with the result; nil when none
	Skip    bool   // outside the deployment's cameras or window: done without a result
	// GivenUp says its model run was given up at shutdown: it has no result, and the
	// record is to be redone (by the partition's next owner).
	GivenUp bool
}

// Stage runs on every result in consumption order, in the sequencer's goroutine (so it
// needs no lock of its own), before the result is encoded: the runner's tracker.
type Stage interface {
	// Apply may change the result (track ids, zone events and counts) and returns the
	// checkpoint to write with it, or nil.
	Apply(r *wire.Result, now time.Time) []byte
	// CloseIdle is called about every second with no result due.
	CloseIdle(now time.Time)
}

// Config is a pipeline's work: the deployment (function, stream, batch size, policy,
// cameras and window) and its model.
type Config struct {
	Deployment wire.Deployment
	Model      Model
	// Lanes is how many batches are inferred at once (Model.Run calls in flight), so that
	// decoding and laying out the next frames overlaps the current inference. Default 1.
	Lanes int
	// MaxDelay is the longest the first record of a batch waits for the batch to fill. 0
	// means no wait: a batch is whatever has arrived by the time a lane is free, which is
	// right for models that run frame by frame anyway (waiting buys them nothing).
	MaxDelay time.Duration
	// RetryBackoff is the first wait before a failed model run is retried; it doubles up
	// to 30 s. Default 1s.
	RetryBackoff time.Duration
	// Stage, when not nil, runs on every result before it is encoded.
	Stage Stage
	// Frames reads the frames a second stage (Deployment.Role after) crops; its Model is
	// then a CropModel too (chain.go).
	Frames FrameReader
	Logger *slog.Logger
}

// Pipeline turns records into results; see the package comment.
type Pipeline struct {
	cfg Config
	log *slog.Logger

	healthMu     sync.Mutex
	failedRuns   int    // consecutive batches whose inference failed
	unhealthyWhy string // set after UnhealthyAfter consecutive failures
}

// batch is a numbered group of items; lanes finish them in any order, the sequencer
// hands them on in number order.
type batch struct {
	n     uint64
	items []*Item
}

// New fills cfg's defaults; Run does the work.
func New(cfg Config) *Pipeline {
	cfg.Deployment.Batch = max(cfg.Deployment.Batch, 1)
	cfg.Lanes = max(cfg.Lanes, 1)
	cfg.MaxDelay = max(cfg.MaxDelay, 0)
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Pipeline{cfg: cfg, log: cfg.Logger}
}

// Run processes what arrives on in until it is closed, calling out for every item in
// the order the items arrived, from one goroutine; it returns when the last item is
// out. Every item comes out once: with a result, skipped, or given up. When ctx ends, a
// batch whose model run keeps failing is given up; the others finish as usual. Every
// goroutine it starts has ended when it returns.
func (p *Pipeline) Run(ctx context.Context, in <-chan *Item, out func(*Item)) {
	work := make(chan batch, p.cfg.Lanes)
	done := make(chan batch, p.cfg.Lanes)
	// A place per batch between the batcher and the sequencer's output: a lane that is
	// slow on one batch holds up at most this many behind it, not every batch the other
	// lanes can finish meanwhile (the sequencer would keep them all, in order).
	places := make(chan struct{}, 2*p.cfg.Lanes)
	var lanes, stages sync.WaitGroup
	stages.Go(func() { p.batch(in, work, places); close(work) })
	for range p.cfg.Lanes {
		lanes.Go(func() { p.lane(ctx, work, done) })
	}
	stages.Go(func() { lanes.Wait(); close(done) })
	p.sequence(done, out, places)
	stages.Wait()
}

// Unhealthy returns why the function is unhealthy, or "" when it is not.
func (p *Pipeline) Unhealthy() string {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	return p.unhealthyWhy
}

// batch collects up to Batch items, waiting at most MaxDelay after the first, numbers the
// batches and hands them to the lanes, each taking a place, until in closes.
func (p *Pipeline) batch(in <-chan *Item, work chan<- batch, places chan<- struct{}) {
	size := p.cfg.Deployment.Batch
	var n uint64
	for {
		first, ok := <-in
		if !ok {
			return
		}
		items := []*Item{first}
		var timer *time.Timer
		var deadline <-chan time.Time // nil without MaxDelay: take only what is queued
		if p.cfg.MaxDelay > 0 {
			timer = time.NewTimer(p.cfg.MaxDelay)
			deadline = timer.C
		}
	fill:
		for len(items) < size {
			if deadline == nil {
				select {
				case it, ok := <-in:
					if !ok {
						break fill
					}
					items = append(items, it)
				default:
					break fill
				}
				continue
			}
			select {
			case it, ok := <-in:
				if !ok {
					break fill
				}
				items = append(items, it)
			case <-deadline:
				break fill
			}
		}
		if timer != nil {
			timer.Stop()
		}
		places <- struct{}{}
		work <- batch{n: n, items: items}
		n++
	}
}
