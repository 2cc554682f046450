package sinks

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/wire"
)

func TestFilter(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r := wire.Result{ID: "s/cam1/1/abc", Stream: "s", Camera: "cam1", Seq: 1, CaptureTime: t0, Function: "yolo", Status: wire.StatusOK,
		Detections: []wire.Detection{
			{ClassID: 0, Label: "person", Score: 0.9, TrackID: 4},
			{ClassID: 0, Label: "person", Score: 0.4, TrackID: 5},
			{ClassID: 2, Label: "car", Score: 0.6, TrackID: 6},
		},
		Events: []wire.ZoneEvent{
			{Zone: "door", Kind: wire.EventCrossed, Direction: "in", TrackID: 4, Label: "person"},
			{Zone: "yard", Kind: wire.EventEntered, TrackID: 6, ClassID: 2, Label: "car"},
			{Zone: "yard", Kind: wire.EventLeft, TrackID: 5, Label: "person"},
		}}
	for _, tc := range []struct {
		name string
		spec wire.Sink
		r    func(wire.Result) wire.Result
		want []string // kind/zone-or-label
	}{
		{"everything", wire.Sink{}, nil, []string{"crossed/door", "entered/yard", "left/yard", "detected/person", "detected/car"}},
		{"events", wire.Sink{Events: []string{"left", "detected"}}, nil, []string{"left/yard", "detected/person", "detected/car"}},
		{"classes by label and id", wire.Sink{Classes: []string{"2"}}, nil, []string{"entered/yard", "detected/car"}},
		{"zones", wire.Sink{Zones: []string{"door"}, Events: []string{"crossed", "entered", "left"}}, nil, []string{"crossed/door"}},
		{"min score", wire.Sink{MinScore: 0.5, Events: []string{"crossed", "left"}}, nil, []string{"crossed/door"}},
		{"another camera", wire.Sink{Cameras: []string{"cam2"}}, nil, nil},
		{"another function", wire.Sink{Function: "other"}, nil, nil},
		{"an error result", wire.Sink{}, func(r wire.Result) wire.Result { r.Status = wire.StatusError; return r }, nil},
		{"no detections", wire.Sink{Events: []string{"detected"}}, func(r wire.Result) wire.Result { r.Detections = nil; return r }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := r
			if tc.r != nil {
				in = tc.r(r)
			}
			var got []string
			for _, ev := range newFilter(tc.spec, "").Events(in) {
				what := ev.Zone
				if ev.Kind == KindDetected {
					what = ev.Label
				}
				got = append(got, ev.Kind+"/"+what)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("events %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: time.Second} {
		for range 50 {
			if d := Backoff(100*time.Millisecond, time.Second, n); d < want/2 || d > want {
				t.Fatalf("retry %d waits %v, want %v to %v", n, d, want/2, want)
			}
		}
	}
}

func FuzzBrokerAddr(f *testing.F) {
	for _, s := range []string{"mqtt://127.0.0.1:1883", "mqtts://h", "tcp://[::1]:1", "http://x", "mqtt://", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if addr, err := brokerAddr(raw); err == nil && addr == "" {
			t.Fatalf("%q: empty address without an error", raw)
		}
	})
}

// A webhook never connects to a link-local address unless allowed, whatever the URL's
// name resolved to when the sink was added.
func TestWebhookRefusesLinkLocalAtConnect(t *testing.T) {
	w := NewWebhook("t", "http://169.254.169.254/latest", nil, nil, false)
	_, err := w.Deliver(t.Context(), api.SinkEvent{ID: "x"})
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "link-local") {
		t.Fatalf("err = %v, want a permanent link-local refusal", err)
	}
}
