package kafkaclient

import (
	"errors"
	"fmt"
	"time"

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

// LatestByKey reads a partition of a (compacted) topic from its start to its end offset
// and returns the last value of each key; a key whose last record is a tombstone (nil
// value) is absent.
func (c *Client) LatestByKey(topic string, partition int32) (map[string][]byte, error) {
	start, end, err := c.Retained(topic, partition)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	if start >= end {
		return out, nil
	}
	cl, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	consumer, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, partition, start)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	for off := start; off < end; {
		select {
		case m := <-pc.Messages():
			off = m.Offset + 1
			if m.Value == nil {
				delete(out, string(m.Key))
			} else {
				out[string(m.Key)] = m.Value
			}
		case err := <-pc.Errors():
			return nil, err
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("reading %s/%d: no record for 10 s at offset %d of %d", topic, partition, off, end)
		}
	}
	return out, nil
}
