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
	// Before anything is read: exactly-once fences the partition's previous owner here, and
	// learns where that owner's last transaction left the partition. The claim's life as
	// this handler sees it is the session's: with the cooperative protocol a revoked claim
	// ends before its session does, which only the end of c.Messages() says.
	dc, err := m.delivery.claim(s.Context(), s, p)
	if err != nil {
		return nil // the session ended first
	}
	if m.w.tracking != nil { // the partition's cameras continue from their checkpoints
		states, err := m.w.cfg.Kafka.LatestByKey(wire.StateTopic(m.w.cfg.Deployment), p)
		if err != nil {
			dc.release()
			return fmt.Errorf("reading the tracker checkpoints of partition %d: %w", p, err)
		}
		m.w.tracking.restore(states)
	}
	m.w.claims.set(p, true)
	defer func() {
		// Whatever the claim still holds gets one attempt; every record it fed is finished
		// when release returns. (The end of the claim, not of the session, says the
		// partition is no longer ours.)
		dc.release()
		m.w.claims.set(p, false)
	}()
	from := dc.from()
	for {
		select {
		case msg, ok := <-c.Messages():
			if !ok {
				return nil
			}
			if msg.Offset < from {
				continue // committed by the previous owner's last transaction
			}
			it := itemOf(msg)
			dc.take(it)
			select {
			case m.in <- it:
			case <-s.Context().Done():
				dc.abandon(it)
				return nil
			}
		case <-s.Context().Done():
			return nil
		}
	}
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
