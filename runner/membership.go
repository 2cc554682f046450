package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

// member is a worker's membership of its deployment's consumer group (the sarama
// ConsumerGroupHandler): each partition it is handed is claimed from the delivery and its
// records are fed to the pipeline until the partition moves on.
type member struct {
	w        *Worker
	in       chan<- *flow.Item // the pipeline's input, shared by every claim
	delivery delivery
}

// consume stays in the group until ctx ends, rejoining after every rebalance.
func (m *member) consume(ctx context.Context, group sarama.ConsumerGroup) error {
	var errs sync.WaitGroup
	defer errs.Wait()
	errs.Go(func() { // commit and fetch errors of the group: read them, or sarama blocks
		for err := range group.Errors() {
			m.w.log.Warn("consumer group error", "err", err)
		}
	})
	// Leaving the group commits the marked offsets and moves its partitions to the others
	// at once; it also ends the errors loop. It runs only after every claim has returned,
	// so every record this worker took is marked or abandoned by then.
	defer group.Close()
	for {
		err := group.Consume(ctx, []string{m.w.cfg.Stream.Topic}, m)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return err
		}
		if err != nil {
			m.w.log.Warn("consumer group session ended; rejoining", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// Setup is part of sarama.ConsumerGroupHandler.
func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	m.w.log.Debug("joined consumer group", "group", m.w.cfg.Deployment.Group(), "claims", s.Claims())
	return nil
}

// Cleanup is part of sarama.ConsumerGroupHandler.
func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim feeds one partition's records to the shared pipeline and returns only when
// every record it fed is finished, so that its offsets are settled before the partition
// can move to another runner.
func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	p := c.Partition()
	// The claim's own life: with the cooperative protocol a revoked claim ends before its
	// session does, which only the end of c.Messages() says. The feed hears it at once,
	// whatever the claim is doing, and ends ctx; so does the end of the session.
	ctx, cancel := context.WithCancel(s.Context())
	defer cancel()
	f := newFeed(c)
	go f.run(c, cancel) // ends with c.Messages(), which sarama closes once we return at the latest
	// Before anything is read: exactly-once fences the partition's previous owner here, and
	// learns where that owner's last transaction left the partition.
	dc, err := m.delivery.claim(ctx, s, p)
	if err != nil {
		return nil // the claim ended first
	}
	if m.w.hasState() { // the partition's state: its cameras' checkpoints and seqs
		states, err := m.w.cfg.Kafka.LatestByKey(ctx, wire.StateTopic(m.w.cfg.Deployment), p)
		if err != nil {
			dc.release()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading the state of partition %d: %w", p, err)
		}
		dc.state(states)
		if m.w.tracking != nil { // its cameras continue from their checkpoints
			m.w.tracking.restore(p, states)
		}
	}
	m.w.claims.set(p, true)
	defer func() {
		// Whatever the claim still holds gets one attempt; every record it fed is finished
		// when release returns. Then the partition's cameras are forgotten here: their
		// state is the checkpoints', read again if the partition comes back.
		dc.release()
		if m.w.tracking != nil {
			m.w.tracking.drop(p)
		}
		m.w.claims.set(p, false)
	}()
	from := dc.from()
	for {
		msg, ok := f.next(ctx)
		if !ok {
			return nil
		}
		if msg.Offset < from {
			continue // committed by the previous owner's last transaction
		}
		it := itemOf(msg)
		it.Held = int64(len(it.Value))
		if !m.w.budget.take(ctx, it.Held) { // room for its bytes first
			return nil
		}
		dc.take(it)
		select {
		case m.in <- it:
		case <-ctx.Done():
			dc.abandon(it)
			return nil
		}
	}
}

// feedMax is how many records a claim's feed holds before it pauses fetching.
const feedMax = 64

// feed reads a claim's records into a queue of its own, so that the end of c.Messages()
// (sarama's word that the partition was revoked) is heard at once even while the claim
// waits (for its transactions to start, for room in the pipeline or in flight), and not
// only after the claim has worked through sarama's buffer. It pauses fetching while its
// queue is full, so that it holds at most feedMax records, sarama's channel buffer and
// one fetch.
type feed struct {
	pauser interface {
		Pause()
		Resume()
	} // nil when the claim cannot pause (a stand-in)
	ready  chan struct{} // a token when the queue gets a record
	mu     sync.Mutex
	queue  []*sarama.ConsumerMessage
	paused bool
}

func newFeed(c sarama.ConsumerGroupClaim) *feed {
	f := &feed{ready: make(chan struct{}, 1)}
	f.pauser, _ = c.(interface {
		Pause()
		Resume()
	})
	return f
}

// run queues c's records until c.Messages() closes, then ends the claim (cancel).
func (f *feed) run(c sarama.ConsumerGroupClaim, cancel context.CancelFunc) {
	defer cancel()
	for msg := range c.Messages() {
		f.mu.Lock()
		f.queue = append(f.queue, msg)
		if len(f.queue) >= feedMax && !f.paused && f.pauser != nil {
			f.pauser.Pause()
			f.paused = true
		}
		f.mu.Unlock()
		select {
		case f.ready <- struct{}{}:
		default:
		}
	}
}

// next returns the claim's next record, waiting for one; false once ctx ended.
func (f *feed) next(ctx context.Context) (*sarama.ConsumerMessage, bool) {
	for ctx.Err() == nil {
		f.mu.Lock()
		if len(f.queue) > 0 {
			msg := f.queue[0]
			f.queue[0] = nil
			f.queue = f.queue[1:]
			if f.paused && len(f.queue) <= feedMax/2 {
				f.pauser.Resume()
				f.paused = false
			}
			f.mu.Unlock()
			return msg, true
		}
		f.mu.Unlock()
		select {
		case <-f.ready:
		case <-ctx.Done():
		}
	}
	return nil, false
}

// itemOf is a consumed record as the pipeline carries it.
func itemOf(m *sarama.ConsumerMessage) *flow.Item {
	hs := make([]wire.Header, 0, len(m.Headers))
	for _, h := range m.Headers {
		if h != nil {
			hs = append(hs, wire.Header{Key: string(h.Key), Value: string(h.Value)})
		}
	}
	return &flow.Item{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), Headers: hs, Value: m.Value}
}

// claimedSet is the set of partitions a worker holds now.
type claimedSet struct {
	mu sync.Mutex
	m  map[int32]bool
}

func (c *claimedSet) set(p int32, held bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if held {
		if c.m == nil {
			c.m = map[int32]bool{}
		}
		c.m[p] = true
	} else {
		delete(c.m, p)
	}
}

// Partitions lists the partitions of the stream this worker holds now, sorted.
func (w *Worker) Partitions() []int32 {
	w.claims.mu.Lock()
	defer w.claims.mu.Unlock()
	return slices.Sorted(maps.Keys(w.claims.m))
}
