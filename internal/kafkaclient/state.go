package kafkaclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// EnsureCompactedTopic creates a compacted topic (the latest record per key is kept
// for ever, a nil value deletes the key) unless it exists.
func (c *Client) EnsureCompactedTopic(name string, partitions int32) error {
	n, err := c.BrokerCount()
	if err != nil {
		return err
	}
	compact, minISR := "compact", fmt.Sprint(min(2, max(1, n-1)))
	err = c.CreateTopics([]TopicSpec{{Name: name, Partitions: partitions, Replication: int16(min(3, n)),
		Config: map[string]*string{"cleanup.policy": &compact, "min.insync.replicas": &minISR}}})
	if errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return nil
	}
	return err
}

// LatestByKey reads a partition of a (compacted) topic from its start to its end
// offset and returns the last committed value of each key; a key whose last record is a
// tombstone (nil value) is absent. Records of aborted transactions never count, and a
// transaction still open is not waited for (the end offset is the last stable one). It
// stops with ctx's error when ctx ends first (a runner's claim of the partition ended).
func (c *Client) LatestByKey(ctx context.Context, topic string, partition int32) (map[string][]byte, error) {
	start, end, err := c.Retained(topic, partition)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err = c.readRange(ctx, topic, partition, start, end, func(m *sarama.ConsumerMessage) error {
		if m.Value == nil {
			delete(out, string(m.Key))
		} else {
			out[string(m.Key)] = m.Value
		}
		return nil
	})
	return out, err
}
