package kafkaclient

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/IBM/sarama"
)

// How long readRange keeps trying a partition whose leader moved or whose broker
// connection broke: fetchRetries tries fetchBackoff apart, a leader election's time.
const (
	fetchRetries = 6
	fetchBackoff = 500 * time.Millisecond
)

// ReadRange calls fn with each committed record of a partition at offsets in [from, end),
// in offset order, as readRange does: it is the transaction-aware partition reader for
// callers that keep their own positions (end from Offsets; a reader that stops early
// knows the offset of the last record fn took).
func (c *Client) ReadRange(ctx context.Context, topic string, partition int32, from, end int64, fn func(*sarama.ConsumerMessage) error) error {
	return c.readRange(ctx, topic, partition, from, end, fn)
}

// readRange calls fn with each committed record of a partition from offset from up to
// (not including) end, in offset order, and returns nil once it has read all of them.
//
// It sends its own fetches (isolation read_committed) to the partition leader instead of
// running sarama's PartitionConsumer: a consumer is never handed the offsets that hold no
// record for it (transaction markers, aborted transactions, batches the log cleaner
// emptied), so it cannot tell a range that is done from records still to come; each
// fetch response here says where the next fetch starts.
//
// It stops when the next offset to read reaches end; when a fetch finds nothing more at
// the partition's last stable offset (what is left below end belongs to a transaction
// still open); at fn's first error; or when ctx ends (ctx.Err()). A start that retention
// deleted is read from the partition's earliest offset on (nothing when that is end or
// later: what was read stands). A moved leader or a broken connection is retried for a
// few seconds.
func (c *Client) readRange(ctx context.Context, topic string, partition int32, from, end int64, fn func(*sarama.ConsumerMessage) error) error {
	if from >= end {
		return nil
	}
	cl, err := c.Sarama()
	if err != nil {
		return err
	}
	next, retries := from, 0
	for next < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		block, err := c.fetch(cl, topic, partition, next)
		if errors.Is(err, sarama.ErrOffsetOutOfRange) {
			start, serr := cl.GetOffset(topic, partition, sarama.OffsetOldest)
			if serr != nil || start <= next { // not a deleted start: the log was cut back
				return fmt.Errorf("reading %s/%d at offset %d: %w", topic, partition, next, err)
			}
			next = start
			continue
		}
		if err != nil && retriable(err) && retries < fetchRetries {
			retries++
			_ = cl.RefreshMetadata(topic) // the next fetch finds out whether it helped
			select {
			case <-time.After(fetchBackoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s/%d at offset %d: %w", topic, partition, next, err)
		}
		retries = 0
		batches := make([]*sarama.RecordBatch, 0, len(block.RecordsSet))
		for _, r := range block.RecordsSet {
			if r.RecordBatch == nil {
				return fmt.Errorf("reading %s/%d at offset %d: message format older than v2 (Kafka 0.11)", topic, partition, next)
			}
			batches = append(batches, r.RecordBatch)
		}
		if len(batches) == 0 {
			if block.LastStableOffset <= next {
				return nil
			}
			// Below the last stable offset, only batches the log cleaner emptied come back
			// empty (sarama drops them, offsets and all): this offset holds nothing.
			next++
			continue
		}
		n, err := readBatches(topic, partition, batches, block.AbortedTransactions, next, end, fn)
		if err != nil {
			return err
		}
		if n <= next {
			return fmt.Errorf("reading %s/%d: the fetch at offset %d returned no whole batch", topic, partition, next)
		}
		next = n
	}
	return nil
}

// fetch asks the partition's leader for the batches from offset on, as sarama's consumer
// would (its version for the configured Kafka version, which the broker may lower),
// committed data only, waiting at most 250 ms when there is none.
func (c *Client) fetch(cl sarama.Client, topic string, partition int32, offset int64) (*sarama.FetchResponseBlock, error) {
	leader, epoch, err := cl.LeaderAndEpoch(topic, partition)
	if err != nil {
		return nil, err
	}
	size := max(c.cfg.Consumer.Fetch.Default, 1<<20)
	req := &sarama.FetchRequest{Version: 4, MaxWaitTime: 250, MinBytes: 1, MaxBytes: size, Isolation: sarama.ReadCommitted}
	if c.cfg.Version.IsAtLeast(sarama.V2_7_0_0) {
		req.Version, req.SessionEpoch = 12, -1 // no fetch session (KIP-227)
	}
	req.AddBlock(topic, partition, offset, size, epoch)
	resp, err := leader.Fetch(req)
	if err != nil {
		return nil, err
	}
	block := resp.GetBlock(topic, partition)
	if block == nil {
		return nil, sarama.ErrIncompleteResponse
	}
	if !errors.Is(block.Err, sarama.ErrNoError) {
		return nil, block.Err
	}
	return block, nil
}

// retriable reports whether a fetch may succeed once metadata is fresh: the leader moved,
// or the error is not Kafka's (a broken connection).
func retriable(err error) bool {
	var kerr sarama.KError
	if !errors.As(err, &kerr) {
		return true
	}
	switch kerr {
	case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrUnknownLeaderEpoch, sarama.ErrFencedLeaderEpoch:
		return true
	}
	return false
}

// readBatches hands fn the records of one fetch response's batches (in offset order) at
// offsets in [from, end) that a read_committed consumer sees, and returns the offset after
// the last batch. It drops what Kafka's own consumer drops: control batches (an ABORT
// marker ends its producer's aborted transaction) and the transactional batches of a
// producer whose aborted transaction (from the response's list) began at or before the
// batch's last offset. A batch the fetch size cut short ends the walk at its start.
func readBatches(topic string, partition int32, batches []*sarama.RecordBatch, aborted []*sarama.AbortedTransaction, from, end int64, fn func(*sarama.ConsumerMessage) error) (int64, error) {
	aborted = slices.SortedFunc(slices.Values(aborted), func(a, b *sarama.AbortedTransaction) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	abortedPIDs := map[int64]bool{}
	next := from
	for _, b := range batches {
		if b.PartialTrailingRecord {
			return max(next, b.FirstOffset), nil
		}
		for len(aborted) > 0 && aborted[0].FirstOffset <= b.LastOffset() {
			abortedPIDs[aborted[0].ProducerID] = true
			aborted = aborted[1:]
		}
		next = max(next, b.LastOffset()+1)
		switch {
		case b.Control:
			if isAbortMarker(b) {
				delete(abortedPIDs, b.ProducerID)
			}
		case b.IsTransactional && abortedPIDs[b.ProducerID]:
		default:
			for _, r := range b.Records {
				off := b.FirstOffset + r.OffsetDelta
				if off < from || off >= end {
					continue
				}
				at := b.FirstTimestamp.Add(r.TimestampDelta)
				if b.LogAppendTime {
					at = b.MaxTimestamp
				}
				m := &sarama.ConsumerMessage{Topic: topic, Partition: partition, Offset: off,
					Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: at}
				if err := fn(m); err != nil {
					return next, err
				}
			}
		}
	}
	return next, nil
}

// isAbortMarker reports whether a control batch holds an ABORT marker: the key of its
// record is a version (int16) and a type (int16), 0 for ABORT and 1 for COMMIT.
func isAbortMarker(b *sarama.RecordBatch) bool {
	if len(b.Records) != 1 || len(b.Records[0].Key) < 4 {
		return false
	}
	return binary.BigEndian.Uint16(b.Records[0].Key[2:4]) == 0
}
