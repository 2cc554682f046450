package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Window is the span of records a topic still holds.
type Window struct {
	// First and Last are the timestamps of the earliest and the latest retained record
	// (over every partition); zero when the topic holds none.
	First, Last time.Time
	// Start and End are each partition's earliest retained offset and end offset.
	Start, End map[int32]int64
}

// Empty reports whether the topic holds no record.
func (w Window) Empty() bool { return w.First.IsZero() }

// RetentionWindow reads the time span a topic still holds: the timestamps of its first
// and last retained records (a stream's frames carry their ingest time there).
func (c *Client) RetentionWindow(ctx context.Context, topic string) (Window, error) {
	start, end, err := c.Offsets(topic)
	if err != nil {
		return Window{}, err
	}
	w := Window{Start: start, End: end}
	for p, s := range start {
		e := end[p]
		if e <= s {
			continue
		}
		first, err := c.ReadRecord(ctx, topic, p, s)
		if errors.Is(err, ErrNoRecord) { // deleted by retention between the two reads
			continue
		}
		if err != nil {
			return w, err
		}
		last, err := c.ReadRecord(ctx, topic, p, e-1)
		if err != nil {
			return w, err
		}
		if w.First.IsZero() || first.Timestamp.Before(w.First) {
			w.First = first.Timestamp
		}
		if last.Timestamp.After(w.Last) {
			w.Last = last.Timestamp
		}
	}
	return w, nil
}

// Offsets returns each partition's earliest retained offset and end offset (the last
// stable offset: see Retained).
func (c *Client) Offsets(topic string) (start, end map[int32]int64, err error) {
	cl, err := c.Sarama()
	if err != nil {
		return nil, nil, err
	}
	parts, err := cl.Partitions(topic)
	if err != nil {
		return nil, nil, err
	}
	// One ListOffsets request per leader for every partition's end, then one for every
	// start: the scaler asks twice a second, and a request per partition and offset cost
	// the broker eight requests per call on a 4-partition stream.
	if end, err = listOffsets(cl, topic, parts, sarama.OffsetNewest, sarama.ReadCommitted); err != nil {
		return nil, nil, err
	}
	if start, err = listOffsets(cl, topic, parts, sarama.OffsetOldest, sarama.ReadUncommitted); err != nil {
		return nil, nil, err
	}
	return start, end, nil
}

// listOffsets asks each leader of topic's parts, in one request per leader, for the
// offset at (sarama.OffsetNewest: the end, which with ReadCommitted is the last stable
// offset; sarama.OffsetOldest: the earliest retained). Like sarama's GetOffset, it
// refreshes the metadata and asks again when a leader it knew is gone (a broker lost).
func listOffsets(cl sarama.Client, topic string, parts []int32, at int64, isolation sarama.IsolationLevel) (out map[int32]int64, err error) {
	for attempt := 0; ; attempt++ {
		if out, err = listOffsetsOnce(cl, topic, parts, at, isolation); err == nil || attempt == cl.Config().Metadata.Retry.Max {
			return out, err
		}
		time.Sleep(cl.Config().Metadata.Retry.Backoff)
		_ = cl.RefreshMetadata(topic)
	}
}

func listOffsetsOnce(cl sarama.Client, topic string, parts []int32, at int64, isolation sarama.IsolationLevel) (map[int32]int64, error) {
	byLeader := map[int32][]int32{}
	leaders := map[int32]*sarama.Broker{}
	for _, p := range parts {
		leader, err := cl.Leader(topic, p)
		if err != nil {
			return nil, err
		}
		byLeader[leader.ID()] = append(byLeader[leader.ID()], p)
		leaders[leader.ID()] = leader
	}
	what := "start offset"
	if at == sarama.OffsetNewest {
		what = "end offset"
	}
	out := make(map[int32]int64, len(parts))
	for id, ps := range byLeader {
		req := sarama.NewOffsetRequest(cl.Config().Version)
		req.IsolationLevel = isolation
		for _, p := range ps {
			req.AddBlock(topic, p, at, 1)
		}
		resp, err := leaders[id].GetAvailableOffsets(req)
		if err != nil {
			return nil, fmt.Errorf("the %s of %s %v: %w", what, topic, ps, err)
		}
		for _, p := range ps {
			block := resp.GetBlock(topic, p)
			if block == nil {
				return nil, fmt.Errorf("the %s of %s/%d: %w", what, topic, p, sarama.ErrIncompleteResponse)
			}
			if !errors.Is(block.Err, sarama.ErrNoError) {
				return nil, fmt.Errorf("the %s of %s/%d: %w", what, topic, p, block.Err)
			}
			out[p] = block.Offset
		}
	}
	return out, nil
}

