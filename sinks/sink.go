package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// Defaults of a sink's delivery.
const (
	DefaultMaxAttempts = 10
	DefaultMaxAge      = time.Hour
	DefaultBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
	attemptTimeout     = 15 * time.Second
)

// Config is one sink's.
type Config struct {
	Spec wire.Sink
	// Topic is the stream's results topic. Required.
	Topic string
	// Kafka is the process's client: dead letters are produced on it. Required. The
	// sink's consumer group has a connection of its own (sarama: a group may not share a
	// client with another).
	Kafka *kafkaclient.Client
	// Target receives the events. Required (NewTarget makes one from Spec).
	Target Target
	// Gateway is the base URL snapshots are named by (http://HOST:PORT); "": none.
	Gateway string
	// Backoff is the first retry's wait, doubled each time up to MaxBackoff, with jitter.
	// Defaults DefaultBackoff and DefaultMaxBackoff.
	Backoff, MaxBackoff time.Duration
	Logger              *slog.Logger
}

// Sink delivers one sink's events; Run does the work.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	mu     sync.Mutex // guards filter
	filter *filter
	stats  stats
}

type stats struct {
	delivered, failed, retrying, dead atomic.Int64
	running                           atomic.Bool
	mu                                sync.Mutex
	lastErr                           string
	lastErrAt                         time.Time
	groupErr                          bool
}

func (s *stats) fail(err error, group bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.lastErrAt, s.groupErr = err.Error(), time.Now().UTC(), group
}

