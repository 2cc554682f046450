// Package kafkaclient is diplip's one room for talking to Kafka: the sarama configuration
// every component shares (so producers, consumer groups and admin agree on the protocol
// version and on delivery guarantees), and Client, the one long-lived connection per
// process with the queries the platform needs (topic admin, lag, retained offsets, the
// last results, a frame by position). It does not start brokers (see
// internal/engines/kafkanode).
package kafkaclient

import (
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Version is the Kafka protocol ceiling diplip speaks. Kafka 4.0 removed protocol versions
// older than 2.1, and sarama (≥ 1.46) negotiates down from this ceiling, so it must be set:
// sarama's old default fails against a 4.x broker with "unsupported version".
var Version = sarama.V4_1_0_0

// NewConfig returns a sarama config for a client named clientID, with Version set.
// The producer defaults are the at-least-once ones diplip relies on end to end:
// acks=all and the idempotent producer (which needs one request in flight per broker).
// Consumers read committed data only (isolation read_committed): runners in exactly-once
// mode write results and checkpoints in transactions, and no reader may see a record of
// an aborted or still open one; on a topic written without transactions it changes nothing.
func NewConfig(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = clientID
	c.Version = Version
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Producer.Retry.Max = 10
	c.Producer.Return.Successes = true
	c.Net.MaxOpenRequests = 1
	c.Consumer.Return.Errors = true
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	return c
}

// ParseBrokers splits a comma-separated "host:port,host:port" list and rejects empty or
// port-less entries with an error that names the entry.
func ParseBrokers(list string) ([]string, error) {
	var out []string
	for _, b := range strings.Split(list, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if i := strings.LastIndexByte(b, ':'); i <= 0 || i == len(b)-1 {
			return nil, fmt.Errorf("kafka broker %q: want host:port", b)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kafka broker list %q is empty: want host:port[,host:port...]", list)
	}
	return out, nil
}

// RunnerConfig is the config of a runner process's client: NewConfig plus the consumer
// group settings (a consumer group made from a shared client takes them from the
// client's config).
func RunnerConfig(clientID string) *sarama.Config {
	c := NewConfig(clientID)
	c.Net.DialTimeout = 5 * time.Second
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	// A group without a commit starts at the earliest retained frame; the gateway commits a
	// new live deployment's offsets at the stream's end when it creates it.
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Interval = 500 * time.Millisecond
	c.Consumer.Fetch.Default = 4 << 20 // frames are large
	c.Consumer.Group.Session.Timeout = 10 * time.Second
	c.Consumer.Group.Heartbeat.Interval = 2 * time.Second
	c.Producer.MaxMessageBytes = 1 << 20
	return c
}
