package sinks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	// Eclipse Paho is the MQTT client of the Eclipse IoT project, maintained, MQTT 3.1.1
	// (what Mosquitto, Home Assistant's broker and Node-RED speak by default), with
	// automatic reconnects and a QoS 1 token that completes on the broker's PUBACK — exactly
	// the acknowledgement a sink moves its offset on. paho.golang (MQTT 5) is younger and not
	// an approved release in our package lists; one library does the job.
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/diplip/diplip/api"
)

// DefaultTopicPrefix is the first level of a sink's MQTT topics.
const DefaultTopicPrefix = "diplip"

// MQTT publishes events at QoS 1 to PREFIX/STREAM/CAMERA/events and keeps retained
// counts at PREFIX/STREAM/CAMERA/ZONE/CLASS/count.
type MQTT struct {
	prefix  string
	client  mqtt.Client
	timeout time.Duration

	mu   sync.Mutex
	lost chan struct{} // closed when the connection is lost, then replaced
}

// noStore is a Paho store that keeps nothing. Paho would resend the publishes in flight
// when a connection broke after it reconnects, by itself and after the sink had moved on
// to newer events (and, in v1.5.1, racing with its own writer on the packet's DUP flag);
// the sink's retry loop resends instead, in order. A QoS 1 token still completes on its
// PUBACK: Paho tracks tokens apart from the store.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

// brokerAddr turns mqtt://HOST:PORT (or tcp://) into Paho's tcp://HOST:PORT, and mqtts://
// (or ssl://) into ssl://.
func brokerAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("mqtt url %q: want mqtt://HOST:PORT", raw)
	}
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
		u.Scheme = "tcp"
	case "mqtts", "ssl", "tls":
		u.Scheme = "ssl"
	default:
		return "", fmt.Errorf("mqtt url %q: scheme %q: want mqtt:// or mqtts://", raw, u.Scheme)
	}
	if u.Port() == "" {
		port := "1883"
		if u.Scheme == "ssl" {
			port = "8883"
		}
		u.Host += ":" + port
	}
	return u.Scheme + "://" + u.Host, nil
}

// NewMQTT returns a target connected (in the background, retrying) to the broker at raw.
func NewMQTT(sink, raw, prefix, username, password string) (*MQTT, error) {
	addr, err := brokerAddr(raw)
	if err != nil {
		return nil, err
	}
	if prefix == "" {
		prefix = DefaultTopicPrefix
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	opts := mqtt.NewClientOptions().AddBroker(addr).
		SetClientID("diplip-" + sink + "-" + hex.EncodeToString(id)).
		SetUsername(username).SetPassword(password).
		SetCleanSession(true).SetOrderMatters(true).
		SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(500 * time.Millisecond).SetMaxReconnectInterval(2 * time.Second).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second).SetKeepAlive(10 * time.Second)
	m := &MQTT{prefix: prefix, timeout: 10 * time.Second, lost: make(chan struct{})}
	opts.SetStore(noStore{}).SetConnectionLostHandler(func(mqtt.Client, error) {
		m.mu.Lock()
		close(m.lost) // a publish waiting for its PUBACK gives up now and is retried
		m.lost = make(chan struct{})
		m.mu.Unlock()
	})
	m.client = mqtt.NewClient(opts)
	m.client.Connect() // with ConnectRetry it keeps trying in the background; Deliver reports the state
	return m, nil
}

func topicLevel(s string) string {
	return strings.NewReplacer("/", "_", "+", "_", "#", "_").Replace(s)
}

// EventsTopic is where a camera's events go.
func EventsTopic(prefix, stream, camera string) string {
	return prefix + "/" + topicLevel(stream) + "/" + topicLevel(camera) + "/events"
}

// CountTopic is where a zone's count of a class is retained.
func CountTopic(prefix, stream, camera, zone, class string) string {
	return prefix + "/" + topicLevel(stream) + "/" + topicLevel(camera) + "/" + topicLevel(zone) + "/" + topicLevel(class) + "/count"
}

// errNotConnected: a message is not handed to Paho while it reconnects (it would keep it
// and send it later, after newer ones); the sink retries instead.
var errNotConnected = errors.New("mqtt broker not connected")

func (m *MQTT) publish(ctx context.Context, topic string, retained bool, payload []byte) error {
	m.mu.Lock()
	lost := m.lost
	m.mu.Unlock()
	if !m.client.IsConnectionOpen() {
		return errNotConnected
	}
	tok := m.client.Publish(topic, 1, retained, payload)
	timer := time.NewTimer(m.timeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-timer.C:
		return fmt.Errorf("mqtt: no PUBACK within %s", m.timeout)
	case <-lost:
		return errors.New("mqtt: connection lost before the PUBACK")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Deliver publishes ev at QoS 1 and returns once the broker acknowledged it (PUBACK).
func (m *MQTT) Deliver(ctx context.Context, ev api.SinkEvent) (string, error) {
	b, err := marshal(ev)
	if err != nil {
		return "", Permanent(err)
	}
	if err := m.publish(ctx, EventsTopic(m.prefix, ev.Stream, ev.Camera), false, b); err != nil {
		return "", err
	}
	return "PUBACK", nil
}

// PublishCount keeps c as the retained message of its count topic.
func (m *MQTT) PublishCount(ctx context.Context, c api.SinkCount) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return m.publish(ctx, CountTopic(m.prefix, c.Stream, c.Camera, c.Zone, c.Class), true, b)
}

// Close disconnects, giving in-flight messages 250 ms.
func (m *MQTT) Close() { m.client.Disconnect(250) }
