package kafkaclient

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Client is a process's one long-lived connection to a Kafka cluster: the gateway's topic
// admin, lag and retained-offset queries, result history and frame reads, and the
// producers built on it (sarama's NewSyncProducerFromClient), all share it. It connects
// on first use and again after a failed connect, so a process starts (and reports
// itself unready) while Kafka is still down; once connected, sarama reconnects to
// brokers by itself.
type Client struct {
	brokers []string
	cfg     *sarama.Config

	mu     sync.Mutex
	client sarama.Client
	admin  sarama.ClusterAdmin
	// producers is a second connection, for producers only: sarama sends the requests of
	// one broker connection one after another, so a consumer's long-poll fetch (up to
	// Consumer.MaxWaitTime, 500 ms) would hold a produce request and its acknowledgement
	// behind it. Kafka's own clients keep producers and consumers apart the same way.
	producers sarama.Client
	closed    bool
}

// ErrClosed is returned by a Client after Close.
var ErrClosed = errors.New("kafka client closed")

// New returns a client of the cluster at brokers, named clientID in Kafka. It does not
// connect yet.
func New(brokers []string, clientID string) *Client {
	cfg := NewConfig(clientID)
	cfg.Net.DialTimeout = 5 * time.Second
	return NewWithConfig(brokers, cfg)
}

// NewWithConfig is New with a config of the caller's (e.g. a runner's, whose consumer
// group settings live in the client's config).
func NewWithConfig(brokers []string, cfg *sarama.Config) *Client {
	return &Client{brokers: brokers, cfg: cfg}
}

// Brokers returns the bootstrap addresses.
func (c *Client) Brokers() []string { return c.brokers }

// Sarama returns the connected sarama client, connecting first if needed. Callers must
// not close it.
func (c *Client) Sarama() (sarama.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.client != nil && !c.client.Closed() {
		return c.client, nil
	}
	cl, err := c.connect()
	if err != nil {
		return nil, err
	}
	ad, err := sarama.NewClusterAdminFromClient(cl)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	c.client, c.admin = cl, ad
	return cl, nil
}

// Admin returns the cluster admin on the shared client. Callers must not close it.
func (c *Client) Admin() (sarama.ClusterAdmin, error) {
	if _, err := c.Sarama(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.admin, nil
}

// producerClient returns the producers' connection, connecting first if needed.
func (c *Client) producerClient() (sarama.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.producers != nil && !c.producers.Closed() {
		return c.producers, nil
	}
	cl, err := c.connect()
	if err != nil {
		return nil, err
	}
	c.producers = cl
	return cl, nil
}

func (c *Client) connect() (sarama.Client, error) {
	cl, err := sarama.NewClient(c.brokers, c.cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka unreachable at %v: %w", c.brokers, err)
	}
	return cl, nil
}

// SyncProducer returns a new producer (acks=all, idempotent, as NewConfig sets) on the
// producers' connection. Closing it leaves the client open.
func (c *Client) SyncProducer() (sarama.SyncProducer, error) {
	cl, err := c.producerClient()
	if err != nil {
		return nil, err
	}
	return sarama.NewSyncProducerFromClient(cl)
}

// AsyncProducer returns a new asynchronous producer on the producers' connection.
// Closing it leaves the client open.
func (c *Client) AsyncProducer() (sarama.AsyncProducer, error) {
	cl, err := c.producerClient()
	if err != nil {
		return nil, err
	}
	return sarama.NewAsyncProducerFromClient(cl)
}

// Close closes the client; producers built on it must be closed first.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.producers != nil {
		c.producers.Close()
		c.producers = nil
	}
	if c.client == nil {
		return nil
	}
	// The admin was made from the client: closing it closes the client too.
	err := c.admin.Close()
	c.client, c.admin = nil, nil
	return err
}

// Ping asks the cluster for fresh metadata, giving up when ctx ends.
func (c *Client) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { // sarama's calls take no context; this one ends within its retries
		cl, err := c.Sarama()
		if err == nil {
			err = cl.RefreshMetadata()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("kafka did not answer: %w", ctx.Err())
	}
}

