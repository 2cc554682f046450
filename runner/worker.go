package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// Model runs a function on a batch of encoded frames. functions/pipeline.Function is the real
// one; bench uses a simulated accelerator with a fixed service time. Run is called from
// WorkerConfig.Lanes goroutines at once. A frame it cannot use (a corrupt JPEG) gets
// FrameResult.Err; the error return means the model or its device failed for the batch.
type Model interface {
	Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error)
}

// WorkerConfig is one deployment's work on one runner.
type WorkerConfig struct {
	// Kafka is the process's Kafka client, made with kafkaclient.RunnerConfig. Required.
	Kafka      *kafkaclient.Client
	Deployment wire.Deployment
	Stream     wire.Stream
	Model      Model
	// Lanes is how many batches are inferred at once (Model.Run calls in flight), so that
	// decoding and laying out the next frames overlaps the current inference. Default 1.
	Lanes int
	// MaxDelay is the longest the first frame of a batch waits for the batch to fill. 0
	// means no wait: a batch is whatever has arrived by the time a lane is free, which is
	// right for models that run frame by frame anyway (waiting buys them nothing).
	MaxDelay time.Duration
	// MaxInFlight bounds results handed to Kafka and not yet acknowledged. Default
	// 4 × Lanes × batch.
	MaxInFlight int
	// RetryBackoff is the first wait before a failed model run is retried; it doubles up
	// to 30 s. Default 1s.
	RetryBackoff time.Duration
	// Zones are the cameras' counting zones, for a deployment that tracks.
	Zones ZoneSource
	// NATS, when not nil, receives every result live on wire.ResultSubject.
	NATS   *nats.Conn
	Logger *slog.Logger
}

// Stats counts what a worker did.
type Stats struct {
	Frames, OK, Skipped, Errors, Batches atomic.Int64
	// LastResult is the Unix nanosecond time of the last result acknowledged.
	LastResult atomic.Int64
}

// UnhealthyAfter is how many consecutive failed inference runs mark a function unhealthy.
const UnhealthyAfter = 3

// MaxResultBytes is the largest result record a worker writes; a bigger one (e.g. the raw
// decoder's tensors) is replaced by an error result that says so. The producer's own
// limit (sarama's Producer.MaxMessageBytes, 1 MB by default, and the broker's) is set
// above it by kafkaclient.RunnerConfig.
const MaxResultBytes = 900 << 10

// Worker consumes a deployment's stream as one member of its consumer group and turns
// every frame into one result:
//
//	claims ──► batcher ──► lanes (Model.Run, Lanes at once) ──► sequencer ──► producer ──► acks
//
// The sequencer hands results to the async producer in the order the frames were
// consumed, so each partition's results come out in offset order. An offset is marked
// (and so committed) only when its result and every earlier one of its partition are
// acknowledged by Kafka: at-least-once end to end. A failing model run is retried with
// backoff and nothing of its batch is committed; after UnhealthyAfter failures in a row
// the function is reported unhealthy (and consumption waits on the retries).
type Worker struct {
	cfg   WorkerConfig
	log   *slog.Logger
	Stats Stats

	claimMu sync.Mutex
	claimed map[int32]bool // partitions this worker holds now

	healthMu     sync.Mutex
	failedRuns   int    // consecutive batches whose inference failed
	unhealthyWhy string // set after UnhealthyAfter consecutive failures

	in       chan *item
	inFlight chan struct{} // a slot per record handed to Kafka and not yet acknowledged
	tracking *tracking     // the tracker stage; nil when the deployment does not track
	trackMu  sync.Mutex
	tracks   map[trackKey]*partitionTrack // at-least-once: offsets waiting to be marked
	// eos: exactly-once delivery; txns holds each claimed partition's transactional writer.
	eos  bool
	txns map[trackKey]*txnPartition
}

