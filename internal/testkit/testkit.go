// Package testkit gives tests the real services diplip runs on: a Kafka broker, an
// embedded NATS server with JetStream, and the embedded OCI registry over HTTP.
//
// Kafka is started once per test run by the test environment (`go tool task test`, which
// runs internal/testkit/testenv) and handed to the tests in DIPLIP_TEST_KAFKA. A test that
// needs Kafka and finds no broker fails with the command to run; it never skips.
// NATS and the registry are cheap, so each test gets its own, on random ports, stopped by
// t.Cleanup.
package testkit

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/engines/natsnode"
	"github.com/diplip/diplip/internal/kafkaclient"
)

// EnvKafka names the variable holding the test run's Kafka bootstrap addresses.
const EnvKafka = "DIPLIP_TEST_KAFKA"

// Kafka returns the bootstrap addresses of the test run's real Kafka broker, after
// checking that it answers.
func Kafka(t testing.TB) []string {
	t.Helper()
	v := os.Getenv(EnvKafka)
	if v == "" {
		t.Fatalf("this test needs a real Kafka broker and %s is unset.\n"+
			"Run the tests with: go tool task test   (one package: go tool task test -- ./path/to/pkg)\n"+
			"or point %s at a Kafka 4.x broker (host:port[,host:port]).", EnvKafka, EnvKafka)
	}
	addrs, err := kafkaclient.ParseBrokers(v)
	if err != nil {
		t.Fatalf("%s: %v", EnvKafka, err)
	}
	cfg := kafkaclient.NewConfig("testkit-probe")
	cfg.Net.DialTimeout = 5 * time.Second
	c, err := sarama.NewClient(addrs, cfg)
	if err != nil {
		t.Fatalf("Kafka at %s=%s does not answer: %v\nIs the test run's broker still up? Run: go tool task test", EnvKafka, v, err)
	}
	c.Close()
	return addrs
}

// Topic creates a topic with a unique name (derived from the test's) on the test run's
// broker and deletes it when the test ends. It returns the broker addresses and the name.
func Topic(t testing.TB, partitions int32) ([]string, string) {
	t.Helper()
	addrs := Kafka(t)
	name := fmt.Sprintf("t-%s-%d", sanitize(t.Name()), time.Now().UnixNano())
	admin, err := sarama.NewClusterAdmin(addrs, kafkaclient.NewConfig("testkit-admin"))
	if err != nil {
		t.Fatalf("kafka admin: %v", err)
	}
	if err := admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		admin.Close()
		t.Fatalf("creating topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if err := admin.DeleteTopic(name); err != nil {
			t.Logf("deleting topic %s: %v", name, err)
		}
	})
	return addrs, name
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// NATS starts an embedded nats-server with JetStream on a store in storeDir (a fresh
// temporary directory when empty) and stops it when the test ends.
func NATS(t testing.TB, storeDir string) *natsnode.Server {
	t.Helper()
	if storeDir == "" {
		storeDir = t.TempDir()
	}
	s, err := natsnode.Start(natsnode.Config{StoreDir: storeDir})
	if err != nil {
		t.Fatalf("starting embedded NATS: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// NATSConn starts an embedded NATS server and returns a client connected to it over TCP.
func NATSConn(t testing.TB) (*natsnode.Server, *nats.Conn) {
	t.Helper()
	s := NATS(t, "")
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connecting to embedded NATS at %s: %v", s.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	return s, nc
}

// CheckFor calls f every sleep until it returns nil, failing the test with f's last error
// once total has passed. Tests poll with it instead of sleeping.
func CheckFor(t testing.TB, total, sleep time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", total, err)
		}
		time.Sleep(sleep)
	}
}

// Name returns prefix with a random suffix, a valid stream or function name. Tests share
// the run's Kafka broker, so streams (whose topics are named after them) need unique names.
func Name(prefix string) string {
	return fmt.Sprintf("%s-%x", prefix, time.Now().UnixNano()&0xffffffff)
}

// Media returns the bytes of a sample image or video that setup installed.
func Media(t testing.TB, name string) []byte {
	t.Helper()
	p, err := assets.Media(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SyncBuffer is a bytes.Buffer that a process's output copier or a logger and the test
// can share.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
