package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/kafkaclient"
)

// Server serves the gateway's HTTP listener.
type Server struct {
	kafka    []string
	nc       *nats.Conn
	registry http.Handler
	log      *slog.Logger
	mux      *http.ServeMux
}

// NewServer returns a gateway for the given Kafka cluster and NATS connection. registry,
// when not nil, is served under /v2/.
func NewServer(kafka []string, nc *nats.Conn, registry http.Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{kafka: kafka, nc: nc, registry: registry, log: logger.With("component", "gateway"), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if registry != nil {
		s.mux.Handle("/v2/", registry)
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// readyz answers 200 only when the services the gateway needs answer: NATS is connected
// and Kafka returns metadata. A 503 names each one that does not.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"nats": "ok", "kafka": "ok"}
	ready := true
	if s.nc == nil || !s.nc.IsConnected() {
		checks["nats"] = "not connected"
		ready = false
	}
	if err := s.pingKafka(r.Context()); err != nil {
		checks["kafka"] = err.Error()
		ready = false
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ready, "checks": checks})
}

func (s *Server) pingKafka(ctx context.Context) error {
	cfg := kafkaclient.NewConfig("diplip-gateway-readyz")
	cfg.Net.DialTimeout = 2 * time.Second
	cfg.Metadata.Retry.Max = 0
	done := make(chan error, 1)
	go func() {
		c, err := sarama.NewClient(s.kafka, cfg)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully, giving in-flight
// requests up to 10 s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("gateway: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
