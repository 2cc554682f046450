// Package nodetest runs a diplip node for tests, as net/http/httptest runs a server: on a
// random loopback port, with its state in the test's temporary directory, stopped (and
// checked for a clean stop) when the test ends. Product code never imports it.
package nodetest

import (
	"context"
	"testing"

	"github.com/diplip/diplip/node"
)

// Start runs a node for cfg (StateDir and Listen default to a temporary directory and a
// random port) until the test ends, and returns it once it is ready.
func Start(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	select {
	case <-n.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("node did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("node stopped with: %v", err)
		}
	})
	return n
}
