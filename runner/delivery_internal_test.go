package runner

// The deliveries without a broker: sarama's producers and group session are stood in
// for, so that the failures a broker gives only now and then can be given on cue.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

func testWorker(maxInFlight int) *Worker {
	st := wire.Stream{Name: "s", Topic: "frames", ResultsTopic: "results", Partitions: 1}
	d := wire.Deployment{Function: "det", Stream: "s", Digest: "r/fn@sha256:0123456789abcdef0123", Batch: 1}
	return &Worker{cfg: WorkerConfig{Deployment: d, Stream: st, MaxInFlight: maxInFlight, RetryBackoff: 10 * time.Millisecond},
		log: slog.Default(), budget: newBudget(DefaultMaxBytesInFlight)}
}

// encoded is an item as the pipeline hands it to a delivery: with its result encoded.
func encoded(offset int64) *flow.Item {
	return &flow.Item{Partition: 0, Offset: offset, Result: wire.Result{Camera: "cam", Seq: uint64(offset + 1),
		Status: wire.StatusOK}, Payload: []byte(`{"status":"ok"}`)}
}

// within fails the test unless f returns within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still waiting after %v", what, d)
	}
}

// fakeSession records the offsets marked.
type fakeSession struct {
	sarama.ConsumerGroupSession
	mu     sync.Mutex
	marked []int64
}

func (s *fakeSession) MarkOffset(_ string, _ int32, offset int64, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marked = append(s.marked, offset)
}

// fakeAsync is an async producer whose answers the test gives.
type fakeAsync struct {
	sarama.AsyncProducer
	input     chan *sarama.ProducerMessage
	successes chan *sarama.ProducerMessage
	errs      chan *sarama.ProducerError
}

func newFakeAsync() *fakeAsync {
	return &fakeAsync{input: make(chan *sarama.ProducerMessage, 16), successes: make(chan *sarama.ProducerMessage, 16),
		errs: make(chan *sarama.ProducerError, 16)}
}

func (p *fakeAsync) Input() chan<- *sarama.ProducerMessage     { return p.input }
func (p *fakeAsync) Successes() <-chan *sarama.ProducerMessage { return p.successes }
func (p *fakeAsync) Errors() <-chan *sarama.ProducerError      { return p.errs }
func (p *fakeAsync) AsyncClose()                               { close(p.input); close(p.successes); close(p.errs) }
func (p *fakeAsync) next(t *testing.T, what string) (m *sarama.ProducerMessage) {
	t.Helper()
	within(t, 5*time.Second, what, func() { m = <-p.input })
	return m
}

// A result Kafka refuses as too large is sent again as an error result. The answer that
// says so frees a place in flight that a frame waiting for one takes at once: the error
// result must not wait for another place in the goroutine that reads the answers (the
// only one that frees places), or nothing is acknowledged again.
func TestAtLeastOnceRefusedResultWithNoRoomInFlight(t *testing.T) {
	w := testWorker(1)
	fp := newFakeAsync()
	a := startAtLeastOnce(context.Background(), w, fp)
	sess := &fakeSession{}
	c, _ := a.claim(context.Background(), sess, 0)
	first, second := encoded(0), encoded(1)
	c.take(first)
	c.take(second)
	a.submit(first) // the one place in flight
	m := fp.next(t, "the first result")
	go a.submit(second) // waits for a place
	time.Sleep(50 * time.Millisecond)
	fp.errs <- &sarama.ProducerError{Msg: m, Err: sarama.ErrMessageSizeTooLarge}
	fp.successes <- fp.next(t, "the second result")
	fp.successes <- fp.next(t, "the first frame's error result, sent again")
	within(t, 5*time.Second, "the claim's release", c.release)
	if r := first.Result; r.Status != wire.StatusError || !strings.Contains(r.Error, "kafka refused the result") {
		t.Fatalf("refused result: %+v, want an error result that says why", r)
	}
	if !slices.Equal(sess.marked, []int64{1, 2}) {
		t.Fatalf("marked %v, want [1 2]", sess.marked)
	}
	within(t, 5*time.Second, "closing", a.close)
	if n := w.Stats.Frames.Load(); n != 2 {
		t.Fatalf("%d results delivered, want 2", n)
	}
}

