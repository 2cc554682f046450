package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/diplip/diplip/internal/metrics"
)

// serveMetrics serves Prometheus metrics (and, with withPprof, the pprof handlers) on addr
// in g until ctx ends, and returns their URL; an empty addr serves nothing. The roles
// that are processes of their own (runner, sink run) use it.
func serveMetrics(ctx context.Context, g *errgroup.Group, addr string, withPprof bool) (string, error) {
	if addr == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", cli.Exit(fmt.Sprintf("--metrics-listen %s: %v", addr, err), exitUsage)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics listener: %w", err)
		}
		return nil
	})
	g.Go(func() error { <-ctx.Done(); return srv.Close() })
	return "http://" + ln.Addr().String() + "/metrics", nil
}
