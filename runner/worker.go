package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

// Model runs a function on a batch of encoded frames. functions/pipeline.Function is the real
// one; bench uses a simulated accelerator with a fixed service time. Run is called from
// WorkerConfig.Lanes goroutines at once. A frame it cannot use (a corrupt JPEG) gets
// FrameResult.Err; the error return means the model or its device failed for the batch.
type Model = flow.Model

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
	// MaxInFlight bounds results handed to Kafka and not yet acknowledged (at-least-once).
	// Default 4 × Lanes × batch.
	MaxInFlight int
	// MaxBytesInFlight bounds the bytes held for records taken and not yet finished, in
	// both deliveries: frames in the pipeline, then results and checkpoints until Kafka
	// has them (acknowledged, or committed). A claim waits for room before it takes a
	// record. Default DefaultMaxBytesInFlight (64 MiB).
	MaxBytesInFlight int64
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
	// Duplicates counts the frames skipped because their camera had sent their seq
	// already (exactly-once).
	Duplicates atomic.Int64
	// LastResult is the Unix nanosecond time of the last result acknowledged.
	LastResult atomic.Int64
}

// UnhealthyAfter is how many consecutive failed inference runs mark a function unhealthy.
const UnhealthyAfter = flow.UnhealthyAfter

// MaxResultBytes is the largest result record a worker writes; a bigger one (e.g. the raw
// decoder's tensors) is replaced by an error result that says so. The producer's own
// limit (sarama's Producer.MaxMessageBytes, 1 MB by default, and the broker's) is set
// above it by kafkaclient.RunnerConfig.
const MaxResultBytes = flow.MaxResultBytes

// Worker consumes a deployment's stream as one member of its consumer group and turns
// every frame into one result:
//
//	membership ──► flow: batcher ──► lanes (Model.Run) ──► sequencer ──► delivery ──► Kafka
//
// Membership (membership.go) feeds each claimed partition's records to the pipeline
// (package flow, which knows nothing of Kafka), whose sequencer hands every record on in
// the order it was consumed, so each partition's results come out in offset order. The
// delivery, picked once from the deployment, writes them and settles the offsets:
// at-least-once (atleastonce.go) marks an offset only when its result and every earlier
// one of its partition are acknowledged by Kafka; exactly-once (transactional.go) commits
// a partition's results and its next offset in one transaction. A failing model run is
// retried with backoff and nothing of its batch is committed; after UnhealthyAfter
// failures in a row the function is reported unhealthy (and consumption waits on the
// retries).
type Worker struct {
	cfg   WorkerConfig
	log   *slog.Logger
	Stats Stats

	pipeline *flow.Pipeline
	budget   *budget // bytes in flight
	claims   claimedSet
	tracking *tracking // the tracker stage; nil when the deployment does not track
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
	if cfg.MaxBytesInFlight <= 0 {
		cfg.MaxBytesInFlight = DefaultMaxBytesInFlight
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Worker{cfg: cfg, log: cfg.Logger.With("component", "runner", "deployment", cfg.Deployment.Key()),
		budget: newBudget(cfg.MaxBytesInFlight)}
	fc := flow.Config{Deployment: cfg.Deployment, Model: cfg.Model, Lanes: cfg.Lanes, MaxDelay: cfg.MaxDelay,
		RetryBackoff: cfg.RetryBackoff, Logger: w.log}
	if err := afterStage(cfg, &fc); err != nil {
		return nil, err
	}
	if cfg.Deployment.Track != nil {
		tr, err := newTracking(cfg.Deployment, cfg.Zones, cfg.Logger.With("component", "tracker"))
		if err != nil {
			return nil, err
		}
		w.tracking, fc.Stage = tr, tr
	}
	w.pipeline = flow.New(fc)
	return w, nil
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
	if w.hasState() {
		if err := w.cfg.Kafka.EnsureCompactedTopic(wire.StateTopic(w.cfg.Deployment), w.cfg.Stream.Partitions); err != nil {
			return fmt.Errorf("runner: state topic: %w", err)
		}
	}
	group, err := sarama.NewConsumerGroupFromClient(w.cfg.Deployment.Group(), client)
	if err != nil {
		return fmt.Errorf("runner: joining consumer group %s: %w", w.cfg.Deployment.Group(), err)
	}
	// The one choice of delivery: nothing downstream asks which it is.
	var d delivery
	if w.cfg.Deployment.Delivery.Transactional() {
		d = newTransactional(w) // a producer per claimed partition, made when it is claimed
	} else if d, err = newAtLeastOnce(ctx, w); err != nil {
		group.Close()
		return fmt.Errorf("runner: results producer: %w", err)
	}

	in := make(chan *flow.Item, 2*w.cfg.Deployment.Batch*w.cfg.Lanes)
	m := &member{w: w, in: in, delivery: d}
	var consumeErr error
	var consume, pipeline sync.WaitGroup
	consume.Go(func() {
		consumeErr = m.consume(ctx, group)
		close(in) // every claim has returned: nothing more will be sent
	})
	pipeline.Go(func() {
		w.pipeline.Run(ctx, in, func(it *flow.Item) {
			w.budget.resize(it) // its result now, not its frame
			d.submit(it)
		})
		d.close()
	})
	consume.Wait()
	pipeline.Wait()
	return consumeErr
}

// hasState says whether the deployment keeps state that moves with its partitions, in its
// compacted state topic: the tracker's checkpoints, the cameras' seqs of exactly-once.
func (w *Worker) hasState() bool {
	return w.tracking != nil || w.cfg.Deployment.Delivery.Transactional()
}

// Unhealthy returns why the function is unhealthy, or "" when it is not.
func (w *Worker) Unhealthy() string { return w.pipeline.Unhealthy() }
