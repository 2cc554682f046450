package testkit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MosquittoBin is where Debian's mosquitto package installs the broker.
const MosquittoBin = "/usr/sbin/mosquitto"

// Mosquitto is a real Mosquitto MQTT broker on a free loopback port, persisting its state
// in a temporary directory every second; it is killed when the test ends.
type Mosquitto struct {
	t    testing.TB
	Port int
	dir  string
	conf string
	cmd  *exec.Cmd
	log  *SyncBuffer
}

// StartMosquitto starts a broker. A machine without Mosquitto fails the test with the
// command that installs it; it never skips.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	if _, err := os.Stat(MosquittoBin); err != nil {
		t.Fatalf("this test needs Mosquitto at %s: install it with: apt-get install mosquitto (go tool task setup does)", MosquittoBin)
	}
	dir := t.TempDir()
	m := &Mosquitto{t: t, Port: FreePort(t), dir: dir, conf: filepath.Join(dir, "mosquitto.conf"), log: &SyncBuffer{}}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 1\n", m.Port, dir)
	if os.Getuid() == 0 {
		conf += "user root\n" // as root it would switch to user mosquitto, who cannot write dir
	}
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(func() {
		if m.cmd != nil {
			m.Kill()
		}
	})
	return m
}

// Start (re)starts the broker on its port and waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.cmd = exec.Command(MosquittoBin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("starting mosquitto: %v", err)
	}
	CheckFor(m.t, 10*time.Second, 50*time.Millisecond, func() error {
		c, err := net.Dial("tcp", m.Addr())
		if err == nil {
			c.Close()
		}
		return err
	})
}

// Kill SIGKILLs the broker.
func (m *Mosquitto) Kill() {
	m.cmd.Process.Signal(syscall.SIGKILL)
	m.cmd.Wait()
	m.cmd = nil
}

// Saved waits until the broker has written its state to disk after since (a subscriber's
// persistent session outlives a SIGKILL only once saved).
func (m *Mosquitto) Saved(since time.Time) {
	m.t.Helper()
	CheckFor(m.t, 10*time.Second, 100*time.Millisecond, func() error {
		fi, err := os.Stat(filepath.Join(m.dir, "mosquitto.db"))
		if err != nil {
			return err
		}
		if !fi.ModTime().After(since) {
			return fmt.Errorf("mosquitto.db last saved at %s", fi.ModTime())
		}
		return nil
	})
}

// Addr is the broker's HOST:PORT.
func (m *Mosquitto) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.Port) }

// URL is the broker as `diplip sink add --mqtt` takes it.
func (m *Mosquitto) URL() string { return "mqtt://" + m.Addr() }

// Log is what the broker printed.
func (m *Mosquitto) Log() string { return m.log.String() }

// MQTTMessage is a message a subscriber received.
type MQTTMessage struct {
	Topic    string
	Payload  []byte
	Retained bool
}

// MQTTSubscriber records, in arrival order, what the broker sends it at QoS 1.
type MQTTSubscriber struct {
	mu   sync.Mutex
	msgs []MQTTMessage
}

// SubscribeMQTT connects a new client (a clean session) to the broker at addr and
// subscribes it to the topic filters at QoS 1; it disconnects when the test ends.
func SubscribeMQTT(t testing.TB, addr string, filters ...string) *MQTTSubscriber {
	t.Helper()
	s := &MQTTSubscriber{}
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 1
	}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("testkit-sub-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
		SetCleanSession(true).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			s.mu.Lock()
			s.msgs = append(s.msgs, MQTTMessage{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...), Retained: m.Retained()})
			s.mu.Unlock()
		})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT subscriber on %s: %v", addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.SubscribeMultiple(subs, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribing to %v: %v", filters, tok.Error())
	}
	return s
}

// Messages returns what arrived so far.
func (s *MQTTSubscriber) Messages() []MQTTMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]MQTTMessage(nil), s.msgs...)
}
