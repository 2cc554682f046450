package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
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

// txnReplayLinger: in a replay (a backlog, no live latency to keep), while a claim has frames
// in the pipeline its results wait this long for them to join their transaction: one costs
// the broker the same whatever it holds. A live deployment commits at once: frames keep
// arriving there, so its results would wait the whole linger, against its latency target.
const txnReplayLinger = time.Second

// TransactionalID is the transactional id of a deployment's results for one partition of
// its stream: every runner of the deployment uses the same one for the same partition.
func TransactionalID(d wire.Deployment, partition int32) string {
	return fmt.Sprintf("%s.p%d", d.Group(), partition)
}

// transactional is the exactly-once delivery. What it needs from Kafka besides the
// records is in three fields, so that a test can stand in for the broker.
type transactional struct {
	w *Worker
	// producer makes a partition's transactional producer, fencing every earlier one.
	producer func(partition int32) (sarama.SyncProducer, error)
	// committed reads the group's stable committed offset of a partition, until ctx ends.
	committed func(ctx context.Context, partition int32) (int64, error)
	// fenceWait is how long a fenced claim waits to hear that it lost its partition
	// before it takes the transactional id back: two heartbeats of the group.
	fenceWait time.Duration
	linger    time.Duration // txnReplayLinger for a replay, 0 for a live deployment
}

func newTransactional(w *Worker) *transactional {
	kc, d := w.cfg.Kafka, w.cfg.Deployment
	var linger time.Duration
	if d.Policy == wire.PolicyReplay {
		linger = txnReplayLinger
	}
	return &transactional{w: w,
		producer: func(p int32) (sarama.SyncProducer, error) { return kc.TransactionalProducer(TransactionalID(d, p)) },
		committed: func(ctx context.Context, p int32) (int64, error) {
			return kc.StableCommit(ctx, d.Group(), w.cfg.Stream.Topic, p)
		},
		fenceWait: 2 * kc.Config().Consumer.Group.Heartbeat.Interval, linger: linger,
	}
}

// txnClaim writes one claimed partition's results in transactions. It is made by claim
// and released by ConsumeClaim; its goroutine commits what the sequencer hands it, in
// order.
type txnClaim struct {
	tx        *transactional
	partition int32
	producer  sarama.SyncProducer
	// committed is the group's offset when the producer was made (after fencing): the
	// records below it were committed by the previous owner's last transaction.
	committed int64
	items     sync.WaitGroup // taken and not yet finished
	// queue holds the items the sequencer handed over, in offset order. Adding never
	// waits: a partition whose transactions keep failing must not hold up the sequencer,
	// or the other partitions (and a revoked claim, and so the rebalance that would end
	// the trouble) wait behind it. Its bytes are bounded where records are taken (the
	// worker's budget, budget.go): a claim waits there for room. An item keeps its
	// result, not its frame.
	mu     sync.Mutex
	queue  []*flow.Item
	since  time.Time    // when the queue's first item was added
	ahead  atomic.Int64 // taken and not yet handed over: in the pipeline
	closed bool
	wake   chan struct{} // a token when the queue gets an item or is closed
	done   chan struct{}
	// ctx ends with the claim (revoked, session ended, or released): what is in flight
	// then gets one attempt at its transaction, no retries.
	ctx    context.Context
	lose   context.CancelFunc
	broken bool // a transaction was given up: nothing more is committed for this claim
	// The cameras' seqs (dedup.go): seen is the sequencer's (what it took), seqs the
	// committing goroutine's (what the last transaction left), under seqsKey.
	seqsKey    string
	seen, seqs cameraSeqs
}