// Retained returns the earliest offset a partition still holds and its end offset: the
// last stable offset, below which every transaction is decided. Without an open
// transaction that is the high watermark; with one, a read_committed reader (every
// component's) gets nothing past it until the transaction ends.
func (c *Client) Retained(topic string, partition int32) (start, end int64, err error) {
	cl, err := c.Sarama()
	if err != nil {
		return 0, 0, err
	}
	if end, err = lastStable(cl, topic, partition); err != nil {
		return 0, 0, err
	}
	if start, err = cl.GetOffset(topic, partition, sarama.OffsetOldest); err != nil {
		return 0, 0, err
	}
	return start, end, nil
}

// lastStable asks the partition's leader for its last stable offset (sarama's GetOffset
// asks read_uncommitted and gets the high watermark), retrying as listOffsets does.
func lastStable(cl sarama.Client, topic string, partition int32) (int64, error) {
	offs, err := listOffsets(cl, topic, []int32{partition}, sarama.OffsetNewest, sarama.ReadCommitted)
	return offs[partition], err
}

// StoredRecords counts the records a topic holds now.
func (c *Client) StoredRecords(topic string) (int64, error) {
	start, end, err := c.Offsets(topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for p, s := range start {
		n += end[p] - s
	}
	return n, nil
}

// PartitionLag is a consumer group's lag on each partition of topic: the end offset
// minus the next offset the group will read (see Committed). Lag is never negative (a
// commit can run ahead of a stale end offset read).
func (c *Client) PartitionLag(group, topic string) (map[int32]int64, error) {
	start, end, err := c.Offsets(topic)
	if err != nil {
		return nil, err
	}
	next, err := c.next(group, topic, start)
	if err != nil {
		return nil, err
	}
	lag := make(map[int32]int64, len(end))
	for p, e := range end {
		lag[p] = max(0, e-next[p])
	}
	return lag, nil
}

// Lag is a consumer group's total lag on topic (see PartitionLag).
func (c *Client) Lag(group, topic string) (int64, error) {
	parts, err := c.PartitionLag(group, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range parts {
		n += l
	}
	return n, nil
}

// ErrNoRecord is returned by ReadRecord for an offset the partition does not hold.
var ErrNoRecord = errors.New("no such record")

// ReadRecord reads the record at offset of a partition.
func (c *Client) ReadRecord(ctx context.Context, topic string, partition int32, offset int64) (*sarama.ConsumerMessage, error) {
	var rec *sarama.ConsumerMessage
	err := c.readRange(ctx, topic, partition, offset, offset+1, func(m *sarama.ConsumerMessage) error {
		rec = m
		return nil
	})
	if errors.Is(err, sarama.ErrOffsetOutOfRange) || errors.Is(err, sarama.ErrUnknownTopicOrPartition) || err == nil && rec == nil {
		return nil, fmt.Errorf("%w: partition %d offset %d of %s (expired, never written, or no committed record)", ErrNoRecord, partition, offset, topic)
	}
	return rec, err
}

// LastResults reads up to n of the newest result records of topic, oldest first by
// their JSON capture_time. Transaction markers and aborted results take offsets too, so
// it reads each partition further back until it has n results or reaches the start.
func (c *Client) LastResults(ctx context.Context, topic string, n int) ([][]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	cl, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	parts, err := cl.Partitions(topic)
	if err != nil {
		return nil, err
	}
	type rec struct {
		at time.Time
		b  []byte
	}
	var recs []rec
	for _, p := range parts {
		start, end, err := c.Retained(topic, p)
		if err != nil {
			return nil, err
		}
		var got []rec
		for k, to := int64(n), end; len(got) < n && to > start; k *= 2 {
			from, older := max(start, end-k), []rec(nil)
			err = c.readRange(ctx, topic, p, from, to, func(m *sarama.ConsumerMessage) error {
				var res struct {
					CaptureTime time.Time `json:"capture_time"`
				}
				_ = json.Unmarshal(m.Value, &res)
				older = append(older, rec{res.CaptureTime, m.Value})
				return nil
			})
			if err != nil {
				return nil, err
			}
			got, to = append(older, got...), from
		}
		recs = append(recs, got...)
	}
	slices.SortStableFunc(recs, func(a, b rec) int { return cmp.Compare(a.at.UnixNano(), b.at.UnixNano()) })
	if len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.b
	}
	return out, nil
}

// TopicSpec is a topic to create.
type TopicSpec struct {
	Name        string
	Partitions  int32
	Replication int16
	Config      map[string]*string
}

// CreateTopics creates every topic, or none: when one fails, those created are deleted
// again and the error names the one that failed.
func (c *Client) CreateTopics(topics []TopicSpec) error {
	admin, err := c.Admin()
	if err != nil {
		return err
	}
	var created []string
	for _, t := range topics {
		err := admin.CreateTopic(t.Name, &sarama.TopicDetail{NumPartitions: t.Partitions, ReplicationFactor: t.Replication, ConfigEntries: t.Config}, false)
		if err != nil {
			err = fmt.Errorf("creating topic %s: %w", t.Name, err)
			if derr := c.DeleteTopics(created...); derr != nil {
				err = fmt.Errorf("%w (and removing what was created: %v)", err, derr)
			}
			return err
		}
		created = append(created, t.Name)
	}
	return nil
}

// DeleteTopics deletes topics; one that does not exist is not an error.
func (c *Client) DeleteTopics(names ...string) error {
	admin, err := c.Admin()
	if err != nil {
		return err
	}
	for _, t := range names {
		if err := admin.DeleteTopic(t); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return fmt.Errorf("deleting topic %s: %w", t, err)
		}
	}
	return nil
}