// fakeTxn is a transactional producer; fail, when set, answers SendMessages.
type fakeTxn struct {
	sarama.SyncProducer
	mu      sync.Mutex
	name    string
	fail    func() error
	fatal   bool
	commits [][]int64 // offsets of each committed transaction's results
	sending []int64
	closed  bool
}

func (p *fakeTxn) BeginTxn() error { p.sending = nil; return nil }
func (p *fakeTxn) SendMessages(msgs []*sarama.ProducerMessage) error {
	if p.fail != nil {
		if err := p.fail(); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		if om := m.Metadata.(*outMsg); !om.state {
			p.sending = append(p.sending, om.it.Offset)
		}
	}
	return nil
}
func (p *fakeTxn) AddOffsetsToTxn(map[string][]*sarama.PartitionOffsetMetadata, string) error {
	return nil
}
func (p *fakeTxn) CommitTxn() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.commits = append(p.commits, p.sending)
	return nil
}
func (p *fakeTxn) AbortTxn() error { return nil }
func (p *fakeTxn) Close() error    { p.closed = true; return nil }
func (p *fakeTxn) TxnStatus() sarama.ProducerTxnStatusFlag {
	if p.fatal {
		return sarama.ProducerTxnFlagFatalError
	}
	return sarama.ProducerTxnFlagReady
}
func (p *fakeTxn) committed() [][]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.commits)
}

// txnWith is the transactional delivery of w over producers made by next (one call per
// producer), reading committed offsets from offset.
func txnWith(w *Worker, next func(n int) (sarama.SyncProducer, error), offset func() int64) *transactional {
	var n int
	return &transactional{w: w,
		producer:  func(int32) (sarama.SyncProducer, error) { n++; return next(n) },
		committed: func(context.Context, int32) (int64, error) { return offset(), nil },
		fenceWait: 10 * time.Millisecond,
	}
}

