package ingest

import (
	"sync"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/kafkaclient"
)

// Producer is ingest's Kafka producer of frames: acks=all and idempotent (the shared
// kafkaclient config), built on the process's one Kafka client. It connects on first
// use, and again after a failed connect, so the gateway starts (and reports itself
// unready) while Kafka is still down. It is a Sender.
type Producer struct {
	kafka *kafkaclient.Client

	mu sync.Mutex
	p  sarama.SyncProducer
}

// NewProducer returns a producer on kafka's client.
func NewProducer(kafka *kafkaclient.Client) *Producer { return &Producer{kafka: kafka} }

func (p *Producer) get() (sarama.SyncProducer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p != nil {
		return p.p, nil
	}
	sp, err := p.kafka.SyncProducer()
	if err != nil {
		return nil, err
	}
	p.p = sp
	return sp, nil
}

// SendMessage writes one frame record and returns once Kafka acknowledged it.
func (p *Producer) SendMessage(m *sarama.ProducerMessage) (int32, int64, error) {
	sp, err := p.get()
	if err != nil {
		return 0, 0, err
	}
	return sp.SendMessage(m)
}

// Close closes the producer (not the client it is built on).
func (p *Producer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p == nil {
		return nil
	}
	err := p.p.Close()
	p.p = nil
	return err
}
