package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
)

// ErrNoTransactions is returned by CheckTransactions when the cluster cannot run Kafka
// transactions; its message says why and what to change.
var ErrNoTransactions = errors.New("the kafka cluster cannot run transactions")

// CheckTransactions reports whether the cluster can run transactions: Kafka creates its
// transaction log (__transaction_state) on the first transactional producer, with the
// brokers' transaction.state.log.replication.factor, and a cluster with fewer brokers than
// that never gets one: every producer would wait on "coordinator not available".
//
// The brokers counted are the cluster's, not the live ones: a broker that is down (the
// replica of some partition, not answering now) is still part of it, so an exactly-once
// deployment is not refused while one broker of three restarts.
func (c *Client) CheckTransactions() error {
	admin, err := c.Admin()
	if err != nil {
		return err
	}
	live, _, err := admin.DescribeCluster()
	if err != nil {
		return err
	}
	if len(live) == 0 {
		return fmt.Errorf("%w: the cluster reports no broker", ErrNoTransactions)
	}
	known := map[int32]bool{}
	for _, b := range live {
		known[b.ID()] = true
	}
	topics, err := admin.ListTopics()
	if err != nil {
		return err
	}
	for _, t := range topics {
		for _, replicas := range t.ReplicaAssignment {
			for _, id := range replicas {
				known[id] = true
			}
		}
	}
	brokers := len(known)
	const rfName, isrName = "transaction.state.log.replication.factor", "transaction.state.log.min.isr"
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.BrokerResource,
		Name: strconv.Itoa(int(live[0].ID())), ConfigNames: []string{rfName, isrName}})
	if err != nil {
		return err
	}
	for _, e := range entries {
		v, err := strconv.Atoi(e.Value)
		if err != nil || v <= brokers {
			continue
		}
		return fmt.Errorf("%w: it has %d broker(s) and %s is %d (set it to at most %d on every broker)",
			ErrNoTransactions, brokers, e.Name, v, brokers)
	}
	return nil
}

// Config returns the client's sarama config (read it, do not change it).
func (c *Client) Config() *sarama.Config { return c.cfg }

// TransactionTimeout is how long the transaction coordinator lets a transaction stay open
// before aborting it; a runner's transactions last one commit (milliseconds), so this
// bounds only a stalled producer's hold on read_committed readers.
const TransactionTimeout = 30 * time.Second

// TransactionalProducer returns a producer of its own (a connection of its own: sarama keeps
// one transactional id per client) with transactional id id. Making it fences every
// earlier producer with the same id: their open transaction is aborted and whatever
// they send afterwards is refused. The caller closes it.
func (c *Client) TransactionalProducer(id string) (sarama.SyncProducer, error) {
	cfg := *c.cfg // the shared settings (version, timeouts, limits), plus the transaction's
	cfg.ClientID = c.cfg.ClientID + "-txn"
	cfg.Producer.Transaction.ID = id
	cfg.Producer.Transaction.Timeout = TransactionTimeout
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Net.MaxOpenRequests = 1
	p, err := sarama.NewSyncProducer(c.brokers, &cfg)
	if err != nil {
		return nil, fmt.Errorf("transactional producer %s: %w", id, err)
	}
	return p, nil
}

// StableCommit returns a group's committed offset on a partition (-1 when it has none),
// waiting out transactions that are still committing offsets there (Kafka's
// require_stable), so that what it returns is what the last committed transaction left.
// It gives up with ctx's error when ctx ends first (a runner's claim of the partition
// ended: nobody waits for the answer any more).
func (c *Client) StableCommit(ctx context.Context, group, topic string, partition int32) (int64, error) {
	cl, err := c.Sarama()
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(TransactionTimeout + 5*time.Second)
	for {
		req := sarama.NewOffsetFetchRequest(c.cfg.Version, group, map[string][]int32{topic: {partition}})
		req.RequireStable = true
		coordinator, err := cl.Coordinator(group)
		var resp *sarama.OffsetFetchResponse
		if err == nil {
			resp, err = coordinator.FetchOffset(req)
		}
		if err == nil {
			if kerr := resp.GroupError(); kerr != sarama.ErrNoError {
				err = kerr
			} else if b := resp.GetBlock(topic, partition); b == nil {
				err = fmt.Errorf("no answer for partition %d of %s", partition, topic)
			} else if b.Err != sarama.ErrNoError {
				err = b.Err
			} else {
				return b.Offset, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("group %s's offset on %s/%d: %w", group, topic, partition, err)
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("group %s's offset on %s/%d: %w", group, topic, partition, context.Cause(ctx))
		}
		_ = cl.RefreshCoordinator(group)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