// After a fatal error (the transaction timed out) the claim needs a new producer; when
// making one fails, it tries again rather than beginning a transaction on no producer.
func TestTransactionalNewProducerFailsOnce(t *testing.T) {
	w := testWorker(0)
	first := &fakeTxn{name: "first"}
	first.fail = func() error { first.fatal = true; return errors.New("transaction timed out") }
	last := &fakeTxn{name: "last"}
	tx := txnWith(w, func(n int) (sarama.SyncProducer, error) {
		switch n {
		case 1:
			return first, nil
		case 2:
			return nil, errors.New("coordinator not available")
		}
		return last, nil
	}, func() int64 { return 0 })
	c, err := tx.claim(context.Background(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	it := encoded(0)
	c.take(it)
	tx.submit(it)
	within(t, 10*time.Second, "the frame's transaction", func() {
		for w.Stats.Frames.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	})
	within(t, 5*time.Second, "the claim's release", c.release)
	if got := last.committed(); !slices.EqualFunc(got, [][]int64{{0}}, slices.Equal) || !first.closed || !last.closed {
		t.Fatalf("committed %v by the last producer (first closed %v, last %v), want [[0]]", got, first.closed, last.closed)
	}
}

// A claim whose producer was fenced takes its transactional id back and reads what is
// committed meanwhile: every frame it holds below that offset is done already, not only
// those of the transaction that failed, or a later batch is written a second time.
func TestTransactionalRetakenIDSkipsEveryCommittedFrame(t *testing.T) {
	w := testWorker(0)
	sending, failNow := make(chan struct{}), make(chan struct{})
	first := &fakeTxn{name: "first"}
	first.fail = func() error {
		close(sending)
		<-failNow
		first.fatal = true
		return sarama.ErrProducerFenced
	}
	last := &fakeTxn{name: "last"}
	var mu sync.Mutex
	committed := int64(0)
	tx := txnWith(w, func(n int) (sarama.SyncProducer, error) {
		if n == 1 {
			return first, nil
		}
		return last, nil
	}, func() int64 { mu.Lock(); defer mu.Unlock(); return committed })
	c, err := tx.claim(context.Background(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var items []*flow.Item
	for i := range 6 {
		items = append(items, encoded(int64(i)))
		c.take(items[i])
	}
	tx.submit(items[0])
	tx.submit(items[1])
	<-sending // the first transaction (offsets 0, 1) is under way: the rest queue behind it
	for _, it := range items[2:] {
		tx.submit(it)
	}
	mu.Lock()
	committed = 4 // the partition's other owner committed offsets 0 to 3 meanwhile
	mu.Unlock()
	close(failNow)
	within(t, 10*time.Second, "every frame finished", func() {
		for w.Stats.Frames.Load() < int64(len(items)) {
			time.Sleep(5 * time.Millisecond)
		}
	})
	within(t, 5*time.Second, "the claim's release", c.release)
	if got := last.committed(); !slices.EqualFunc(got, [][]int64{{4, 5}}, slices.Equal) {
		t.Fatalf("the retaken id committed %v, want [[4 5]] (0 to 3 were committed before it)", got)
	}
}

// At-least-once sends a frame's tracker checkpoint only once its result is acknowledged:
// a runner killed in between must not leave the checkpoint without the result, or the
// partition's next owner takes the frame for one already tracked and its only result has
// no track ids.
func TestAtLeastOnceCheckpointFollowsItsResult(t *testing.T) {
	w := testWorker(4)
	fp := newFakeAsync()
	a := startAtLeastOnce(context.Background(), w, fp)
	sess := &fakeSession{}
	c, _ := a.claim(context.Background(), sess, 0)
	it := encoded(0)
	it.State = []byte(`{"v":1}`)
	c.take(it)
	a.submit(it)
	result := fp.next(t, "the result")
	if result.Metadata.(*outMsg).state {
		t.Fatal("the checkpoint was sent first")
	}
	select {
	case m := <-fp.input:
		t.Fatalf("%s sent before the result was acknowledged", m.Topic)
	case <-time.After(50 * time.Millisecond):
	}
	fp.successes <- result
	state := fp.next(t, "the checkpoint, after the result's acknowledgement")
	if !state.Metadata.(*outMsg).state {
		t.Fatalf("sent %s, want the checkpoint", state.Topic)
	}
	fp.successes <- state
	within(t, 5*time.Second, "the claim's release", c.release)
	if !slices.Equal(sess.marked, []int64{1}) {
		t.Fatalf("marked %v, want [1]", sess.marked)
	}
	within(t, 5*time.Second, "closing", a.close)
}

// While a claim has frames in the pipeline, its results wait for them (up to the linger)
// and go in one transaction; a claim with none ahead commits at once, whatever the linger.
func TestTransactionalLingersForFramesInThePipeline(t *testing.T) {
	w := testWorker(0)
	p := &fakeTxn{name: "only"}
	tx := txnWith(w, func(int) (sarama.SyncProducer, error) { return p, nil }, func() int64 { return 0 })
	tx.linger = time.Hour
	c, err := tx.claim(context.Background(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var items []*flow.Item
	for i := range 4 {
		items = append(items, encoded(int64(i)))
		c.take(items[i])
	}
	for _, it := range items {
		tx.submit(it)
	}
	within(t, 10*time.Second, "the backlog's transaction", func() {
		for w.Stats.Frames.Load() < 4 {
			time.Sleep(5 * time.Millisecond)
		}
	})
	last := encoded(4) // nothing ahead of it: not held for the linger
	c.take(last)
	tx.submit(last)
	within(t, 10*time.Second, "the last frame's transaction", func() {
		for w.Stats.Frames.Load() < 5 {
			time.Sleep(5 * time.Millisecond)
		}
	})
	within(t, 5*time.Second, "the claim's release", c.release)
	if got := p.committed(); !slices.EqualFunc(got, [][]int64{{0, 1, 2, 3}, {4}}, slices.Equal) {
		t.Fatalf("committed %v, want [[0 1 2 3] [4]]", got)
	}
}