// item is one consumed record on its way through a batch.
type item struct {
	msg     *sarama.ConsumerMessage
	session sarama.ConsumerGroupSession
	release func() // tells the claim the record is finished (acknowledged or abandoned)
	result  wire.Result
	payload []byte
	acked   bool
	givenUp bool         // its model run was given up at shutdown: no result, redelivered later
	skip    bool         // outside the deployment's cameras or window: committed without a result
	state   []byte       // the camera's tracker checkpoint, written with the result
	pending atomic.Int32 // records handed to Kafka and not yet acknowledged (result, state)
}

// outMsg is a record handed to the producer for an item: its result or its checkpoint.
type outMsg struct {
	it    *item
	state bool
}

// batch is a numbered group of items; lanes finish them in any order, the sequencer
// produces them in number order.
type batch struct {
	n     uint64
	items []*item
}

// NewWorker checks cfg; Run does the work.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Model == nil || cfg.Kafka == nil || cfg.Stream.Topic == "" {
		return nil, errors.New("runner: WorkerConfig needs Kafka, Stream and Model")
	}
	cfg.Deployment.Batch = max(cfg.Deployment.Batch, 1)
	cfg.Lanes = max(cfg.Lanes, 1)
	cfg.MaxDelay = max(cfg.MaxDelay, 0)
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4 * cfg.Lanes * cfg.Deployment.Batch
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var tr *tracking
	if cfg.Deployment.Track != nil {
		var err error
		if tr, err = newTracking(cfg.Deployment, cfg.Zones, cfg.Logger.With("component", "tracker")); err != nil {
			return nil, err
		}
	}
	return &Worker{
		tracking: tr,
		cfg:      cfg,
		log:      cfg.Logger.With("component", "runner", "deployment", cfg.Deployment.Key()),
		in:       make(chan *item, 2*cfg.Deployment.Batch*cfg.Lanes),
		inFlight: make(chan struct{}, cfg.MaxInFlight),
		claimed:  map[int32]bool{},
		tracks:   map[trackKey]*partitionTrack{},
		eos:      cfg.Deployment.Delivery.Transactional(),
		txns:     map[trackKey]*txnPartition{},
	}, nil
}

// Run joins the deployment's consumer group and processes until ctx ends; then it stops
// fetching, finishes the batches in flight, waits for their acknowledgements (marking
// their offsets), leaves the group and returns. Every goroutine it starts has ended when
// it returns. An error means the worker could not work (e.g. the group could not be
// joined); the model is the caller's to close.
func (w *Worker) Run(ctx context.Context) error {
	client, err := w.cfg.Kafka.Sarama()
	if err != nil {
		return fmt.Errorf("runner: %w", err)
	}
	if w.tracking != nil {
		if err := w.cfg.Kafka.EnsureCompactedTopic(wire.StateTopic(w.cfg.Deployment), w.cfg.Stream.Partitions); err != nil {
			return fmt.Errorf("runner: tracker state topic: %w", err)
		}
	}
	group, err := sarama.NewConsumerGroupFromClient(w.cfg.Deployment.Group(), client)
	if err != nil {
		return fmt.Errorf("runner: joining consumer group %s: %w", w.cfg.Deployment.Group(), err)
	}
	var producer sarama.AsyncProducer // at-least-once; exactly-once has one per partition (txn.go)
	if !w.eos {
		if producer, err = w.cfg.Kafka.AsyncProducer(); err != nil {
			group.Close()
			return fmt.Errorf("runner: results producer: %w", err)
		}
	}

	work := make(chan batch, w.cfg.Lanes)
	done := make(chan batch, w.cfg.Lanes)
	var consumeErr error
	var consume, lanes, pipeline sync.WaitGroup
	consume.Go(func() {
		consumeErr = w.consume(ctx, group)
		close(w.in) // every claim has returned: nothing more will be sent
	})
	pipeline.Go(func() { w.batch(work); close(work) })
	for range w.cfg.Lanes {
		lanes.Go(func() { w.lane(ctx, work, done) })
	}
	pipeline.Go(func() { lanes.Wait(); close(done) })
	pipeline.Go(func() {
		w.sequence(done, producer)
		if producer != nil {
			producer.AsyncClose()
		}
	})
	if producer != nil {
		pipeline.Go(func() { w.acks(ctx, producer) })
	}
	consume.Wait()
	pipeline.Wait()
	return consumeErr
}

