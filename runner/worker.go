package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// Model runs a function on a batch of encoded frames. functions/onnx.Function is the real
// one; bench uses a simulated accelerator with a fixed service time.
type Model interface {
	Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error)
}

// WorkerConfig is one deployment's work on one runner.
type WorkerConfig struct {
	Brokers    []string
	Deployment controlplane.Deployment
	Stream     controlplane.Stream
	Model      Model
	// MaxDelay is the longest the first frame of a batch waits for the batch to fill. 0
	// means no wait: a batch is whatever has arrived by the time the previous one is done,
	// which is right for models that run frame by frame anyway (waiting buys them nothing).
	MaxDelay time.Duration
	// NATS, when not nil, receives every result live on wire.ResultSubject.
	NATS *nats.Conn
	// ClientID names this runner in Kafka (and is its group member's client id).
	ClientID string
	Logger   *slog.Logger
}

// Stats counts what a worker did.
type Stats struct {
	Frames, OK, Skipped, Errors, Batches atomic.Int64
	// LastResult is the Unix nanosecond time of the last result produced.
	LastResult atomic.Int64
}

// UnhealthyAfter is how many consecutive failed inference runs mark a function unhealthy.
const UnhealthyAfter = 3

// Worker consumes a deployment's stream as one member of its consumer group, runs the
// model per batch across the partitions it holds, and produces one result per frame. An
// offset is marked (and so committed) only after that frame's result is acknowledged
// by Kafka: at-least-once end to end.
type Worker struct {
	cfg   WorkerConfig
	log   *slog.Logger
	Stats Stats

	claimMu sync.Mutex
	claimed map[int32]bool // partitions this worker holds now

	healthMu     sync.Mutex
	failedRuns   int    // consecutive batches whose inference failed
	unhealthyWhy string // set after UnhealthyAfter consecutive failures

	group    sarama.ConsumerGroup
	producer sarama.SyncProducer
	in       chan item
	cancel   context.CancelFunc
	done     chan struct{}
	err      error // why the worker stopped by itself; set before done closes
}

// item is one consumed record on its way through a batch.
type item struct {
	msg     *sarama.ConsumerMessage
	session sarama.ConsumerGroupSession
	taken   time.Time
	release func() // tells the claim the record is finished
}

// StartWorker joins the deployment's consumer group and starts processing.
func StartWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Model == nil || len(cfg.Brokers) == 0 || cfg.Stream.Topic == "" {
		return nil, errors.New("runner: WorkerConfig needs Brokers, Stream and Model")
	}
	if cfg.Deployment.Batch < 1 {
		cfg.Deployment.Batch = 1
	}
	if cfg.MaxDelay < 0 {
		cfg.MaxDelay = 0
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "diplip-runner"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Worker{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "runner", "deployment", cfg.Deployment.Key()),
		in:      make(chan item, 2*cfg.Deployment.Batch),
		done:    make(chan struct{}),
		claimed: map[int32]bool{},
	}
	gc := kafkaclient.NewConfig(cfg.ClientID)
	gc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	gc.Consumer.Offsets.Initial = sarama.OffsetOldest
	gc.Consumer.Offsets.AutoCommit.Interval = 500 * time.Millisecond
	gc.Consumer.Fetch.Default = 4 << 20 // frames are large
	gc.Consumer.Group.Session.Timeout = 10 * time.Second
	gc.Consumer.Group.Heartbeat.Interval = 2 * time.Second
	var err error
	if w.group, err = sarama.NewConsumerGroup(cfg.Brokers, cfg.Deployment.Group(), gc); err != nil {
		return nil, fmt.Errorf("runner: joining consumer group %s: %w", cfg.Deployment.Group(), err)
	}
	if w.producer, err = sarama.NewSyncProducer(cfg.Brokers, kafkaclient.NewConfig(cfg.ClientID+"-results")); err != nil {
		w.group.Close()
		return nil, fmt.Errorf("runner: results producer: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.batchLoop()
	}()
	go func() {
		w.err = w.consumeLoop(ctx)
		close(w.in) // every claim has returned: nothing more will be sent
		wg.Wait()
		w.producer.Close()
		close(w.done)
	}()
	return w, nil
}