// New checks cfg and returns its sink.
func New(cfg Config) (*Sink, error) {
	if cfg.Topic == "" || cfg.Kafka == nil || cfg.Target == nil {
		return nil, errors.New("sinks: Config needs Topic, Kafka and Target")
	}
	if cfg.Spec.MaxAttempts <= 0 {
		cfg.Spec.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Spec.MaxAge <= 0 {
		cfg.Spec.MaxAge = wire.Duration(DefaultMaxAge)
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sink{cfg: cfg, log: cfg.Logger.With("component", "sink", "sink", cfg.Spec.Name),
		filter: newFilter(cfg.Spec, cfg.Gateway)}, nil
}

// Status is what the sink did so far (Lag is left to the caller).
func (s *Sink) Status() api.SinkStatus {
	st := api.SinkStatus{Delivered: s.stats.delivered.Load(), Failed: s.stats.failed.Load(),
		Retrying: s.stats.retrying.Load(), DeadLettered: s.stats.dead.Load(), State: api.SinkStarting}
	s.stats.mu.Lock()
	st.LastError, st.LastErrorAt = s.stats.lastErr, s.stats.lastErrAt
	groupErr := s.stats.groupErr
	s.stats.mu.Unlock()
	switch {
	case groupErr:
		st.State = api.SinkFailed
	case st.Retrying > 0:
		st.State = api.SinkRetrying
	case s.stats.running.Load():
		st.State = api.SinkRunning
	}
	return st
}

// Run consumes the results topic in the sink's group and delivers until ctx ends; a
// partition's current event is abandoned then (its offset not marked: the next owner
// sends it again). The target is its owner's to close, after Run returned.
func (s *Sink) Run(ctx context.Context) error {
	producer, err := s.cfg.Kafka.SyncProducer()
	if err != nil {
		return fmt.Errorf("sink %s: dead-letter producer: %w", s.cfg.Spec.Name, err)
	}
	defer producer.Close()
	kcfg := kafkaclient.RunnerConfig("diplip-sink-" + s.cfg.Spec.Name)
	kcfg.Consumer.Fetch.Default = 1 << 20 // results are small
	group, err := sarama.NewConsumerGroup(s.cfg.Kafka.Brokers(), wire.SinkGroup(s.cfg.Spec.Name), kcfg)
	if err != nil {
		return fmt.Errorf("sink %s: consumer group: %w", s.cfg.Spec.Name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { // ends when the group is closed
		for err := range group.Errors() {
			s.log.Warn("sink consumer group", "err", err)
		}
	})
	defer func() { group.Close(); wg.Wait() }()
	h := &handler{s: s, producer: producer}
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{s.cfg.Topic}, h); err != nil && ctx.Err() == nil {
			s.stats.fail(err, true)
			s.log.Warn("sink consume", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	s.stats.running.Store(false)
	return nil
}

type handler struct {
	s        *Sink
	producer sarama.SyncProducer
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error {
	h.s.stats.running.Store(true)
	h.s.stats.mu.Lock()
	h.s.stats.groupErr = false
	h.s.stats.mu.Unlock()
	return nil
}

func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim handles a partition's results one after another, marking each once all
// its events are accepted or dead-lettered.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			if err := h.s.handle(ctx, h.producer, m.Value); err != nil {
				return nil // ctx ended: not marked, the partition's next owner sends it again
			}
			sess.MarkMessage(m, "")
		case <-ctx.Done():
			return nil
		}
	}
}

// handle delivers the events of one result record; it fails only when ctx ends.
func (s *Sink) handle(ctx context.Context, producer sarama.SyncProducer, value []byte) error {
	var r wire.Result
	if err := json.Unmarshal(value, &r); err != nil {
		s.log.Warn("sink: unreadable result skipped", "err", err)
		return nil
	}
	s.mu.Lock()
	events := s.filter.Events(r)
	var counts []api.SinkCount
	counter, isCounter := s.cfg.Target.(Counter)
	if isCounter {
		counts = s.filter.Counts(r)
	}
	s.mu.Unlock()
	for _, ev := range events {
		if err := s.deliver(ctx, producer, ev); err != nil {
			return err
		}
	}
	for _, c := range counts {
		if err := s.retry(ctx, func(ctx context.Context) error { return counter.PublishCount(ctx, c) }, func(int, time.Time, error) error {
			return nil // a count is kept again at its next change; it has no dead letter
		}); err != nil {
			return err
		}
	}
	return nil
}

// deliver sends ev until the target accepts it, or dead-letters it.
func (s *Sink) deliver(ctx context.Context, producer sarama.SyncProducer, ev api.SinkEvent) error {
	return s.retry(ctx, func(ctx context.Context) error {
		_, err := s.cfg.Target.Deliver(ctx, ev)
		if err == nil {
			s.stats.delivered.Add(1)
			mDelivered.WithLabelValues(s.cfg.Spec.Name).Inc()
			mLatency.WithLabelValues(s.cfg.Spec.Name).Observe(time.Since(ev.CaptureTime).Seconds())
		}
		return err
	}, func(attempts int, first time.Time, err error) error {
		return s.deadLetter(ctx, producer, api.DeadLetter{Sink: s.cfg.Spec.Name, Event: ev, Reason: err.Error(),
			Attempts: attempts, FirstAttempt: first, LastAttempt: time.Now().UTC()})
	})
}

// retry calls try until it succeeds, backing off between attempts; after a permanent
// error, MaxAttempts or MaxAge it calls giveUp. It fails only when ctx ends.
func (s *Sink) retry(ctx context.Context, try func(context.Context) error, giveUp func(attempts int, first time.Time, err error) error) error {
	first := time.Now().UTC()
	waiting := false
	defer func() {
		if waiting {
			s.stats.retrying.Add(-1)
		}
	}()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(context.WithValue(ctx, attemptKey{}, attempt), attemptTimeout)
		err := try(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.stats.failed.Add(1)
		mFailed.WithLabelValues(s.cfg.Spec.Name).Inc()
		s.stats.fail(err, false)
		if IsPermanent(err) || attempt >= s.cfg.Spec.MaxAttempts || time.Since(first) >= time.Duration(s.cfg.Spec.MaxAge) {
			why := err
			if !IsPermanent(err) {
				why = fmt.Errorf("gave up after %d attempts in %s: %w", attempt, time.Since(first).Round(time.Millisecond), err)
			}
			return giveUp(attempt, first, why)
		}
		if !waiting {
			waiting = true
			s.stats.retrying.Add(1)
		}
		mRetried.WithLabelValues(s.cfg.Spec.Name).Inc()
		if err := sleep(ctx, Backoff(s.cfg.Backoff, s.cfg.MaxBackoff, attempt)); err != nil {
			return err
		}
	}
}

// Backoff is the wait before retry n (n ≥ 1): base·2^(n-1), at most max, with "equal
// jitter" (a random half of it), so that many sinks recovering at once spread out.
func Backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deadLetter writes dl to the sink's dead-letter topic (key: the camera), retrying while
// Kafka refuses; it fails only when ctx ends.
func (s *Sink) deadLetter(ctx context.Context, producer sarama.SyncProducer, dl api.DeadLetter) error {
	b, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	msg := &sarama.ProducerMessage{Topic: wire.SinkDeadTopic(s.cfg.Spec.Name), Key: sarama.StringEncoder(dl.Event.Camera), Value: sarama.ByteEncoder(b)}
	for n := 1; ; n++ {
		if _, _, err := producer.SendMessage(msg); err == nil {
			break
		} else {
			s.log.Warn("sink: dead letter not written yet", "err", err)
		}
		if err := sleep(ctx, Backoff(s.cfg.Backoff, s.cfg.MaxBackoff, n)); err != nil {
			return err
		}
	}
	s.stats.dead.Add(1)
	mDead.WithLabelValues(s.cfg.Spec.Name).Inc()
	s.log.Info("sink: event dead-lettered", "event", dl.Event.ID, "reason", dl.Reason)
	return nil
}

func marshal(ev api.SinkEvent) ([]byte, error) { return json.Marshal(ev) }
