package wire

import (
	"errors"
	"testing"
	"time"
)

// record is a frame as a Kafka record's parts.
type record struct {
	key     string
	headers []Header
	value   []byte
}

func encoded(f Frame) *record { return &record{f.Key(), f.Headers(), f.Data} }

func (r *record) decode() (Frame, error) { return DecodeFrame(r.key, r.headers, r.value) }

func TestFrameRoundTrip(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli())
	f := Frame{Camera: "gate-1", Seq: 42, CaptureTime: now.Add(-time.Second), IngestTime: now, ContentType: ContentJPEG, Data: []byte{0xff, 0xd8, 1, 2}}
	got, err := encoded(f).decode()
	if err != nil {
		t.Fatal(err)
	}
	if got.Camera != f.Camera || got.Seq != 42 || !got.CaptureTime.Equal(f.CaptureTime) || !got.IngestTime.Equal(now) ||
		got.ContentType != ContentJPEG || string(got.Data) != string(f.Data) {
		t.Fatalf("round trip: %+v, want %+v", got, f)
	}
	if got.CameraSeq {
		t.Fatal("a gateway-numbered frame came back as numbered by its camera")
	}
	f.CameraSeq = true
	if got, err := encoded(f).decode(); err != nil || !got.CameraSeq {
		t.Fatalf("a camera-numbered frame: CameraSeq %v, %v", got.CameraSeq, err)
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	good := func() *record {
		return encoded(Frame{Camera: "c1", Seq: 1, ContentType: ContentJPEG, Data: []byte("x")})
	}
	for _, tc := range []struct {
		name string
		edit func(m *record)
	}{
		{"no headers", func(m *record) { m.headers = nil }},
		{"bad seq", func(m *record) { m.headers[1].Value = "-1" }},
		{"bad time", func(m *record) { m.headers[2].Value = "yesterday" }},
		{"key differs", func(m *record) { m.key = "c2" }},
		{"bad camera", func(m *record) {
			m.key = "a b"
			m.headers[0].Value = "a b"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := good()
			tc.edit(m)
			if _, err := m.decode(); !errors.Is(err, ErrBadFrame) {
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
		hs := []Header{{HeaderCamera, cam}, {HeaderSeq, seq}, {HeaderCaptureMs, capMs}, {HeaderIngestMs, ingMs}, {HeaderContentType, ct}}
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