// consumeLoop stays in the group until ctx ends, rejoining after every rebalance.
func (w *Worker) consumeLoop(ctx context.Context) error {
	defer w.group.Close() // leaves the group: its partitions move to the others at once
	for {
		err := w.group.Consume(ctx, []string{w.cfg.Stream.Topic}, w)
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
	w.setClaimed(c.Partition(), true)
	defer w.setClaimed(c.Partition(), false)
	var pending sync.WaitGroup
	defer pending.Wait()
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			pending.Add(1)
			select {
			case w.in <- item{msg: m, session: s, taken: time.Now(), release: pending.Done}:
			case <-s.Context().Done():
				pending.Done()
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

// batchLoop collects up to Batch frames, waiting at most MaxDelay after the first, and
// processes them, until the input closes.
func (w *Worker) batchLoop() {
	max := w.cfg.Deployment.Batch
	for {
		first, ok := <-w.in
		if !ok {
			return
		}
		batch := []item{first}
		var timer *time.Timer
		var deadline <-chan time.Time // nil without MaxDelay: take only what is queued
		if w.cfg.MaxDelay > 0 {
			timer = time.NewTimer(w.cfg.MaxDelay)
			deadline = timer.C
		}
	fill:
		for len(batch) < max {
			if deadline == nil {
				select {
				case it, ok := <-w.in:
					if !ok {
						break fill
					}
					batch = append(batch, it)
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
				batch = append(batch, it)
			case <-deadline:
				break fill
			}
		}
		if timer != nil {
			timer.Stop()
		}
		w.process(batch)
	}
}

// process turns a batch into results, produces them, and only then marks the offsets.
func (w *Worker) process(batch []item) {
	start := time.Now()
	d := w.cfg.Deployment
	results := make([]wire.Result, len(batch))
	var frames [][]byte
	var inferIdx []int
	for i, it := range batch {
		r := &results[i]
		r.Stream, r.Function, r.Digest = d.Stream, d.Function, d.Digest
		r.Source = wire.Source{Partition: it.msg.Partition, Offset: it.msg.Offset}
		f, err := wire.DecodeFrame(it.msg)
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
		case d.Policy == "live" && d.MaxAge > 0 && start.Sub(f.CaptureTime) > time.Duration(d.MaxAge):
			r.Status = wire.StatusSkipped
			r.Error = fmt.Sprintf("older than the deployment's max age %v", time.Duration(d.MaxAge))
		default:
			frames = append(frames, f.Data)
			inferIdx = append(inferIdx, i)
		}
	}
	if len(frames) > 0 {
		out, tm, err := w.cfg.Model.Run(frames)
		n := float64(len(frames))
		for k, i := range inferIdx {
			r := &results[i]
			r.Timings.Batch = len(frames)
			r.Timings.Decode, r.Timings.Preprocess, r.Timings.Infer = ms(tm.Decode)/n, ms(tm.Preprocess)/n, ms(tm.Infer)/n
			switch {
			case err != nil:
				r.Status, r.Error = wire.StatusError, "inference failed: "+err.Error()
			case out[k].Err != nil:
				r.Status, r.Error = wire.StatusError, out[k].Err.Error()
			default:
				r.Status = wire.StatusOK
				r.Width, r.Height, r.Detections, r.Raw = out[k].Width, out[k].Height, out[k].Detections, out[k].Raw
			}
		}
		w.recordRun(err)
	}
	w.produce(batch, results)
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
	w.log.Error("inference failed for a whole batch", "consecutive", w.failedRuns, "err", err)
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

// produce writes the batch's results and then marks its records, retrying until Kafka
// takes them or the worker is stopped (then the records stay unmarked and are redelivered).
func (w *Worker) produce(batch []item, results []wire.Result) {
	defer func() {
		for _, it := range batch {
			it.release()
		}
	}()
	now := time.Now()
	msgs := make([]*sarama.ProducerMessage, len(results))
	payloads := make([][]byte, len(results))
	for i := range results {
		r := &results[i]
		if !r.CaptureTime.IsZero() {
			r.Timings.EndToEnd = ms(now.Sub(r.CaptureTime))
		}
		b, _ := json.Marshal(r)
		payloads[i] = b
		msgs[i] = &sarama.ProducerMessage{Topic: w.cfg.Stream.ResultsTopic, Key: sarama.StringEncoder(r.Camera), Value: sarama.ByteEncoder(b)}
	}
	for attempt := 1; ; attempt++ {
		err := w.producer.SendMessages(msgs)
		if err == nil {
			break
		}
		w.log.Warn("results not acknowledged by Kafka; retrying", "attempt", attempt, "err", err)
		select {
		case <-batch[0].session.Context().Done():
			return // the partitions are gone; the next owner redoes these frames
		case <-time.After(time.Second):
		}
	}
	key := w.cfg.Deployment.Key()
	if n := len(results); n > 0 {
		metrics.BatchSize.WithLabelValues(key).Observe(float64(results[0].Timings.Batch))
		if results[0].Timings.Batch > 0 {
			metrics.Inference.WithLabelValues(key).Observe(results[0].Timings.Infer * float64(results[0].Timings.Batch) / 1000)
		}
	}
	for i, it := range batch {
		it.session.MarkMessage(it.msg, "")
		metrics.FramesProcessed.WithLabelValues(key, results[i].Status).Inc()
		if results[i].Timings.EndToEnd > 0 {
			metrics.EndToEnd.WithLabelValues(key).Observe(results[i].Timings.EndToEnd / 1000)
		}
		if w.cfg.NATS != nil {
			_ = w.cfg.NATS.Publish(wire.ResultSubject(results[i].Stream, results[i].Camera), payloads[i])
		}
		switch results[i].Status {
		case wire.StatusOK:
			w.Stats.OK.Add(1)
		case wire.StatusSkipped:
			w.Stats.Skipped.Add(1)
		default:
			w.Stats.Errors.Add(1)
		}
	}
	w.Stats.Frames.Add(int64(len(batch)))
	w.Stats.Batches.Add(1)
	w.Stats.LastResult.Store(now.UnixNano())
}

// Stop deactivates the worker: it stops fetching, finishes the batch in flight, commits,
// leaves the consumer group and closes its producer. The model is the caller's to close.
func (w *Worker) Stop() {
	w.cancel()
	<-w.done
}

// Done is closed when the worker has stopped, by Stop or by itself; Err says why.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Err is the reason a worker stopped by itself (nil after Stop).
func (w *Worker) Err() error {
	<-w.done
	return w.err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
