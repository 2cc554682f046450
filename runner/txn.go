package runner

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// Exactly-once delivery (wire.ExactlyOnce): each partition a worker claims gets a
// transactional producer of its own, with the transactional id of that partition of the
// deployment (TransactionalID). Its results, the cameras' tracker checkpoints and the
// partition's next offset go into Kafka in one transaction, so a read_committed reader
// sees a frame's result once, together with the offset that says it is done.
//
// Fencing: a producer made for a partition bumps the epoch of its transactional id, which
// aborts the previous owner's open transaction and refuses whatever that owner sends
// afterwards (a runner that was SIGSTOPped past its session timeout wakes up holding
// results for a partition it no longer owns: they never become visible). This is the
// transactional id per input partition of Kafka's original exactly-once design; the
// offsets are committed without the group's generation (KIP-447's member fencing): a
// commit during a rebalance would be refused until the rebalance ends, and the rebalance
// waits for this runner's revoked claims, whose frames queue behind that commit.

// maxTxnBackoff bounds the wait between attempts at a failed transaction: sarama already
// retried each request inside it, and a broker that comes back (the coordinator of the
// transactional id moved) should find the partition's results flowing again at once.
const maxTxnBackoff = 2 * time.Second

// maxTxnItems bounds one transaction; a partition's frames that queue up while a
// transaction commits go into the next one, so transactions grow with the load.
const maxTxnItems = 256

// TransactionalID is the transactional id of a deployment's results for one partition of
// its stream: every runner of the deployment uses the same one for the same partition.
func TransactionalID(d wire.Deployment, partition int32) string {
	return fmt.Sprintf("%s.p%d", d.Group(), partition)
}

// txnPartition writes one claimed partition's results in transactions. It is made and
// closed by ConsumeClaim; its goroutine commits what the sequencer hands it, in order.
type txnPartition struct {
	w         *Worker
	session   sarama.ConsumerGroupSession
	partition int32
	producer  sarama.SyncProducer
	// committed is the group's offset when the producer was made (after fencing): the
	// records below it were committed by the previous owner's last transaction.
	committed int64
	// queue holds the items the sequencer handed over, in offset order. It is not
	// bounded: a partition whose transactions keep failing must not hold up the
	// sequencer, or the other partitions (and a revoked claim, and so the rebalance that
	// would end the trouble) wait behind it. An item keeps its result, not its frame.
	mu     sync.Mutex
	queue  []*item
	closed bool
	wake   chan struct{} // a token when the queue gets an item or is closed
	done   chan struct{}
	// lost is closed when the claim ends (the partition was revoked, or the worker stops):
	// what is in flight then gets one attempt at its transaction, no retries.
	lost     chan struct{}
	loseOnce sync.Once
	broken   bool // a transaction was given up: nothing more is committed for this claim
}

