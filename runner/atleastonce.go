package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

// atLeastOnce is the default delivery (wire.AtLeastOnce): one async producer for every
// partition of the worker; an offset is marked (and so committed) only when its result
// and every earlier one of its partition are acknowledged by Kafka, so a crash or a
// rebalance can write a result twice (same id) but never lose one. At most MaxInFlight
// records wait for their acknowledgement (and the worker's budget bounds their bytes).
//
// A frame's tracker checkpoint is sent only once its result is acknowledged: a runner
// killed between the two leaves a result without its checkpoint (the next owner tracks
// the frame again, from the checkpoint before, and writes the same result twice), never
// a checkpoint without its result (the next owner would take the frame for one already
// tracked, and its only result would have no track ids).
type atLeastOnce struct {
	w        *Worker
	ctx      context.Context // the worker's: once it ends, a failed record is not retried
	producer sarama.AsyncProducer
	inFlight chan struct{} // a slot per record handed to Kafka and not yet acknowledged
	acksDone chan struct{}
	// states are checkpoints whose results were acknowledged, in that order, each in the
	// place in flight its result held (so there is always room); one goroutine sends them.
	states     chan *sarama.ProducerMessage
	statesDone chan struct{}
}

// aloClaim is a claimed partition's pending offsets.
type aloClaim struct {
	ctx    context.Context // the claim's: once it ends, a failed record is not retried
	ledger *ledger
	items  sync.WaitGroup // taken and not yet released by the ledger
}

// aloItem is an item's Meta: its claim, and its records not yet acknowledged.
type aloItem struct {
	claim   *aloClaim
	records atomic.Int32 // not yet acknowledged (result, state)
	// state is the checkpoint to send once the result is acknowledged; the acks
	// goroutine takes it.
	state *sarama.ProducerMessage
}

func newAtLeastOnce(ctx context.Context, w *Worker) (*atLeastOnce, error) {
	producer, err := w.cfg.Kafka.AsyncProducer()
	if err != nil {
		return nil, err
	}
	return startAtLeastOnce(ctx, w, producer), nil
}

// startAtLeastOnce delivers through producer (which it closes), reading its answers.
func startAtLeastOnce(ctx context.Context, w *Worker, producer sarama.AsyncProducer) *atLeastOnce {
	a := &atLeastOnce{w: w, ctx: ctx, producer: producer,
		inFlight: make(chan struct{}, w.cfg.MaxInFlight), acksDone: make(chan struct{}),
		states: make(chan *sarama.ProducerMessage, w.cfg.MaxInFlight), statesDone: make(chan struct{})}
	go func() {
		defer close(a.acksDone)
		a.acks()
	}()
	go func() {
		defer close(a.statesDone)
		for m := range a.states {
			a.input(m)
		}
	}()
	return a
}

func (a *atLeastOnce) claim(ctx context.Context, s sarama.ConsumerGroupSession, partition int32) (claim, error) {
	c := &aloClaim{ctx: ctx}
	topic := a.w.cfg.Stream.Topic
	c.ledger = newLedger(func(it *flow.Item) { s.MarkOffset(topic, partition, it.Offset+1, "") },
		func(it *flow.Item) { a.w.budget.free(it); c.items.Done() })
	return c, nil
}

func (c *aloClaim) from() int64 { return -1 }

// state has nothing to take: at-least-once keeps no state of its own.
func (c *aloClaim) state(map[string][]byte) {}

func (c *aloClaim) take(it *flow.Item) {
	c.items.Add(1)
	it.Meta = &aloItem{claim: c}
	c.ledger.add(it)
}

func (c *aloClaim) abandon(it *flow.Item) { c.ledger.abandon(it) }

// release waits for the claim's items: their results acknowledged (or abandoned) and
// their offsets marked, before the partition can move on.
func (c *aloClaim) release() { c.items.Wait() }

func (a *atLeastOnce) submit(it *flow.Item) {
	c := it.Meta.(*aloItem).claim
	switch {
	case it.GivenUp:
		c.ledger.abandon(it) // redelivered to the partition's next owner
	case it.Skip:
		c.ledger.settle(it, true) // nothing to write: done once the frames before it are
	default:
		a.send(it)
	}
}