// consume stays in the group until ctx ends, rejoining after every rebalance.
func (w *Worker) consume(ctx context.Context, group sarama.ConsumerGroup) error {
	var errs sync.WaitGroup
	defer errs.Wait()
	errs.Go(func() { // commit and fetch errors of the group: read them, or sarama blocks
		for err := range group.Errors() {
			w.log.Warn("consumer group error", "err", err)
		}
	})
	// Leaving the group commits the marked offsets and moves its partitions to the others
	// at once; it also ends the errors loop. It runs only after every claim has returned,
	// so every record this worker took is marked or abandoned by then.
	defer group.Close()
	for {
		err := group.Consume(ctx, []string{w.cfg.Stream.Topic}, w)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return err
		}
		if err != nil {
			w.log.Warn("consumer group session ended; rejoining", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// Setup is part of sarama.ConsumerGroupHandler.
func (w *Worker) Setup(s sarama.ConsumerGroupSession) error {
	w.log.Debug("joined consumer group", "group", w.cfg.Deployment.Group(), "claims", s.Claims())
	return nil
}

// Cleanup is part of sarama.ConsumerGroupHandler.
func (w *Worker) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim feeds one partition's records to the shared batcher and returns only when
// every record it fed is finished, so that its offsets are marked before the partition
// can move to another runner.
func (w *Worker) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	var pending sync.WaitGroup
	committed := int64(-1)
	var txn *txnPartition
	if w.eos {
		// Before anything is read: the new producer fences the partition's previous owner
		// (its open transaction is aborted), and the offset its last transaction committed
		// may be past where the session started.
		var err error
		if txn, err = w.openTxn(s, c.Partition()); err != nil {
			return nil // the session ended first
		}
		defer txn.close() // after pending.Wait (deferred below): every item was handed over
		committed = txn.committed
	}
	if w.tracking != nil { // the partition's cameras continue from their checkpoints
		states, err := w.cfg.Kafka.LatestByKey(wire.StateTopic(w.cfg.Deployment), c.Partition())
		if err != nil {
			return fmt.Errorf("reading the tracker checkpoints of partition %d: %w", c.Partition(), err)
		}
		w.tracking.restore(states)
	}
	w.setClaimed(c.Partition(), true)
	defer w.setClaimed(c.Partition(), false)
	defer pending.Wait()
	if txn != nil {
		// Runs first: whatever the claim still holds gets one attempt at its transaction.
		// (With the cooperative protocol the session outlives a revoked claim, so the end
		// of the claim, not of the session, says the partition is no longer ours.)
		defer txn.lose()
	}
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			if m.Offset < committed {
				continue // committed by the previous owner's last transaction
			}
			pending.Add(1)
			it := &item{msg: m, session: s, release: pending.Done}
			if !w.eos {
				w.track(it)
			}
			select {
			case w.in <- it:
			case <-s.Context().Done():
				w.abandon(it)
				return nil
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

func (w *Worker) setClaimed(p int32, held bool) {
	w.claimMu.Lock()
	defer w.claimMu.Unlock()
	if held {
		w.claimed[p] = true
	} else {
		delete(w.claimed, p)
	}
}

// Partitions lists the partitions of the stream this worker holds now, sorted.
func (w *Worker) Partitions() []int32 {
	w.claimMu.Lock()
	defer w.claimMu.Unlock()
	return slices.Sorted(maps.Keys(w.claimed))
}

// batch collects up to Batch items, waiting at most MaxDelay after the first, numbers the
// batches and hands them to the lanes, until the input closes.
func (w *Worker) batch(work chan<- batch) {
	size := w.cfg.Deployment.Batch
	var n uint64
	for {
		first, ok := <-w.in
		if !ok {
			return
		}
		items := []*item{first}
		var timer *time.Timer
		var deadline <-chan time.Time // nil without MaxDelay: take only what is queued
		if w.cfg.MaxDelay > 0 {
			timer = time.NewTimer(w.cfg.MaxDelay)
			deadline = timer.C
		}
	fill:
		for len(items) < size {
			if deadline == nil {
				select {
				case it, ok := <-w.in:
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
			case it, ok := <-w.in:
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
		work <- batch{n: n, items: items}
		n++
	}
}

// lane runs batches through the model until work closes. When ctx ends, a batch whose
// model run keeps failing is given up (its records stay uncommitted and are redelivered).
func (w *Worker) lane(ctx context.Context, work <-chan batch, done chan<- batch) {
	for b := range work {
		w.process(ctx, b.items)
		done <- b
	}
}

// process turns a batch into results. Frame errors (a record that is not a frame, an
// image that does not decode) become error results; a failed model run is retried.
func (w *Worker) process(ctx context.Context, items []*item) {
	start := time.Now()
	d := w.cfg.Deployment
	var frames [][]byte
	var inferIdx []int
	for i, it := range items {
		r := &it.result
		r.Stream, r.Function, r.Digest = d.Stream, d.Function, d.Digest
		r.Source = wire.Source{Partition: it.msg.Partition, Offset: it.msg.Offset}
		if end, ok := d.StopAt[it.msg.Partition]; ok && it.msg.Offset >= end {
			it.skip = true // past the window's end
			continue
		}
		f, err := kafkaclient.DecodeFrame(it.msg)
		if len(d.Cameras) > 0 && !slices.Contains(d.Cameras, f.Camera) {
			it.skip = true
			continue
		}
		r.Camera, r.Seq, r.CaptureTime = f.Camera, f.Seq, f.CaptureTime
		if r.Camera == "" {
			r.Camera = string(it.msg.Key)
		}
		r.ID = wire.ResultID(d.Stream, r.Camera, r.Seq, d.Digest)
		if !f.IngestTime.IsZero() {
			r.Timings.Queue = ms(start.Sub(f.IngestTime))
		}
		switch {
		case err != nil:
			r.Status, r.Error = wire.StatusError, err.Error()
			r.ID = wire.ResultIDAt(d.Stream, it.msg.Partition, it.msg.Offset, d.Digest)
		case d.Policy == wire.PolicyLive && d.MaxAge > 0 && start.Sub(f.CaptureTime) > time.Duration(d.MaxAge):
			r.Status = wire.StatusSkipped
			r.Error = fmt.Sprintf("older than the deployment's max age %v", time.Duration(d.MaxAge))
		default:
			frames = append(frames, f.Data)
			inferIdx = append(inferIdx, i)
		}
	}
	if len(frames) == 0 {
		return
	}
	out, tm, err := w.run(ctx, frames)
	n := float64(len(frames))
	for k, i := range inferIdx {
		r := &items[i].result
		r.Timings.Batch = len(frames)
		r.Timings.Decode, r.Timings.Preprocess, r.Timings.Infer = ms(tm.Decode)/n, ms(tm.Preprocess)/n, ms(tm.Infer)/n
		switch {
		case err != nil: // only when ctx ended during retries
			items[i].givenUp = true
		case out[k].Err != nil:
			r.Status, r.Error = wire.StatusError, out[k].Err.Error()
		default:
			r.Status = wire.StatusOK
			r.Width, r.Height, r.Raw = out[k].Width, out[k].Height, out[k].Raw
			r.Detections = toWire(out[k].Detections)
		}
	}
	if err == nil {
		metrics.BatchSize.WithLabelValues(d.Key()).Observe(n)
		metrics.Inference.WithLabelValues(d.Key()).Observe(tm.Infer.Seconds())
	}
}

// run calls the model, retrying a failed run with backoff (RetryBackoff doubling to 30 s) until it
// succeeds or ctx ends.
func (w *Worker) run(ctx context.Context, frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	wait := w.cfg.RetryBackoff
	for {
		out, tm, err := w.cfg.Model.Run(frames)
		w.recordRun(err)
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

// toWire converts a function's detections to the result record's, dropping any whose
// numbers are not finite (JSON cannot carry NaN or Inf).
func toWire(ds []functions.Detection) []wire.Detection {
	out := make([]wire.Detection, 0, len(ds))
	for _, d := range ds {
		v := []float32{d.Score, d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2}
		if slices.ContainsFunc(v, func(f float32) bool { return math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) }) {
			continue
		}
		out = append(out, wire.Detection{ClassID: d.ClassID, Label: d.Label, Score: d.Score,
			Box: wire.Box{X1: d.Box.X1, Y1: d.Box.Y1, X2: d.Box.X2, Y2: d.Box.Y2}})
	}
	return out
}

// recordRun tracks consecutive inference failures; a success clears them.
func (w *Worker) recordRun(err error) {
	w.healthMu.Lock()
	defer w.healthMu.Unlock()
	if err == nil {
		w.failedRuns, w.unhealthyWhy = 0, ""
		return
	}
	w.failedRuns++
	w.log.Error("inference failed; retrying the batch", "consecutive", w.failedRuns, "err", err)
	if w.failedRuns >= UnhealthyAfter {
		w.unhealthyWhy = fmt.Sprintf("%d inference runs in a row failed; last: %v", w.failedRuns, err)
	}
}

// Unhealthy returns why the function is unhealthy, or "" when it is not.
func (w *Worker) Unhealthy() string {
	w.healthMu.Lock()
	defer w.healthMu.Unlock()
	return w.unhealthyWhy
}

// sequence hands finished batches' results to the producer in batch order, each taking
// an in-flight slot (so at most MaxInFlight results wait for acknowledgement).
func (w *Worker) sequence(done <-chan batch, producer sarama.AsyncProducer) {
	var next uint64
	waiting := map[uint64]batch{}
	var idle <-chan time.Time
	if w.tracking != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		idle = t.C
	}
	for {
		var b batch
		select {
		case now := <-idle:
			w.tracking.closeIdle(now)
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
				if !it.givenUp && !it.skip {
					if w.tracking != nil {
						it.state = w.tracking.apply(&it.result, time.Now())
					}
					w.encode(it)
				}
				if w.eos { // the partition's transactions take every item, in order
					w.txnFor(it).add(it) // registered by the item's claim until it is released
					continue
				}
				switch {
				case it.givenUp:
					w.abandon(it) // redelivered to the partition's next owner
				case it.skip:
					it.acked = true // nothing to write: done once the frames before it are
					w.settle(it)
				default:
					w.send(producer, it)
				}
			}
		}
	}
}

// encode writes an item's result record (it.payload), replacing a result that cannot be
// written with an error result that says why.
func (w *Worker) encode(it *item) {
	r := &it.result
	if !r.CaptureTime.IsZero() {
		r.Timings.EndToEnd = ms(time.Since(r.CaptureTime))
	}
	b, err := json.Marshal(r)
	if err == nil && len(b) > MaxResultBytes {
		err = fmt.Errorf("the result is %d bytes, over the %d-byte limit of a result record", len(b), MaxResultBytes)
	}
	if err != nil {
		w.log.Warn("result replaced by an error result", "camera", r.Camera, "seq", r.Seq, "err", err)
		*r = errorResult(*r, err)
		b, _ = json.Marshal(r)
	}
	it.payload = b
	if len(it.state) > MaxResultBytes {
		w.log.Error("tracker checkpoint over the record limit; the camera's state is not saved for this frame",
			"camera", r.Camera, "bytes", len(it.state))
		metrics.TrackerCheckpointErrors.WithLabelValues(w.cfg.Deployment.Key()).Inc()
		it.state = nil
	}
}

// records are the records written for an item: its result and, when it tracks, the
// camera's checkpoint (same key, so the same partition as the camera's frames).
func (w *Worker) records(it *item) []*sarama.ProducerMessage {
	key := sarama.StringEncoder(it.result.Camera)
	out := []*sarama.ProducerMessage{{Topic: w.cfg.Stream.ResultsTopic, Key: key,
		Value: sarama.ByteEncoder(it.payload), Metadata: &outMsg{it: it}}}
	if it.state != nil {
		out = append(out, &sarama.ProducerMessage{Topic: wire.StateTopic(w.cfg.Deployment), Key: key,
			Value: sarama.ByteEncoder(it.state), Metadata: &outMsg{it: it, state: true}})
	}
	return out
}

// send hands an encoded item's records to the at-least-once producer.
func (w *Worker) send(producer sarama.AsyncProducer, it *item) {
	msgs := w.records(it)
	it.pending.Store(int32(len(msgs)))
	for _, m := range msgs {
		w.inFlight <- struct{}{}
		producer.Input() <- m
	}
}

// errorResult keeps a result's identity and says why it carries no output.
func errorResult(r wire.Result, err error) wire.Result {
	return wire.Result{ID: r.ID, Stream: r.Stream, Camera: r.Camera, Seq: r.Seq, CaptureTime: r.CaptureTime,
		Function: r.Function, Digest: r.Digest, Status: wire.StatusError, Error: err.Error(), Width: r.Width,
		Height: r.Height, Timings: r.Timings, Source: r.Source}
}

// acks reads the producer's answers until it is closed: a success marks offsets, a
// permanent refusal (the record is too large or invalid) becomes an error result, and any
// other failure is retried after a second, unless the partition has moved on.
func (w *Worker) acks(ctx context.Context, producer sarama.AsyncProducer) {
	successes, errs := producer.Successes(), producer.Errors()
	for successes != nil || errs != nil {
		select {
		case m, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			<-w.inFlight
			if om := m.Metadata.(*outMsg); om.it.pending.Add(-1) == 0 {
				w.acked(om.it)
			}
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			<-w.inFlight
			om := pe.Msg.Metadata.(*outMsg)
			it := om.it
			permanent := errors.Is(pe.Err, sarama.ErrMessageSizeTooLarge) || errors.Is(pe.Err, sarama.ErrInvalidMessage) ||
				errors.Is(pe.Err, sarama.ErrMessageTooLarge)
			switch {
			case permanent && om.state:
				w.log.Error("tracker checkpoint refused by Kafka; the camera's state is not saved for this frame", "camera", it.result.Camera, "err", pe.Err)
				if it.pending.Add(-1) == 0 {
					w.acked(it)
				}
			case permanent:
				it.result = errorResult(it.result, fmt.Errorf("kafka refused the result: %w", pe.Err))
				w.resend(producer, om)
			case it.session.Context().Err() != nil || ctx.Err() != nil:
				w.log.Warn("result not acknowledged; its frame goes to the partition's next owner", "err", pe.Err)
				w.abandon(it)
			default:
				w.log.Warn("result not acknowledged by Kafka; retrying", "err", pe.Err)
				time.AfterFunc(time.Second, func() { w.resend(producer, om) })
			}
		}
	}
}

// resend hands a result to the producer again; the producer may be closing, in which case
// the frame is abandoned (redelivered).
func (w *Worker) resend(producer sarama.AsyncProducer, om *outMsg) {
	it := om.it
	defer func() {
		if recover() != nil { // the input channel was closed by AsyncClose
			w.abandon(it)
		}
	}()
	topic, value := wire.StateTopic(w.cfg.Deployment), it.state
	if !om.state {
		b, _ := json.Marshal(&it.result)
		it.payload = b
		topic, value = w.cfg.Stream.ResultsTopic, b
	}
	w.inFlight <- struct{}{}
	producer.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(it.result.Camera),
		Value: sarama.ByteEncoder(value), Metadata: om}
}

// acked finishes an item whose records Kafka acknowledged: done, then (at-least-once)
// every offset of its partition up to the first one still waiting is marked.
func (w *Worker) acked(it *item) {
	w.done(it)
	it.acked = true
	w.settle(it)
}

// done counts a result that is durable in Kafka and publishes it live; exactly-once
// releases the item here (its offset was committed in the same transaction).
func (w *Worker) done(it *item) {
	if it.skip {
		if w.eos {
			it.release()
		}
		return
	}
	r := &it.result
	key := w.cfg.Deployment.Key()
	metrics.FramesProcessed.WithLabelValues(key, r.Status).Inc()
	if r.Timings.EndToEnd > 0 {
		metrics.EndToEnd.WithLabelValues(key).Observe(r.Timings.EndToEnd / 1000)
	}
	if w.cfg.NATS != nil {
		// The result id as the message id: a JetStream stream over these subjects drops the
		// duplicates that at-least-once delivery can send.
		_ = w.cfg.NATS.PublishMsg(&nats.Msg{Subject: w.cfg.Deployment.ResultSubject(r.Camera), Data: it.payload,
			Header: nats.Header{nats.MsgIdHdr: []string{r.ID}}})
	}
	switch r.Status {
	case wire.StatusOK:
		w.Stats.OK.Add(1)
	case wire.StatusSkipped:
		w.Stats.Skipped.Add(1)
	default:
		w.Stats.Errors.Add(1)
	}
	w.Stats.Frames.Add(1)
	w.Stats.LastResult.Store(time.Now().UnixNano())
	if w.eos {
		it.release()
	}
}

// abandon finishes an item without a result: its offset is not marked, and nothing after
// it in its partition is marked by this session (the next owner redoes them).
func (w *Worker) abandon(it *item) {
	if w.eos { // nothing is committed without a transaction
		it.release()
		return
	}
	w.trackMu.Lock()
	t := w.tracks[trackKeyOf(it)]
	if t != nil {
		t.broken = true
	}
	w.trackMu.Unlock()
	w.settle(it)
}

// trackKey identifies a partition within one group session: the same partition in a
// later session (after a rebalance) is tracked afresh.
type trackKey struct {
	session   sarama.ConsumerGroupSession
	partition int32
}

func trackKeyOf(it *item) trackKey { return trackKey{it.session, it.msg.Partition} }

// partitionTrack is a partition's records in consumption order that are not yet marked.
type partitionTrack struct {
	pending []*item
	settled map[*item]bool
	broken  bool // an item was abandoned: mark nothing more in this session
}

func (w *Worker) track(it *item) {
	w.trackMu.Lock()
	defer w.trackMu.Unlock()
	k := trackKeyOf(it)
	t := w.tracks[k]
	if t == nil {
		t = &partitionTrack{settled: map[*item]bool{}}
		w.tracks[k] = t
	}
	t.pending = append(t.pending, it)
}

// settle records that it is finished and marks the partition's offsets up to the first
// record still in flight, releasing each record from its claim.
func (w *Worker) settle(it *item) {
	w.trackMu.Lock()
	k := trackKeyOf(it)
	t := w.tracks[k]
	t.settled[it] = true
	var ready []*item
	for len(t.pending) > 0 && t.settled[t.pending[0]] {
		ready = append(ready, t.pending[0])
		delete(t.settled, t.pending[0])
		t.pending = t.pending[1:]
	}
	broken := t.broken
	if len(t.pending) == 0 && !broken { // a broken track stays, so nothing later is marked
		delete(w.tracks, k)
	}
	w.trackMu.Unlock()
	for _, r := range ready {
		if r.acked && !broken {
			r.session.MarkMessage(r.msg, "")
		}
		r.release()
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
