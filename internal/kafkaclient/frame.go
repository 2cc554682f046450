package kafkaclient

import (
	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/wire"
)

// FrameMessage encodes f as a record for topic (wire.Frame's key, headers and value).
func FrameMessage(f *wire.Frame, topic string) *sarama.ProducerMessage {
	hs := f.Headers()
	rh := make([]sarama.RecordHeader, len(hs))
	for i, h := range hs {
		rh[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: []byte(h.Value)}
	}
	return &sarama.ProducerMessage{
		Topic:   topic,
		Key:     sarama.StringEncoder(f.Key()),
		Value:   sarama.ByteEncoder(f.Data),
		Headers: rh,
	}
}

// DecodeFrame reads a frame from a consumed record. Its Data aliases the record's value.
func DecodeFrame(m *sarama.ConsumerMessage) (wire.Frame, error) {
	hs := make([]wire.Header, 0, len(m.Headers))
	for _, h := range m.Headers {
		if h != nil {
			hs = append(hs, wire.Header{Key: string(h.Key), Value: string(h.Value)})
		}
	}
	return wire.DecodeFrame(string(m.Key), hs, m.Value)
}