// openTxn makes the partition's producer (fencing the previous owner) and reads where the
// previous owner's transactions left the partition, retrying until the session ends.
func (w *Worker) openTxn(s sarama.ConsumerGroupSession, partition int32) (*txnPartition, error) {
	t := &txnPartition{w: w, session: s, partition: partition,
		wake: make(chan struct{}, 1), done: make(chan struct{}), lost: make(chan struct{})}
	wait := w.cfg.RetryBackoff
	for {
		err := t.connect()
		if err == nil {
			break
		}
		w.log.Warn("cannot start the partition's transactions; retrying", "partition", partition, "err", err)
		select {
		case <-s.Context().Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
	w.trackMu.Lock()
	w.txns[trackKey{s, partition}] = t
	w.trackMu.Unlock()
	go t.run()
	return t, nil
}

// connect makes the producer and reads the partition's committed offset.
func (t *txnPartition) connect() error {
	if t.producer != nil {
		_ = t.producer.Close()
		t.producer = nil
	}
	p, err := t.w.cfg.Kafka.TransactionalProducer(TransactionalID(t.w.cfg.Deployment, t.partition))
	if err != nil {
		return err
	}
	off, err := t.w.cfg.Kafka.StableCommit(t.w.cfg.Deployment.Group(), t.w.cfg.Stream.Topic, t.partition)
	if err != nil {
		_ = p.Close()
		return err
	}
	t.producer, t.committed = p, off
	return nil
}

// lose says the claim ended: no more retries.
func (t *txnPartition) lose() { t.loseOnce.Do(func() { close(t.lost) }) }

func (t *txnPartition) isLost() bool {
	select {
	case <-t.lost:
		return true
	default:
		return false
	}
}

// close ends the goroutine once every item was handed over (the claim waited for them)
// and closes the producer.
func (t *txnPartition) close() {
	t.w.trackMu.Lock()
	delete(t.w.txns, trackKey{t.session, t.partition})
	t.w.trackMu.Unlock()
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.signal()
	<-t.done
	if t.producer != nil {
		_ = t.producer.Close()
	}
}

// txnFor returns the transactional writer of an item's partition.
func (w *Worker) txnFor(it *item) *txnPartition {
	w.trackMu.Lock()
	defer w.trackMu.Unlock()
	return w.txns[trackKeyOf(it)]
}

// add queues an item for the partition's next transaction; it never blocks.
func (t *txnPartition) add(it *item) {
	it.msg.Value = nil // inferred: only the result is written
	t.mu.Lock()
	t.queue = append(t.queue, it)
	t.mu.Unlock()
	t.signal()
}

func (t *txnPartition) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// run commits what is queued, as many items at once as wait (up to maxTxnItems), until
// the queue is closed and empty.
func (t *txnPartition) run() {
	defer close(t.done)
	for {
		t.mu.Lock()
		n := min(len(t.queue), maxTxnItems)
		items := t.queue[:n:n]
		t.queue = t.queue[n:]
		closed := t.closed
		t.mu.Unlock()
		if n > 0 {
			t.commit(items)
			continue
		}
		if closed {
			return
		}
		<-t.wake
	}
}

// commit writes items (in offset order) in one transaction and finishes them. An item
// whose model run was given up, and everything after it, is released without a result:
// the partition's next owner redoes them. A failed transaction is aborted and retried
// until it commits or the claim ends (then what it held is redone by the next owner).
func (t *txnPartition) commit(items []*item) {
	var todo []*item
	var msgs []*sarama.ProducerMessage
	for _, it := range items {
		if it.givenUp {
			t.broken = true
		}
		if t.broken {
			it.release()
			continue
		}
		todo = append(todo, it)
		if !it.skip {
			msgs = append(msgs, t.w.records(it)...)
		}
	}
	wait := t.w.cfg.RetryBackoff
	for len(todo) > 0 {
		err := t.transact(msgs, todo[len(todo)-1].msg.Offset+1)
		if err == nil {
			for _, it := range todo {
				t.w.done(it)
			}
			key := t.w.cfg.Deployment.Key()
			metrics.Transactions.WithLabelValues(key, "committed").Inc()
			metrics.TransactionFrames.WithLabelValues(key).Observe(float64(len(todo)))
			return
		}
		if t.isLost() {
			t.w.log.Warn("transaction not committed; the partition's next owner redoes its frames",
				"partition", t.partition, "frames", len(todo), "err", err)
			t.broken = true
			for _, it := range todo {
				it.release()
			}
			metrics.Transactions.WithLabelValues(t.w.cfg.Deployment.Key(), "abandoned").Inc()
			return
		}
		metrics.Transactions.WithLabelValues(t.w.cfg.Deployment.Key(), "retried").Inc()
		t.w.log.Warn("transaction failed; retrying", "partition", t.partition, "frames", len(todo), "err", err)
		select { // a partition revoked meanwhile gets no retry
		case <-t.lost:
			continue
		case <-time.After(wait):
		}
		wait = min(2*wait, maxTxnBackoff)
		if t.producer.TxnStatus()&sarama.ProducerTxnFlagFatalError == 0 {
			continue
		}
		// A fatal error (fenced, or the transaction timed out) needs a new producer. A
		// runner that lost the partition hears it from the group within a heartbeat or
		// two (its claim ends): wait for that before taking the transactional id back.
		if fenced(err) {
			select {
			case <-t.lost:
				continue // released above on the next pass
			case <-time.After(2 * t.w.cfg.Kafka.Config().Consumer.Group.Heartbeat.Interval):
			}
		}
		if err := t.connect(); err != nil {
			t.w.log.Warn("cannot restart the partition's transactions", "partition", t.partition, "err", err)
			continue
		}
		// The failed commit may have landed after all (its answer was lost): what the new
		// producer reads as committed is done.
		for len(todo) > 0 && todo[0].msg.Offset < t.committed {
			t.w.done(todo[0])
			todo = todo[1:]
		}
		msgs = msgs[:0]
		for _, it := range todo {
			if !it.skip {
				msgs = append(msgs, t.w.records(it)...)
			}
		}
	}
}

// transact runs one transaction: the records, then the partition's next offset.
func (t *txnPartition) transact(msgs []*sarama.ProducerMessage, next int64) error {
	p := t.producer
	if err := p.BeginTxn(); err != nil {
		return err
	}
	err := p.SendMessages(msgs)
	if err == nil {
		err = p.AddOffsetsToTxn(map[string][]*sarama.PartitionOffsetMetadata{
			t.w.cfg.Stream.Topic: {{Partition: t.partition, Offset: next}}}, t.w.cfg.Deployment.Group())
	}
	if err == nil {
		err = p.CommitTxn()
	}
	if err != nil && p.TxnStatus()&sarama.ProducerTxnFlagAbortableError != 0 {
		if aerr := p.AbortTxn(); aerr != nil {
			err = fmt.Errorf("%w (and aborting: %v)", err, aerr)
		}
	}
	return err
}

// fenced reports whether err says another producer took the transactional id.
func fenced(err error) bool {
	return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch)
}
