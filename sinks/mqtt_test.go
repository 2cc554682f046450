package sinks_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/sinks"
)

// subscriber records what arrives on topics, in order; its session is persistent
// (QoS 1, no clean session), so the broker keeps its messages while it reconnects.
type subscriber struct {
	mu   sync.Mutex
	msgs []mqtt.Message
}

func subscribe(t *testing.T, b *testkit.Mosquitto, topics ...string) *subscriber {
	s := &subscriber{}
	filters := map[string]byte{}
	for _, tp := range topics {
		filters[tp] = 1
	}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("test-sub-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetOrderMatters(true).
		SetOnConnectHandler(func(c mqtt.Client) { c.SubscribeMultiple(filters, nil) }).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
		})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return s
}

func (s *subscriber) messages() []mqtt.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mqtt.Message(nil), s.msgs...)
}

// TestMQTTBrokerRestart: events go out at QoS 1 to PREFIX/STREAM/CAMERA/events and counts
// are retained; the broker is SIGKILLed and restarted mid-stream, and every event still
// arrives, in order per camera.
func TestMQTTBrokerRestart(t *testing.T) {
	e := newEnv(t)
	b := testkit.StartMosquitto(t)
	subscribed := time.Now()
	sub := subscribe(t, b, "home/#")
	b.Saved(subscribed) // the subscriber's session outlives the kill (autosave_interval 1)
	e.add(api.SinkRequest{Name: "mq", MQTT: "mqtt://" + b.Addr(), TopicPrefix: "home", Events: []string{"crossed"}, MaxAttempts: 10000})
	if res, err := e.mgr.Test(t.Context(), "mq"); err != nil || !res.OK || res.Answer != "PUBACK" {
		t.Fatalf("sink test: %+v, %v", res, err)
	}
	cams := []string{"cam1", "cam2"}
	const n = 20
	for i := uint64(1); i <= n/2; i++ {
		for _, c := range cams {
			e.produce(e.result(c, i))
		}
	}
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("mq"); st.Delivered < 4 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	b.Kill()
	for i := uint64(n/2 + 1); i <= n; i++ {
		for _, c := range cams {
			e.produce(e.result(c, i))
		}
	}
	testkit.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("mq"); st.State != api.SinkRetrying {
			return fmt.Errorf("status %+v, want retrying while the broker is down", st)
		}
		return nil
	})
	b.Start()
	testkit.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		seen := map[string]bool{}
		for _, m := range sub.messages() {
			var ev api.SinkEvent
			if json.Unmarshal(m.Payload(), &ev) == nil && ev.Kind == "crossed" {
				seen[ev.ID] = true
			}
		}
		if len(seen) < len(cams)*n {
			return fmt.Errorf("%d distinct events arrived, want %d", len(seen), len(cams)*n)
		}
		return nil
	})
	first, last, dups := map[string]bool{}, map[string]uint64{}, 0
	counts := map[string]api.SinkCount{}
	for _, m := range sub.messages() {
		var ev api.SinkEvent
		if m.Topic() == sinks.CountTopic("home", e.stream, "cam1", "door", "person") || m.Topic() == sinks.CountTopic("home", e.stream, "cam2", "door", "person") {
			var c api.SinkCount
			if err := json.Unmarshal(m.Payload(), &c); err != nil {
				t.Errorf("count payload: %v", err)
			}
			counts[c.Camera] = c
			continue
		}
		if err := json.Unmarshal(m.Payload(), &ev); err != nil {
			t.Fatalf("payload on %s: %v", m.Topic(), err)
		}
		if ev.Kind == "test" {
			continue
		}
		if want := sinks.EventsTopic("home", e.stream, ev.Camera); m.Topic() != want {
			t.Errorf("event on %s, want %s", m.Topic(), want)
		}
		if first[ev.ID] {
			dups++
			continue
		}
		first[ev.ID] = true
		if ev.Seq <= last[ev.Camera] {
			t.Errorf("camera %s: frame %d's event arrived after frame %d's", ev.Camera, ev.Seq, last[ev.Camera])
		}
		last[ev.Camera] = ev.Seq
	}
	t.Logf("%d events, %d duplicates", len(first), dups)
	// The retained count is the last result's: a new subscriber gets it at once.
	late := subscribe(t, b, sinks.CountTopic("home", e.stream, "cam1", "door", "person"))
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		for _, m := range late.messages() {
			var c api.SinkCount
			if json.Unmarshal(m.Payload(), &c) == nil && m.Retained() && c.In == n {
				return nil
			}
		}
		return fmt.Errorf("no retained count of %d yet: %d messages", n, len(late.messages()))
	})
}
