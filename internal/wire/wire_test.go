package wire

import (
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// consumed turns a producer message into the consumer message a broker would hand back.
func consumed(pm *sarama.ProducerMessage) *sarama.ConsumerMessage {
	k, _ := pm.Key.Encode()
	v, _ := pm.Value.Encode()
	m := &sarama.ConsumerMessage{Key: k, Value: v, Topic: pm.Topic}
	for _, h := range pm.Headers {
		m.Headers = append(m.Headers, &sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return m
}

func TestFrameRoundTrip(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli())
	f := Frame{Camera: "gate-1", Seq: 42, CaptureTime: now.Add(-time.Second), IngestTime: now, ContentType: ContentJPEG, Data: []byte{0xff, 0xd8, 1, 2}}
	got, err := DecodeFrame(consumed(f.ProducerMessage("diplip.frames.lobby")))
	if err != nil {
		t.Fatal(err)
	}
	if got.Camera != f.Camera || got.Seq != 42 || !got.CaptureTime.Equal(f.CaptureTime) || !got.IngestTime.Equal(now) ||
		got.ContentType != ContentJPEG || string(got.Data) != string(f.Data) {
		t.Fatalf("round trip: %+v, want %+v", got, f)
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	good := func() *sarama.ConsumerMessage {
		f := Frame{Camera: "c1", Seq: 1, ContentType: ContentJPEG, Data: []byte("x")}
		return consumed(f.ProducerMessage("t"))
	}
	for _, tc := range []struct {
		name string
		edit func(m *sarama.ConsumerMessage)
	}{
		{"no headers", func(m *sarama.ConsumerMessage) { m.Headers = nil }},
		{"bad seq", func(m *sarama.ConsumerMessage) { m.Headers[1].Value = []byte("-1") }},
		{"bad time", func(m *sarama.ConsumerMessage) { m.Headers[2].Value = []byte("yesterday") }},
		{"key differs", func(m *sarama.ConsumerMessage) { m.Key = []byte("c2") }},
		{"bad camera", func(m *sarama.ConsumerMessage) {
			m.Key = []byte("a b")
			m.Headers[0].Value = []byte("a b")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := good()
			tc.edit(m)
			if _, err := DecodeFrame(m); !errors.Is(err, ErrBadFrame) {
				t.Fatalf("err = %v, want ErrBadFrame", err)
			}
		})
	}
}

func TestResultID(t *testing.T) {
	id := ResultID("lobby", "gate-1", 7, "127.0.0.1:8080/fn/x@sha256:ce748fe7d0e875812a822afd285ec69edf2530b94c5e0c87af413b2f5cde0f32")
	if id != "lobby/gate-1/7/ce748fe7d0e8" {
		t.Fatalf("ResultID = %q", id)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add("c1", "c1", "1", "1700000000000", "1700000000001", "image/jpeg", []byte("x"))
	f.Fuzz(func(t *testing.T, key, cam, seq, capMs, ingMs, ct string, value []byte) {
		hs := []header{{HeaderCamera, cam}, {HeaderSeq, seq}, {HeaderCaptureMs, capMs}, {HeaderIngestMs, ingMs}, {HeaderContentType, ct}}
		fr, err := decode(key, hs, value)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error does not wrap ErrBadFrame: %v", err)
			}
			return
		}
		if ValidCamera(fr.Camera) != nil || fr.Camera != key {
			t.Fatalf("accepted camera %q for key %q", fr.Camera, key)
		}
	})
}
