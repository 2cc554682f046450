package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
)

// Config is what a gateway serves and talks to.
type Config struct {
	// Kafka is the cluster's bootstrap addresses. Required.
	Kafka []string
	// NATS is the control plane connection. Required.
	NATS *nats.Conn
	// Store holds the control-plane records (on NATS JetStream). Required.
	Store *controlplane.Store
	// Registry, when not nil, is served under /v2/.
	Registry http.Handler
	// Token, when set, is required on /v1/ and /v2/ (bearer, or basic auth password).
	Token string
	// RegistryOptions are used when the gateway reads function images from registries.
	RegistryOptions []remote.Option
	// MaxFrameBytes bounds one pushed frame. Default ingest.DefaultMaxFrameBytes.
	MaxFrameBytes int64
	// Scaler, when not nil, reports runners and deployment status on /v1/resources.
	Scaler *Autoscaler
	// OpenSource opens pulled cameras; nil: /v1/cameras answers 501.
	OpenSource OpenSourceFunc
	Logger     *slog.Logger
}

// Server serves the gateway's HTTP listener: /v1/ (the API), /v2/ (the registry),
// /healthz and /readyz.
type Server struct {
	kafka        []string
	nc           *nats.Conn
	store        *controlplane.Store
	token        string
	registryOpts []remote.Option
	log          *slog.Logger
	mux          *http.ServeMux
	producer     *lazyProducer
	scaler       *Autoscaler
	openSource   OpenSourceFunc
	cams         cameras
	push         *ingest.HTTPPush
}

// NewServer returns a gateway serving cfg.
func NewServer(cfg Config) (*Server, error) {
	if len(cfg.Kafka) == 0 || cfg.NATS == nil || cfg.Store == nil {
		return nil, errors.New("gateway: Config needs Kafka, NATS and Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{kafka: cfg.Kafka, nc: cfg.NATS, store: cfg.Store, token: cfg.Token, registryOpts: cfg.RegistryOptions,
		log: cfg.Logger.With("component", "gateway"), mux: http.NewServeMux(), scaler: cfg.Scaler,
		openSource: cfg.OpenSource, cams: cameras{running: map[string]*ingest.Camera{}}}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /{$}", s.ui) // the page is public; everything it shows comes from /v1, behind the token
	s.mux.Handle("GET /metrics", requireToken(cfg.Token, metrics.Handler()))
	if cfg.Registry != nil {
		s.mux.Handle("/v2/", requireToken(cfg.Token, cfg.Registry))
	}
	s.producer = &lazyProducer{brokers: cfg.Kafka}
	push, err := ingest.NewHTTPPush(ingest.PushConfig{
		Producer: s.producer, Topic: s.framesTopic, MaxFrameBytes: cfg.MaxFrameBytes, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	s.push = push
	s.routes()
	return s, nil
}

// framesTopic resolves a stream to its frames topic for ingest.
func (s *Server) framesTopic(ctx context.Context, stream string) (string, error) {
	st, err := s.store.Stream(ctx, stream)
	if errors.Is(err, controlplane.ErrNotFound) {
		return "", fmt.Errorf("%w: %s", ingest.ErrUnknownStream, stream)
	}
	return st.Topic, err
}

// Close releases the gateway's Kafka producer.
func (s *Server) Close() error { return s.producer.Close() }

// lazyProducer connects its Kafka producer on first use, and again after a failed
// connect, so the gateway starts (and answers /readyz) while Kafka is still down.
type lazyProducer struct {
	brokers []string
	mu      sync.Mutex
	p       sarama.SyncProducer
}

func (l *lazyProducer) get() (sarama.SyncProducer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p != nil {
		return l.p, nil
	}
	p, err := sarama.NewSyncProducer(l.brokers, kafkaclient.NewConfig("diplip-gateway"))
	if err != nil {
		return nil, err
	}
	l.p = p
	return p, nil
}

func (l *lazyProducer) SendMessage(m *sarama.ProducerMessage) (int32, int64, error) {
	p, err := l.get()
	if err != nil {
		return 0, 0, err
	}
	return p.SendMessage(m)
}

func (l *lazyProducer) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p == nil {
		return nil
	}
	err := l.p.Close()
	l.p = nil
	return err
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
