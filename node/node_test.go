package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/node"
	"github.com/diplip/diplip/node/nodetest"
)

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("%s: body is not JSON: %v", url, err)
	}
	return resp.StatusCode, v
}

func TestLocalServesHealthAndRegistry(t *testing.T) {
	l := nodetest.Start(t, node.Config{Kafka: testkit.Kafka(t)})
	if code, _ := getJSON(t, l.URL()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	if code, v := getJSON(t, l.URL()+"/readyz"); code != http.StatusOK || v["ready"] != true {
		t.Fatalf("/readyz with Kafka and NATS up: %d %v", code, v)
	}
	resp, err := http.Get(l.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/v2/ (OCI distribution API base): %d, want 200", resp.StatusCode)
	}
}

// /readyz means something: with Kafka unreachable it answers 503 and names Kafka.
func TestReadyzNamesAnUnreachableKafka(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	l := nodetest.Start(t, node.Config{Kafka: []string{dead}})
	code, v := getJSON(t, l.URL()+"/readyz")
	checks, _ := v["checks"].(map[string]any)
	if code != http.StatusServiceUnavailable || checks["nats"] != "ok" || checks["kafka"] == "ok" {
		t.Fatalf("/readyz with Kafka down: %d %v; want 503 naming kafka", code, v)
	}
}

func TestLocalReportsABusyPort(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	n, err := node.New(node.Config{StateDir: t.TempDir(), Listen: ln.Addr().String(), Kafka: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("busy port: err = %v, want one that suggests --listen", err)
	}
}

func TestCheckExposure(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  node.Config
		ok   bool
	}{
		{"loopback without a token", node.Config{Listen: "127.0.0.1:8080", NATSListen: "127.0.0.1:0"}, true},
		{"localhost", node.Config{Listen: "localhost:8080"}, true},
		{"ipv6 loopback", node.Config{Listen: "[::1]:8080"}, true},
		{"all interfaces without a token", node.Config{Listen: "0.0.0.0:8080"}, false},
		{"empty host means all interfaces", node.Config{Listen: ":8080"}, false},
		{"a LAN address without a token", node.Config{Listen: "127.0.0.1:8080", NATSListen: "10.0.0.7:4222"}, false},
		{"public with a token", node.Config{Listen: "0.0.0.0:8080", NATSListen: "0.0.0.0:4222", Token: "t"}, true},
		{"public, allowed explicitly", node.Config{Listen: "0.0.0.0:8080", InsecureNoToken: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := node.CheckExposure(tc.cfg)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, node.ErrExposed)) {
				t.Fatalf("CheckExposure(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
			}
		})
	}
}

// The managed broker is supervised: SIGKILLed under a running node, its JVM is started
// again on its data, and /readyz is 200 again.
func TestManagedBrokerComesBackAfterSIGKILL(t *testing.T) {
	var logs testkit.SyncBuffer
	n := nodetest.Start(t, node.Config{KafkaHeapMB: 256, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	pid := n.KafkaPID()
	if pid == 0 {
		t.Fatal("no managed broker")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 90*time.Second, 250*time.Millisecond, func() error {
		if p := n.KafkaPID(); p == 0 || p == pid {
			return fmt.Errorf("broker pid %d (killed: %d)", p, pid)
		}
		if code, v := getJSON(t, n.URL()+"/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %v", code, v)
		}
		// The supervisor logs "restarted" after RestartNode returns, which on a fast
		// machine is after the new JVM answers /readyz: wait for the line too.
		for _, line := range []string{"kafka node exited; restarting it", "kafka node restarted"} {
			if !strings.Contains(logs.String(), line) {
				return fmt.Errorf("the restart was not logged (no %q yet):\n%s", line, logs.String())
			}
		}
		return nil
	})
}