// claim makes the partition's producer (fencing the previous owner) and reads where the
// previous owner's transactions left the partition, retrying until ctx (the claim's) ends.
func (tx *transactional) claim(ctx context.Context, _ sarama.ConsumerGroupSession, partition int32) (claim, error) {
	t := &txnClaim{tx: tx, partition: partition, wake: make(chan struct{}, 1), done: make(chan struct{}),
		seqsKey: seqsKey(partition, tx.w.cfg.Stream.Partitions), seen: cameraSeqs{}, seqs: cameraSeqs{}}
	t.ctx, t.lose = context.WithCancel(ctx)
	wait := tx.w.cfg.RetryBackoff
	for {
		err := t.connect()
		if err == nil {
			break
		}
		tx.w.log.Warn("cannot start the partition's transactions; retrying", "partition", partition, "err", err)
		select {
		case <-ctx.Done():
			t.lose()
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
	go t.run()
	return t, nil
}

// submit queues an item for its partition's next transaction; it never blocks. A frame
// that repeats its camera's seq is skipped (dedup.go).
func (tx *transactional) submit(it *flow.Item) {
	t := it.Meta.(*txnClaim)
	if t.seen.repeat(it) {
		tx.w.skipRepeat(it)
	}
	t.add(it)
}

func (tx *transactional) close() {} // each claim closed its producer when it was released

// connect makes the producer and reads the partition's committed offset.
func (t *txnClaim) connect() error {
	if t.producer != nil {
		_ = t.producer.Close()
		t.producer = nil
	}
	p, err := t.tx.producer(t.partition)
	if err != nil {
		return err
	}
	off, err := t.tx.committed(t.ctx, t.partition)
	if err != nil {
		_ = p.Close()
		return err
	}
	t.producer, t.committed = p, off
	return nil
}

func (t *txnClaim) from() int64 { return t.committed }

// state takes the partition's state records, read before any record is taken: its
// cameras' seqs, written by the previous owner's last transaction.
func (t *txnClaim) state(states map[string][]byte) {
	t.seen, t.seqs = parseSeqs(states[t.seqsKey]), parseSeqs(states[t.seqsKey])
	delete(states, t.seqsKey) // not a camera's checkpoint
}

func (t *txnClaim) take(it *flow.Item) {
	t.items.Add(1)
	t.ahead.Add(1)
	it.Meta = t
}

// abandon releases an item: nothing is committed without a transaction.
func (t *txnClaim) abandon(it *flow.Item) {
	t.ahead.Add(-1)
	t.drop(it)
}

// drop ends an item without a result: the partition's next owner redoes it.
func (t *txnClaim) drop(it *flow.Item) {
	t.tx.w.budget.free(it)
	t.items.Done()
}

// release says the claim ended (no more retries), waits until every item was handed
// over and finished, then ends the goroutine and closes the producer.
func (t *txnClaim) release() {
	t.lose()
	t.items.Wait()
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.signal()
	<-t.done
	if t.producer != nil {
		_ = t.producer.Close()
	}
}

func (t *txnClaim) isLost() bool { return t.ctx.Err() != nil }

// add queues an item for the partition's next transaction; it never blocks.
func (t *txnClaim) add(it *flow.Item) {
	it.Value = nil // inferred: only the result is written
	t.mu.Lock()
	if len(t.queue) == 0 {
		t.since = time.Now()
	}
	t.queue = append(t.queue, it)
	t.mu.Unlock()
	t.ahead.Add(-1)
	t.signal()
}

func (t *txnClaim) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// finish is the end of an item whose result (if it has one) is committed.
func (t *txnClaim) finish(it *flow.Item) {
	if !it.Skip {
		t.tx.w.delivered(it)
	}
	t.tx.w.budget.free(it)
	t.items.Done()
}

// run commits what is queued, as many items at once as wait (up to maxTxnItems), until
// the queue is closed and empty. While the claim has frames in the pipeline, the queue
// waits for them up to the linger since its first item.
func (t *txnClaim) run() {
	defer close(t.done)
	for {
		t.mu.Lock()
		n := min(len(t.queue), maxTxnItems)
		closed := t.closed
		linger := t.tx.linger - time.Since(t.since)
		if n > 0 && n < maxTxnItems && linger > 0 && t.ahead.Load() > 0 && !closed && !t.isLost() {
			t.mu.Unlock()
			select {
			case <-t.wake:
			case <-t.ctx.Done():
			case <-time.After(linger):
			}
			continue
		}
		items := t.queue[:n:n]
		t.queue = t.queue[n:]
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
func (t *txnClaim) commit(items []*flow.Item) {
	w := t.tx.w
	var todo []*flow.Item
	for _, it := range items {
		if it.GivenUp {
			t.broken = true
		}
		if t.broken {
			t.drop(it)
			continue
		}
		todo = append(todo, it)
	}
	wait := w.cfg.RetryBackoff
	for {
		// What the partition's committed offset covers is done. It moves only when this
		// claim takes its transactional id back (connect): a failed commit may have landed
		// after all (its answer was lost), or the owner that fenced it committed further.
		for len(todo) > 0 && todo[0].Offset < t.committed {
			if s := t.seqs.after(todo[:1]); s != nil {
				t.seqs = s
			}
			t.finish(todo[0])
			todo = todo[1:]
		}
		if len(todo) == 0 {
			return
		}
		seqs := t.seqs.after(todo)
		err := t.transact(todo, seqs)
		if err == nil {
			if seqs != nil {
				t.seqs = seqs
			}
			for _, it := range todo {
				t.finish(it)
			}
			key := w.cfg.Deployment.Key()
			metrics.Transactions.WithLabelValues(key, "committed").Inc()
			metrics.TransactionFrames.WithLabelValues(key).Observe(float64(len(todo)))
			return
		}
		if t.isLost() {
			w.log.Warn("transaction not committed; the partition's next owner redoes its frames",
				"partition", t.partition, "frames", len(todo), "err", err)
			t.broken = true
			for _, it := range todo {
				t.drop(it)
			}
			metrics.Transactions.WithLabelValues(w.cfg.Deployment.Key(), "abandoned").Inc()
			return
		}
		metrics.Transactions.WithLabelValues(w.cfg.Deployment.Key(), "retried").Inc()
		w.log.Warn("transaction failed; retrying", "partition", t.partition, "frames", len(todo), "err", err)
		select { // a partition revoked meanwhile gets no retry
		case <-t.ctx.Done():
			continue
		case <-time.After(wait):
		}
		wait = min(2*wait, maxTxnBackoff)
		if t.producer != nil && t.producer.TxnStatus()&sarama.ProducerTxnFlagFatalError == 0 {
			continue
		}
		// A fatal error (fenced, or the transaction timed out) needs a new producer, as does
		// a claim whose last try at one failed. A runner that lost the partition hears it
		// from the group within a heartbeat or two: wait for that before taking it back.
		if fenced(err) {
			select {
			case <-t.ctx.Done():
				continue // released above on the next pass
			case <-time.After(t.tx.fenceWait):
			}
		}
		if err := t.connect(); err != nil {
			w.log.Warn("cannot restart the partition's transactions", "partition", t.partition, "err", err)
		}
	}
}

// errNoProducer is a transaction's error after the claim's last try at a producer failed.
var errNoProducer = errors.New("no transactional producer")

// transact runs one transaction: the items' records, the cameras' seqs when they moved
// (nil: they did not), then the partition's next offset.
func (t *txnClaim) transact(items []*flow.Item, seqs cameraSeqs) error {
	p := t.producer
	if p == nil {
		return errNoProducer
	}
	msgs, err := t.tx.w.txnRecords(items, t.seqsKey, seqs)
	if err != nil {
		return err
	}
	next := items[len(items)-1].Offset + 1
	if err := p.BeginTxn(); err != nil {
		return err
	}
	err = p.SendMessages(msgs)
	if err == nil {
		err = p.AddOffsetsToTxn(map[string][]*sarama.PartitionOffsetMetadata{
			t.tx.w.cfg.Stream.Topic: {{Partition: t.partition, Offset: next}}}, t.tx.w.cfg.Deployment.Group())
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
