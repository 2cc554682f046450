// Package kafkaclient holds the sarama configuration every diplip component shares, so
// that the producer, the consumer groups and the admin client agree on the protocol
// version and on delivery guarantees. It does not start brokers (see internal/kafkanode).
package kafkaclient

import (
	"fmt"
	"strings"

	"github.com/IBM/sarama"
)

// Version is the Kafka protocol ceiling diplip speaks. Kafka 4.0 removed protocol versions
// older than 2.1, and sarama (≥ 1.46) negotiates down from this ceiling, so it must be set:
// sarama's old default fails against a 4.x broker with "unsupported version".
var Version = sarama.V4_1_0_0

// NewConfig returns a sarama config for a client named clientID, with Version set.
// The producer defaults are the at-least-once ones diplip relies on end to end:
// acks=all and the idempotent producer (which needs one request in flight per broker).
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
