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
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// Scaler is what the gateway shows of the scaler on /v1/resources, in the API's terms
// (package node adapts the scaler to it).
type Scaler interface {
	Runners() []wire.Heartbeat
	Deployments() []api.DeploymentStatus
}

// Config is what a gateway serves and talks to.
type Config struct {
	// Kafka is the process's Kafka client, which the gateway reads with: readiness,
	// what streams hold, results and frames. Required.
	Kafka *kafkaclient.Client
	// NATS is the control plane connection. Required.
	NATS *nats.Conn
	// Store holds the control-plane records (on NATS JetStream), which the gateway lists.
	// Required.
	Store *controlplane.Store
	// Streams is the local view of the stream records that ingest resolves topics with;
	// its owner runs it. Required.
	Streams *controlplane.StreamView
	// Rollout changes streams, functions, deployments, replays and shadows. Required.
	Rollout *rollout.Service
	// Producer writes pushed frames; its owner closes it once Run has returned. Required.
	Producer ingest.Sender
	// Cameras runs the pulled cameras; its owner runs it. Required.
	Cameras *ingest.Supervisor
	// Zones holds the counting zones of tracking deployments; nil: /v1/zones answers 501.
	Zones *controlplane.Zones
	// Registry, when not nil, is served under /v2/.
	Registry http.Handler
	// Token, when set, is required on /v1/, /v2/ and /metrics (bearer, or basic auth password).
	Token string
	// MaxFrameBytes bounds one pushed frame. Default ingest.DefaultMaxFrameBytes.
	MaxFrameBytes int64
	// Scaler, when not nil, reports runners and deployment status on /v1/resources.
	Scaler Scaler
	// Sinks, when not nil, serves /v1/sinks (501 otherwise).
	Sinks Sinks
	// ListenAddr is the listener's address (host:port), which the Host header must name
	// (besides localhost and loopback addresses on its port).
	ListenAddr string
	// AllowedHosts are further names the gateway answers to (a public DNS name).
	AllowedHosts []string
	// AllowedOrigins are web origins (scheme://host:port) besides the gateway's own that
	// may send requests to the API.
	AllowedOrigins []string
	Logger         *slog.Logger
}

// Server serves the gateway's HTTP listener: /v1/ (the API), /v2/ (the registry), the
// dashboard, /metrics, /healthz and /readyz.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	push    *ingest.HTTPPush
	guarded http.Handler // mux behind guard
	woken   sync.Map     // stream → *atomic.Int64, the last wake sent (Unix ns)
}

// NewServer returns a gateway serving cfg; Run serves it.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Kafka == nil || cfg.NATS == nil || cfg.Store == nil || cfg.Streams == nil || cfg.Rollout == nil ||
		cfg.Producer == nil || cfg.Cameras == nil {
		return nil, errors.New("gateway: Config needs Kafka, NATS, Store, Streams, Rollout, Producer and Cameras")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "gateway"), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /{$}", s.ui) // the page is public; everything it shows comes from /v1, behind the token
	s.mux.Handle("GET /metrics", requireToken(cfg.Token, metrics.Handler()))
	if cfg.Registry != nil {
		s.mux.Handle("/v2/", requireToken(cfg.Token, cfg.Registry))
	}
	push, err := ingest.NewHTTPPush(ingest.PushConfig{
		Producer: cfg.Producer, Topic: s.framesTopic, MaxFrameBytes: cfg.MaxFrameBytes, Logger: cfg.Logger, Stored: s.wake,
	})
	if err != nil {
		return nil, err
	}
	s.push = push
	s.routes()
	s.zoneRoutes()
	s.sinkRoutes()
	s.guarded = s.guard(s.mux)
	return s, nil
}

// framesTopic resolves a stream to its frames topic for ingest, from the local view.
func (s *Server) framesTopic(ctx context.Context, stream string) (string, error) {
	topic, err := s.cfg.Streams.FramesTopic(ctx, stream)
	if errors.Is(err, controlplane.ErrNotFound) {
		return "", fmt.Errorf("%w: %s", ingest.ErrUnknownStream, stream)
	}
	return topic, err
}

// wake tells the scalers that stream got a frame, at most once a second a stream.
func (s *Server) wake(stream string) {
	now := time.Now().UnixNano()
	v, _ := s.woken.LoadOrStore(stream, new(atomic.Int64))
	last := v.(*atomic.Int64)
	if prev := last.Load(); now-prev < int64(time.Second) || !last.CompareAndSwap(prev, now) {
		return
	}
	_ = s.cfg.NATS.Publish(wire.SubjectWake, []byte(stream))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.guarded.ServeHTTP(w, r) }

// readyz answers 200 only when the services the gateway needs answer: NATS is connected
// and Kafka returns metadata. A 503 names each one that does not.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"nats": "ok", "kafka": "ok"}
	ready := true
	if !s.cfg.NATS.IsConnected() {
		checks["nats"] = "not connected"
		ready = false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := s.cfg.Kafka.Ping(ctx); err != nil {
		checks["kafka"] = err.Error()
		ready = false
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ready, "checks": checks})
}

// Run serves HTTP on ln until ctx ends, then gives in-flight requests up to 10 s. It
// returns early with the listener's error if serving fails.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	// Timeouts against slow clients: headers in 10 s, an idle keep-alive closed after 2
	// minutes. No overall read timeout: an MJPEG push is one request that lasts as long as
	// its camera streams (ingest bounds each frame's read instead).
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { errc <- srv.Serve(ln) })
	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && serveErr == nil {
		serveErr = fmt.Errorf("gateway: shutdown: %w", err)
	}
	wg.Wait()
	return serveErr
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