// OffsetsAt returns, for each partition, the offset of the first record stored at or after
// t (offset-for-time), or the end offset (see Retained) where there is none.
func (c *Client) OffsetsAt(topic string, t time.Time) (map[int32]int64, error) {
	cl, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	parts, err := cl.Partitions(topic)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		off, err := cl.GetOffset(topic, p, t.UnixMilli())
		if err != nil {
			return nil, err
		}
		if off < 0 {
			if off, err = lastStable(cl, topic, p); err != nil {
				return nil, err
			}
		}
		out[p] = off
	}
	return out, nil
}

// Committed returns the next offset a consumer group reads on each partition of topic:
// its commit, or the earliest retained offset where it has none (as PartitionLag counts).
func (c *Client) Committed(group, topic string) (map[int32]int64, error) {
	start, _, err := c.Offsets(topic)
	if err != nil {
		return nil, err
	}
	return c.next(group, topic, start)
}

// CommitGroupAt commits a consumer group's offsets on topic at exactly offsets (a new
// group: a shadow or a replay starts where its window does).
func (c *Client) CommitGroupAt(group, topic string, offsets map[int32]int64) error {
	return c.commitOffsets(group, topic, offsets)
}

// DeleteGroup deletes a consumer group and its offsets; one that does not exist is not an
// error. A group with members still connected cannot be deleted (sarama.ErrNonEmptyGroup).
func (c *Client) DeleteGroup(group string) error {
	admin, err := c.Admin()
	if err != nil {
		return err
	}
	err = admin.DeleteConsumerGroup(group)
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting consumer group %s: %w", group, err)
	}
	return nil
}

// GroupExists reports whether Kafka knows a consumer group.
func (c *Client) GroupExists(group string) (bool, error) {
	admin, err := c.Admin()
	if err != nil {
		return false, err
	}
	groups, err := admin.ListConsumerGroups()
	if err != nil {
		return false, err
	}
	_, ok := groups[group]
	return ok, nil
}

// TopicExists reports whether a topic exists.
func (c *Client) TopicExists(topic string) (bool, error) {
	admin, err := c.Admin()
	if err != nil {
		return false, err
	}
	topics, err := admin.ListTopics()
	if err != nil {
		return false, err
	}
	_, ok := topics[topic]
	return ok, nil
}

// ErrTooManyRecords is returned by ReadTopic when a topic holds more records than asked.
var ErrTooManyRecords = errors.New("too many records")

// ReadTopic calls fn with every record topic holds now (from each partition's earliest
// retained offset to its end offset when the call starts), partition by partition. It
// stops with ErrTooManyRecords beyond limit records (limit ≤ 0: no limit).
func (c *Client) ReadTopic(ctx context.Context, topic string, limit int64, fn func(*sarama.ConsumerMessage) error) error {
	start, end, err := c.Offsets(topic)
	if err != nil {
		return err
	}
	var total int64
	for p, s := range start {
		total += end[p] - s
	}
	if limit > 0 && total > limit {
		return fmt.Errorf("%w: %s holds %d records, more than the %d read at once", ErrTooManyRecords, topic, total, limit)
	}
	for p, s := range start {
		if err := c.readRange(ctx, topic, p, s, end[p], fn); err != nil {
			return err
		}
	}
	return nil
}
