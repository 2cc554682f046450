package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/runner/flow"
)

// fakeClaim is a claimed partition whose records (and revocation: closing msgs) the test gives.
type fakeClaim struct {
	sarama.ConsumerGroupClaim
	partition int32
	msgs      chan *sarama.ConsumerMessage
}

func (c *fakeClaim) Partition() int32                         { return c.partition }
func (c *fakeClaim) Messages() <-chan *sarama.ConsumerMessage { return c.msgs }

// ctxSession is a group session with a context of its own.
type ctxSession struct {
	fakeSession
	ctx context.Context
}

func (s *ctxSession) Context() context.Context { return s.ctx }

// A partition revoked while its claim cannot start transactions (no producer can be made)
// is let go at once: the claim watches its own end (c.Messages() closing), not only the
// session's, which goes on with the cooperative protocol; before, it held the rebalance
// until sarama's timeout.
func TestRevokedClaimThatCannotStartTransactionsLetsGo(t *testing.T) {
	w := testWorker(0)
	made := make(chan struct{}, 100)
	tx := txnWith(w, func(int) (sarama.SyncProducer, error) {
		made <- struct{}{}
		return nil, errors.New("coordinator not available")
	}, func() int64 { return 0 })
	m := &member{w: w, in: make(chan *flow.Item, 1), delivery: tx}
	sess := &ctxSession{ctx: context.Background()} // the session lives on
	c := &fakeClaim{partition: 3, msgs: make(chan *sarama.ConsumerMessage, 1)}
	done := make(chan error, 1)
	go func() { done <- m.ConsumeClaim(sess, c) }()
	<-made // trying to start the partition's transactions
	close(c.msgs)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a revoked claim still waits for its transactions to start")
	}
	if got := w.Partitions(); len(got) != 0 {
		t.Fatalf("partitions held after the revocation: %v", got)
	}
}

// A claim that waits for room in the pipeline hears its revocation too: the record it
// holds is abandoned and the claim returns, though sarama's buffer still had records.
func TestRevokedClaimWaitingForThePipelineLetsGo(t *testing.T) {
	w := testWorker(0)
	tx := txnWith(w, func(int) (sarama.SyncProducer, error) { return &fakeTxn{}, nil }, func() int64 { return 0 })
	m := &member{w: w, in: make(chan *flow.Item), delivery: tx} // nobody reads the pipeline
	c := &fakeClaim{partition: 1, msgs: make(chan *sarama.ConsumerMessage, 8)}
	for i := range 8 {
		c.msgs <- &sarama.ConsumerMessage{Partition: 1, Offset: int64(i), Key: []byte("cam")}
	}
	done := make(chan error, 1)
	go func() { done <- m.ConsumeClaim(&ctxSession{ctx: context.Background()}, c) }()
	time.Sleep(100 * time.Millisecond)
	close(c.msgs)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a revoked claim still waits for room in the pipeline")
	}
}