// BrokerCount is how many brokers the cluster has.
func (c *Client) BrokerCount() (int, error) {
	admin, err := c.Admin()
	if err != nil {
		return 0, err
	}
	brokers, _, err := admin.DescribeCluster()
	return len(brokers), err
}

// StartGroupAtEnd commits a consumer group's offsets at topic's end offsets, for the
// partitions where the group has no commit yet: a new live deployment then starts with
// the frames that arrive from now on.
func (c *Client) StartGroupAtEnd(group, topic string) error {
	_, end, err := c.Offsets(topic)
	if err != nil {
		return err
	}
	return c.startGroup(group, topic, end)
}

// StartGroupAt commits a consumer group's offsets, where it has no commit yet, at the
// first record of each partition stored at or after t (the end where there is none): a
// replay from a point in time.
func (c *Client) StartGroupAt(group, topic string, t time.Time) error {
	at, err := c.OffsetsAt(topic, t)
	if err != nil {
		return err
	}
	return c.startGroup(group, topic, at)
}

// startGroup commits offsets as the group's on every partition it has no commit on.
func (c *Client) startGroup(group, topic string, offsets map[int32]int64) error {
	committed, err := c.commits(group, topic, offsets)
	if err != nil {
		return err
	}
	for p := range committed {
		delete(offsets, p)
	}
	return c.commitOffsets(group, topic, offsets)
}

// commits returns the group's committed offsets on those of parts' partitions where it
// has one.
func (c *Client) commits(group, topic string, parts map[int32]int64) (map[int32]int64, error) {
	admin, err := c.Admin()
	if err != nil {
		return nil, err
	}
	ps := make([]int32, 0, len(parts))
	for p := range parts {
		ps = append(ps, p)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, p := range ps {
		if b := resp.GetBlock(topic, p); b != nil && b.Offset >= 0 {
			out[p] = b.Offset
		}
	}
	return out, nil
}

// next is the next offset the group reads on each partition: its commit, not before the
// earliest retained offset (start), or start where it has none (not 0: retention may
// have deleted the beginning).
func (c *Client) next(group, topic string, start map[int32]int64) (map[int32]int64, error) {
	committed, err := c.commits(group, topic, start)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(start))
	for p, s := range start {
		out[p] = s
		if off, ok := committed[p]; ok {
			out[p] = max(off, s)
		}
	}
	return out, nil
}

// commitOffsets commits a group's offsets on topic straight to its coordinator, as a
// group with no members may be committed for (sarama's offset manager would wait for a
// flush that a partition without records never needs, and hang).
func (c *Client) commitOffsets(group, topic string, offsets map[int32]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	cl, err := c.Sarama()
	if err != nil {
		return err
	}
	coordinator, err := cl.Coordinator(group)
	if err != nil {
		return fmt.Errorf("the coordinator of group %s: %w", group, err)
	}
	req := sarama.NewOffsetCommitRequest(c.cfg, group)
	for p, off := range offsets {
		req.AddBlock(topic, p, off, 0, "")
	}
	resp, err := coordinator.CommitOffset(req)
	if err != nil {
		return fmt.Errorf("committing group %s: %w", group, err)
	}
	for _, parts := range resp.Errors {
		for p, kerr := range parts {
			if kerr != sarama.ErrNoError {
				return fmt.Errorf("committing group %s on %s/%d: %w", group, topic, p, kerr)
			}
		}
	}
	return nil
}
