package kafkaclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// The walk over one fetch response's batches, without a broker: aborted transactions of
// one producer among another's committed ones and plain records, a new transaction of
// the aborting producer after its ABORT marker, an aborted transaction that begins after
// a batch, the range's edges, and a batch the fetch size cut short.
func TestReadBatches(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := func(delta int64, v string) *sarama.Record {
		return &sarama.Record{OffsetDelta: delta, TimestampDelta: time.Duration(delta) * time.Second, Value: []byte(v)}
	}
	data := func(first int64, pid int64, txn bool, vals ...string) *sarama.RecordBatch {
		b := &sarama.RecordBatch{FirstOffset: first, LastOffsetDelta: int32(len(vals) - 1), FirstTimestamp: t0,
			ProducerID: pid, IsTransactional: txn}
		for i, v := range vals {
			b.Records = append(b.Records, rec(int64(i), v))
		}
		return b
	}
	marker := func(off, pid int64, typ byte) *sarama.RecordBatch {
		return &sarama.RecordBatch{FirstOffset: off, ProducerID: pid, IsTransactional: true, Control: true,
			Records: []*sarama.Record{{Key: []byte{0, 0, 0, typ}, Value: []byte{0, 0, 0, 0, 0, 0}}}}
	}
	const abort, commit = 0, 1
	batches := []*sarama.RecordBatch{
		data(0, -1, false, "plain0", "plain1"), // 0-1
		data(2, 7, true, "aborted2", "aborted3"),
		data(4, 8, true, "committed4"),
		marker(5, 7, abort),
		data(6, 7, true, "committed6"), // producer 7's next transaction
		marker(7, 8, commit),
		marker(8, 7, commit),
		data(9, 9, true, "committed9"), // producer 9's transaction aborted from 10 on
		data(10, 9, true, "aborted10"),
		data(11, -1, false, "plain11", "plain12"), // 11-12
	}
	aborted := []*sarama.AbortedTransaction{{ProducerID: 9, FirstOffset: 10}, {ProducerID: 7, FirstOffset: 2}}
	read := func(batches []*sarama.RecordBatch, from, end int64) (int64, []string) {
		var got []string
		next, err := readBatches("t", 3, batches, aborted, from, end, func(m *sarama.ConsumerMessage) error {
			if m.Topic != "t" || m.Partition != 3 {
				t.Errorf("record at %d names %s/%d", m.Offset, m.Topic, m.Partition)
			}
			got = append(got, fmt.Sprintf("%d:%s", m.Offset, m.Value))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return next, got
	}
	next, got := read(batches, 0, 100)
	want := []string{"0:plain0", "1:plain1", "4:committed4", "6:committed6", "9:committed9", "11:plain11", "12:plain12"}
	if next != 13 || !slices.Equal(got, want) {
		t.Fatalf("read %v, next %d; want %v, next 13", got, next, want)
	}
	// A fetch returns whole batches: records below from and at or past end are not read.
	if next, got = read(batches, 1, 12); next != 13 || !slices.Equal(got, want[1:6]) {
		t.Fatalf("read [1, 12): %v, next %d; want %v, next 13", got, next, want[1:6])
	}

	// A batch cut short: the walk stops at its start, past the batches before it (or
	// where it was, when the cut batch is the first).
	cut := &sarama.RecordBatch{FirstOffset: 20, PartialTrailingRecord: true}
	if next, got = read([]*sarama.RecordBatch{cut}, 14, 100); next != 20 || len(got) != 0 {
		t.Fatalf("a cut batch at 20 read from 14: %v, next %d; want nothing, next 20", got, next)
	}
	if next, _ = read([]*sarama.RecordBatch{cut}, 20, 100); next != 20 {
		t.Fatalf("a cut batch at the start: next %d, want 20 (no progress)", next)
	}

	// Timestamps: the batch's first plus the record's delta, or the broker's append time.
	var ts []time.Time
	lat := data(30, -1, false, "a", "b")
	lat.LogAppendTime, lat.MaxTimestamp = true, t0.Add(time.Hour)
	stop := errors.New("stop")
	_, err := readBatches("t", 3, []*sarama.RecordBatch{data(28, -1, false, "x", "y"), lat}, nil, 0, 100, func(m *sarama.ConsumerMessage) error {
		ts = append(ts, m.Timestamp)
		if len(ts) == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || len(ts) != 3 {
		t.Fatalf("fn's error: %v after %d records, want stop after 3", err, len(ts))
	}
	if !ts[0].Equal(t0) || !ts[1].Equal(t0.Add(time.Second)) || !ts[2].Equal(t0.Add(time.Hour)) {
		t.Fatalf("timestamps %v", ts)
	}
}

// testKafka returns the test run's broker (see testkit.Kafka, which this package's own
// tests cannot import: testkit imports kafkaclient).
func testKafka(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("DIPLIP_TEST_KAFKA")
	if v == "" {
		t.Fatal("this test needs a real Kafka broker and DIPLIP_TEST_KAFKA is unset.\n" +
			"Run the tests with: go tool task test -- ./internal/kafkaclient/")
	}
	addrs, err := ParseBrokers(v)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// testTopic creates a one-partition topic named after the test (compacted, or not) and
// returns a client of the broker; both go when the test ends.
func testTopic(t *testing.T, compacted bool) (*Client, string) {
	t.Helper()
	addrs := testKafka(t)
	kc := New(addrs, "test-reader")
	name := fmt.Sprintf("t-%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
	var err error
	if compacted {
		err = kc.EnsureCompactedTopic(name, 1)
	} else {
		err = kc.CreateTopics([]TopicSpec{{Name: name, Partitions: 1, Replication: 1}})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := kc.DeleteTopics(name); err != nil {
			t.Logf("deleting %s: %v", name, err)
		}
		kc.Close()
	})
	return kc, name
}

// txnProducer returns a transactional producer, closed when the test ends.
func txnProducer(t *testing.T, kc *Client, id string) sarama.SyncProducer {
	t.Helper()
	cfg := NewConfig(id)
	cfg.Producer.Transaction.ID = fmt.Sprintf("%s-%d", id, time.Now().UnixNano())
	cfg.Producer.Idempotent, cfg.Net.MaxOpenRequests, cfg.Producer.RequiredAcks = true, 1, sarama.WaitForAll
	p, err := sarama.NewSyncProducer(kc.Brokers(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// send writes a record and returns its offset.
func send(t *testing.T, p sarama.SyncProducer, topic, key string, value []byte) int64 {
	t.Helper()
	m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key)}
	if value != nil {
		m.Value = sarama.ByteEncoder(value)
	}
	_, off, err := p.SendMessage(m)
	if err != nil {
		t.Fatalf("sending %s=%s: %v", key, value, err)
	}
	return off
}

// do runs fn's sends in one transaction of p and commits or aborts it.
func do(t *testing.T, p sarama.SyncProducer, commit bool, fn func()) {
	t.Helper()
	if err := p.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	fn()
	end := p.AbortTxn
	if commit {
		end = p.CommitTxn
	}
	if err := end(); err != nil {
		t.Fatal(err)
	}
}

// settle waits until no transaction of partition 0 is undecided (Kafka writes a commit's
// markers after CommitTxn returns: until then its records are past the last stable
// offset) and returns the end offset.
func settle(t *testing.T, kc *Client, topic string) int64 {
	t.Helper()
	cl, err := kc.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, end, err := kc.Retained(topic, 0)
		hw, herr := cl.GetOffset(topic, 0, sarama.OffsetNewest)
		if err == nil && herr == nil && end == hw {
			return end
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/0: end %d (%v), high watermark %d (%v) 10 s after the last transaction", topic, end, err, hw, herr)
		}
	}
}

// readAll reads [from, end) of partition 0, as offset:value, and fails when it takes 5 s
// or more (the old reader waited 10 s for offsets that hold no record).
func readAll(t *testing.T, kc *Client, topic string, from, end int64) []string {
	t.Helper()
	var got []string
	began := time.Now()
	err := kc.readRange(context.Background(), topic, 0, from, end, func(m *sarama.ConsumerMessage) error {
		got = append(got, fmt.Sprintf("%d:%s", m.Offset, m.Value))
		return nil
	})
	if err != nil {
		t.Fatalf("reading [%d, %d): %v", from, end, err)
	}
	if d := time.Since(began); d >= 5*time.Second {
		t.Fatalf("reading [%d, %d) took %v", from, end, d)
	}
	return got
}

// A partition with committed transactions, aborted ones (one producer aborting while
// another commits and a plain producer writes in between) and a trailing commit marker
// reads back as exactly its committed and plain records, at once.
func TestReadRangeTransactions(t *testing.T) {
	kc, topic := testTopic(t, false)
	t1, t2 := txnProducer(t, kc, "test-txn1"), txnProducer(t, kc, "test-txn2")
	plain, err := kc.SyncProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	var want []string
	put := func(p sarama.SyncProducer, v string, kept bool) {
		off := send(t, p, topic, "k", []byte(v))
		if kept {
			want = append(want, fmt.Sprintf("%d:%s", off, v))
		}
	}
	do(t, t1, true, func() { put(t1, "c1", true); put(t1, "c2", true) })
	put(plain, "p1", true)
	if err := t1.BeginTxn(); err != nil { // t1 aborts while t2 commits and plain writes
		t.Fatal(err)
	}
	put(t1, "a1", false)
	do(t, t2, true, func() { put(t2, "c3", true); put(plain, "p2", true); put(t1, "a2", false) })
	if err := t1.AbortTxn(); err != nil {
		t.Fatal(err)
	}
	do(t, t1, true, func() { put(t1, "c4", true) }) // the last offset is a commit marker

	end := settle(t, kc, topic)
	if got := readAll(t, kc, topic, 0, end); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	if got := readAll(t, kc, topic, 1, end-1); !slices.Equal(got, want[1:]) {
		t.Fatalf("read [1, end-1): %v, want %v", got, want[1:])
	}

	// A record by position: a committed one, a marker, past the end.
	ctx := context.Background()
	if m, err := kc.ReadRecord(ctx, topic, 0, 1); err != nil || string(m.Value) != "c2" {
		t.Fatalf("ReadRecord(1): %v, %v", m, err)
	}
	for _, off := range []int64{end - 1, end, end + 5} {
		if _, err := kc.ReadRecord(ctx, topic, 0, off); !errors.Is(err, ErrNoRecord) {
			t.Fatalf("ReadRecord(%d), end %d: %v, want ErrNoRecord", off, end, err)
		}
	}
}

// The end offset is the last stable one: at the first record of a transaction still open,
// past its marker once committed. A read up to the high watermark stops at the open
// transaction at once, without its records.
func TestRetainedEndsAtOpenTransaction(t *testing.T) {
	kc, topic := testTopic(t, false)
	p := txnProducer(t, kc, "test-open")
	do(t, p, true, func() { send(t, p, topic, "k", []byte("before")) })
	if err := p.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	open := send(t, p, topic, "k", []byte("open"))
	send(t, p, topic, "k", []byte("open2"))

	_, end, err := kc.Retained(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if end != open {
		t.Fatalf("end %d with a transaction open at %d: want the last stable offset %d", end, open, open)
	}
	cl, err := kc.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	hw, err := cl.GetOffset(topic, 0, sarama.OffsetNewest)
	if err != nil || hw != open+2 {
		t.Fatalf("high watermark %d (%v), want %d", hw, err, open+2)
	}
	if got := readAll(t, kc, topic, 0, hw); !slices.Equal(got, []string{"0:before"}) {
		t.Fatalf("read up to the high watermark: %v, want only 0:before", got)
	}

	if err := p.CommitTxn(); err != nil {
		t.Fatal(err)
	}
	if end = settle(t, kc, topic); end != open+3 {
		t.Fatalf("end %d after the commit, want %d (past the marker)", end, open+3)
	}
	if got := readAll(t, kc, topic, open, end); !slices.Equal(got, []string{fmt.Sprintf("%d:open", open), fmt.Sprintf("%d:open2", open+1)}) {
		t.Fatalf("read after the commit: %v", got)
	}
}

// Checkpoints written in transactions: the last committed value of each key, never one
// of an aborted transaction, a tombstone removing its key, and no error for the commit
// marker at the end.
func TestLatestByKeyTransactions(t *testing.T) {
	kc, topic := testTopic(t, true)
	p := txnProducer(t, kc, "test-latest")
	do(t, p, true, func() {
		send(t, p, topic, "k1", []byte("v1"))
		send(t, p, topic, "k2", []byte("v1"))
		send(t, p, topic, "k3", []byte("v1"))
	})
	do(t, p, false, func() {
		send(t, p, topic, "k1", []byte("aborted"))
		send(t, p, topic, "k4", []byte("aborted"))
	})
	do(t, p, true, func() {
		send(t, p, topic, "k2", []byte("v2"))
		send(t, p, topic, "k3", nil)
	})
	settle(t, kc, topic)
	began := time.Now()
	got, err := kc.LatestByKey(t.Context(), topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d >= 5*time.Second {
		t.Fatalf("LatestByKey took %v", d)
	}
	want := map[string]string{"k1": "v1", "k2": "v2"}
	if len(got) != len(want) {
		t.Fatalf("LatestByKey: %q, want %q", got, want)
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Fatalf("LatestByKey: %q, want %q", got, want)
		}
	}
}

// The newest results skip aborted ones and still number n, though markers and aborted
// records take offsets among them.
func TestLastResultsTransactions(t *testing.T) {
	kc, topic := testTopic(t, false)
	p := txnProducer(t, kc, "test-results")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	result := func(i int) []byte {
		b, _ := json.Marshal(map[string]any{"id": fmt.Sprint(i), "capture_time": base.Add(time.Duration(i) * time.Second)})
		return b
	}
	for i := range 6 {
		do(t, p, i != 4, func() { send(t, p, topic, "cam", result(i)) })
	}
	do(t, p, false, func() { send(t, p, topic, "cam", result(6)) })
	settle(t, kc, topic)
	ids := func(n int) []string {
		t.Helper()
		recs, err := kc.LastResults(context.Background(), topic, n)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range recs {
			var r struct{ ID string }
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r.ID)
		}
		return out
	}
	if got := ids(3); !slices.Equal(got, []string{"2", "3", "5"}) {
		t.Fatalf("the 3 newest results: %v, want 2 3 5", got)
	}
	if got := ids(100); !slices.Equal(got, []string{"0", "1", "2", "3", "5"}) {
		t.Fatalf("every result: %v, want 0 1 2 3 5", got)
	}
}

// A start that retention deleted (here DeleteRecords) is read from the earliest offset
// on; a range wholly deleted reads nothing, without error.
func TestReadRangeDeletedStart(t *testing.T) {
	kc, topic := testTopic(t, false)
	p, err := kc.SyncProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 5 {
		send(t, p, topic, "k", []byte(fmt.Sprint(i)))
	}
	admin, err := kc.Admin()
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteRecords(topic, map[int32]int64{0: 3}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, kc, topic, 0, 5); !slices.Equal(got, []string{"3:3", "4:4"}) {
		t.Fatalf("read [0, 5) with 0-2 deleted: %v", got)
	}
	if got := readAll(t, kc, topic, 0, 3); len(got) != 0 {
		t.Fatalf("read [0, 3) with 0-2 deleted: %v", got)
	}
}