// close flushes the producer and waits for its last answers.
func (a *atLeastOnce) close() {
	a.producer.AsyncClose()
	<-a.acksDone
	close(a.states) // only the acks goroutine adds to it
	<-a.statesDone
}

// send hands an encoded item's result to the producer, taking a place in flight; its
// checkpoint, if any, follows the result's acknowledgement in that place.
func (a *atLeastOnce) send(it *flow.Item) {
	msgs := a.w.records(it)
	ai := it.Meta.(*aloItem)
	ai.records.Store(int32(len(msgs)))
	if len(msgs) > 1 {
		ai.state = msgs[1]
	}
	a.inFlight <- struct{}{}
	a.producer.Input() <- msgs[0]
}

// input hands a record to the producer, which may be closing: then its frame is
// abandoned (redelivered).
func (a *atLeastOnce) input(m *sarama.ProducerMessage) {
	defer func() {
		if recover() != nil { // the input channel was closed by AsyncClose
			it := m.Metadata.(*outMsg).it
			it.Meta.(*aloItem).claim.ledger.abandon(it)
		}
	}()
	a.producer.Input() <- m
}

// acks reads the producer's answers until it is closed: a success marks offsets, a
// permanent refusal (the record is too large or invalid) becomes an error result, and any
// other failure is retried after a second, unless the partition has moved on.
func (a *atLeastOnce) acks() {
	successes, errs := a.producer.Successes(), a.producer.Errors()
	for successes != nil || errs != nil {
		select {
		case m, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			it := m.Metadata.(*outMsg).it
			ai := it.Meta.(*aloItem)
			if s := ai.state; s != nil && !m.Metadata.(*outMsg).state { // the result is durable: now its checkpoint
				ai.state = nil
				ai.records.Add(-1)
				a.states <- s // never waits: each holds a place in flight
				continue
			}
			<-a.inFlight
			if ai.records.Add(-1) == 0 {
				a.acked(it)
			}
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			<-a.inFlight
			om := pe.Msg.Metadata.(*outMsg)
			it := om.it
			ai := it.Meta.(*aloItem)
			permanent := errors.Is(pe.Err, sarama.ErrMessageSizeTooLarge) || errors.Is(pe.Err, sarama.ErrInvalidMessage) ||
				errors.Is(pe.Err, sarama.ErrMessageTooLarge)
			switch {
			case permanent && om.state:
				a.w.log.Error("tracker checkpoint refused by Kafka; the camera's state is not saved for this frame", "camera", it.Result.Camera, "err", pe.Err)
				if ai.records.Add(-1) == 0 {
					a.acked(it)
				}
			case permanent:
				it.Result = flow.ErrorResult(it.Result, fmt.Errorf("kafka refused the result: %w", pe.Err))
				// Not from this goroutine: resending waits for a place in flight, and the
				// place this answer freed may have gone to a frame waiting for one; only
				// this goroutine frees places.
				go a.resend(om)
			case ai.claim.ctx.Err() != nil || a.ctx.Err() != nil:
				a.w.log.Warn("result not acknowledged; its frame goes to the partition's next owner", "err", pe.Err)
				ai.claim.ledger.abandon(it)
			default:
				a.w.log.Warn("result not acknowledged by Kafka; retrying", "err", pe.Err)
				time.AfterFunc(time.Second, func() { a.resend(om) })
			}
		}
	}
}

// resend hands a record to the producer again; the producer may be closing, in which case
// the frame is abandoned (redelivered).
func (a *atLeastOnce) resend(om *outMsg) {
	it := om.it
	defer func() {
		if recover() != nil { // the input channel was closed by AsyncClose
			it.Meta.(*aloItem).claim.ledger.abandon(it)
		}
	}()
	topic, value := wire.StateTopic(a.w.cfg.Deployment), it.State
	if !om.state {
		b, _ := json.Marshal(&it.Result)
		it.Payload = b
		topic, value = a.w.cfg.Stream.ResultsTopic, b
	}
	a.inFlight <- struct{}{}
	a.producer.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(it.Result.Camera),
		Value: sarama.ByteEncoder(value), Metadata: om}
}

// acked finishes an item whose records Kafka acknowledged: counted and published, then
// every offset of its partition up to the first one still waiting is marked.
func (a *atLeastOnce) acked(it *flow.Item) {
	a.w.delivered(it)
	it.Meta.(*aloItem).claim.ledger.settle(it, true)
}
