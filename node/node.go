// Package node assembles one diplip node: the embedded NATS server (or a connection to an
// existing one), the embedded registry, a managed Kafka broker (or an existing cluster),
// the process's Kafka client and frames producer, the control-plane store and its stream
// view, the rollout service and its shadow gauges, the camera supervisor, the scaler with
// its local runner driver, and the gateway's HTTP listener. It owns every loop of the node
// and runs each with Run(ctx). `diplip up` runs all of it; `diplip gateway` runs it
// against an existing NATS and Kafka.
//
// It holds no request handling (package gateway), no deployment logic (package rollout)
// and no scaling policy (package scaler).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/gateway"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/engines/kafkanode"
	"github.com/diplip/diplip/internal/engines/natsnode"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
	"github.com/diplip/diplip/rollout"
	"github.com/diplip/diplip/scaler"
	"github.com/diplip/diplip/sinks"
)

// Config describes a node.
type Config struct {
	// StateDir holds all durable state: nats/, registry/, kafka/, cache/, runners/. Required.
	StateDir string
	// Listen is the gateway's HTTP address (API, registry, UI). Default 127.0.0.1:8080.
	Listen string
	// NATSURL, when set, is an existing NATS server (with JetStream) to use instead of the
	// embedded one: the split deployment of `diplip gateway`.
	NATSURL string
	// NATSListen is the embedded NATS server's address. Default 127.0.0.1:0 (a free port);
	// runners on other machines need an address they can reach.
	NATSListen string
	// Kafka, when set, is an existing cluster to use instead of a managed local broker.
	Kafka []string
	// Token, when set, is required by the API, the registry, /metrics and NATS.
	Token string
	// RunnerCommand starts a runner process (e.g. [diplip runner]); the driver adds
	// --nats, --cache and --id. Empty: no local runners, only ones registered by hand.
	RunnerCommand []string
	// OpenSource opens pulled cameras (ingest/video.Open); nil: no pulled cameras.
	OpenSource ingest.OpenSourceFunc
	// CameraSources is what pulled cameras may read: network schemes always, files only
	// under its FileDirs, link-local hosts only when it allows them.
	CameraSources ingest.SourcePolicy
	// IdleTimeout before a deployment scales to its min. Default 30s.
	IdleTimeout time.Duration
	// KafkaHeapMB is the managed broker's heap. Default 768.
	KafkaHeapMB int
	// AllowedHosts and AllowedOrigins widen the gateway's Host and Origin checks (see
	// gateway.Config).
	AllowedHosts, AllowedOrigins []string
	// ControlPlaneReplicas is the JetStream replicas of the control-plane buckets on a NATS
	// cluster (3 survives a server's loss); 0: buckets that exist keep theirs, new ones 1.
	ControlPlaneReplicas int
	// InsecureNoToken lets a listener that other machines can reach run without a token.
	InsecureNoToken bool
	Logger          *slog.Logger
}

// ErrExposed is wrapped by the error for a listener other machines can reach while no
// token is set.
var ErrExposed = errors.New("reachable from other machines without a token")

// CheckExposure refuses a gateway or NATS listener that other machines can reach when no
// token guards it: the API, the registry and NATS would be open to the network.
func CheckExposure(cfg Config) error {
	if cfg.Token != "" || cfg.InsecureNoToken {
		return nil
	}
	for _, l := range []struct{ flag, addr string }{{"--listen", cfg.Listen}, {"--nats-listen", cfg.NATSListen}} {
		if l.addr != "" && !loopback(l.addr) {
			return fmt.Errorf("%s %s is %w; set --token (or DIPLIP_TOKEN), or pass --insecure-no-token to allow it", l.flag, l.addr, ErrExposed)
		}
	}
	return nil
}

// loopback reports whether a listen address is reachable only from this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Node is one diplip node. Run starts it and serves until its context ends; Ready is
// closed once every service is up, and the accessors are valid from then on.
type Node struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}

	ln       net.Listener
	url      string
	natsURL  string
	nats     *natsnode.Server   // nil with an external NATS
	nc       *nats.Conn         // the node's control-plane connection
	kafka    *kafkanode.Cluster // nil with an external cluster
	brokers  []string
	client   *kafkaclient.Client
	producer *ingest.Producer // pushed and pulled frames, tombstones; closed after every loop ended
	registry *registry.Embedded
	driver   *scaler.LocalDriver // nil without RunnerCommand
	scaler   *scaler.Scaler
	streams  *controlplane.StreamView
	rollout  *rollout.Service
	cameras  *ingest.Supervisor
	sinks    *sinks.Manager
	gateway  *gateway.Server
}

// New checks cfg and fills its defaults; nothing starts until Run.
func New(cfg Config) (*Node, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("node: Config.StateDir is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.KafkaHeapMB == 0 {
		cfg.KafkaHeapMB = 768
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := CheckExposure(cfg); err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, log: cfg.Logger, ready: make(chan struct{})}, nil
}

// Ready is closed once every service is up.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// URL is the gateway's base URL, e.g. http://127.0.0.1:8080.
func (n *Node) URL() string { return n.url }

// Addr is the gateway's host:port (also the registry's).
func (n *Node) Addr() string { return strings.TrimPrefix(n.url, "http://") }

// NATSURL is where clients in other processes connect to the control plane.
func (n *Node) NATSURL() string { return n.natsURL }

// Brokers are the Kafka cluster's bootstrap addresses.
func (n *Node) Brokers() []string { return n.brokers }

// ManagedKafka reports whether the node runs its own broker.
func (n *Node) ManagedKafka() bool { return n.kafka != nil }

// KafkaPID is the managed broker's process id; 0 with an external cluster.
func (n *Node) KafkaPID() int {
	if n.kafka == nil {
		return 0
	}
	return n.kafka.PID(0)
}

// RunnerPIDs lists the runner processes the node started, by runner id.
func (n *Node) RunnerPIDs() map[string]int {
	if n.driver == nil {
		return nil
	}
	return n.driver.PIDs()
}

// ConnectNATS returns a new client of the control plane's NATS.
func (n *Node) ConnectNATS(name string) (*nats.Conn, error) {
	if n.nats != nil {
		return n.nats.Connect(name)
	}
	opts := []nats.Option{nats.Name(name)}
	if n.cfg.Token != "" {
		opts = append(opts, nats.Token(n.cfg.Token))
	}
	return nats.Connect(n.natsURL, opts...)
}

// Run starts every service in order, closes Ready, and serves until ctx ends or a part
// fails; then it stops everything in the reverse order: the cameras and the listener (no
// new frames), the scaler, the frames producer, the runners (each finishes its batches and
// commits), Kafka, the registry and NATS. It returns why it stopped, nil after ctx ended.
func (n *Node) Run(ctx context.Context) error {
	defer n.stop()
	if err := n.start(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.streams.Run(gctx) })
	g.Go(func() error { return n.scaler.Run(gctx) })
	g.Go(func() error { return n.rollout.ShadowGauges(15 * time.Second).Run(gctx) })
	g.Go(func() error { return n.cameras.Run(gctx) })
	// Each sink is a consumer group of its own: a slow target holds only its sink.
	g.Go(func() error { return n.sinks.Run(gctx) })
	if n.kafka != nil {
		// The managed broker comes back by itself after a crash, or the node stops with why.
		g.Go(func() error { return n.kafka.Supervise(gctx, 0, 5) })
	}
	g.Go(func() error {
		err := n.gateway.Run(gctx, n.ln)
		if err == nil && ctx.Err() == nil {
			err = errors.New("gateway stopped")
		}
		return err
	})
	n.log.Info("diplip is up", "gateway", n.url, "registry", n.Addr()+"/v2/", "nats", n.natsURL,
		"kafka", strings.Join(n.brokers, ","), "state", n.cfg.StateDir)
	close(n.ready)
	return g.Wait()
}

// start brings the services up in order; on error, stop undoes what was started.
func (n *Node) start(ctx context.Context) (err error) {
	// The listener first: a busy port is the commonest failure and the cheapest to report.
	if n.ln, err = net.Listen("tcp", n.cfg.Listen); err != nil {
		return fmt.Errorf("listening on %s: %w (pick another with --listen)", n.cfg.Listen, err)
	}
	n.url = "http://" + n.ln.Addr().String()
	if err := n.startNATS(); err != nil {
		return err
	}
	if n.registry, err = registry.NewEmbedded(filepath.Join(n.cfg.StateDir, "registry"), n.log); err != nil {
		return err
	}
	n.brokers = n.cfg.Kafka
	if len(n.brokers) == 0 {
		n.kafka, err = kafkanode.Start(ctx, kafkanode.Config{
			Dir: filepath.Join(n.cfg.StateDir, "kafka"), HeapMB: n.cfg.KafkaHeapMB, Logger: n.log,
		})
		if err != nil {
			return err
		}
		n.brokers = n.kafka.Addrs()
	}
	n.client = kafkaclient.New(n.brokers, "diplip-gateway")
	store, err := controlplane.OpenWith(ctx, n.nc, controlplane.Options{Replicas: n.cfg.ControlPlaneReplicas})
	if err != nil {
		return err
	}
	cpOpts := controlplane.Options{Replicas: n.cfg.ControlPlaneReplicas}
	zones, err := controlplane.OpenZonesWith(ctx, n.nc, cpOpts)
	if err != nil {
		return err
	}
	var driver scaler.Driver
	if len(n.cfg.RunnerCommand) > 0 {
		cmd := append(append([]string{}, n.cfg.RunnerCommand...), "--nats", n.natsURL,
			"--cache", filepath.Join(n.cfg.StateDir, "cache"))
		n.driver = &scaler.LocalDriver{Command: cmd, LogDir: filepath.Join(n.cfg.StateDir, "runners"), Logger: n.log}
		if n.cfg.Token != "" {
			n.driver.Env = []string{"DIPLIP_TOKEN=" + n.cfg.Token}
		}
		driver = n.driver
	}
	// One scaler acts per control plane: with several gateways (diplip gateway on other
	// machines) the lease decides which; a lapsed holder is replaced within its TTL.
	lease, err := controlplane.OpenLeaseWith(ctx, n.nc, cpOpts, "scaler", fmt.Sprintf("%s-%d", n.Addr(), os.Getpid()), 5*time.Second)
	if err != nil {
		return err
	}
	if n.scaler, err = scaler.New(scaler.Config{Store: store, NATS: n.nc, Kafka: n.client, Driver: driver, Lease: lease,
		IdleTimeout: n.cfg.IdleTimeout, Registry: n.Addr(), Logger: n.log}); err != nil {
		return err
	}
	n.producer = ingest.NewProducer(n.client)
	n.streams = store.NewStreamView()
	if n.rollout, err = rollout.New(rollout.Config{Store: store, Kafka: n.client, Producer: n.producer, Logger: n.log,
		RegistryOptions: []remote.Option{remote.WithAuthFromKeychain(registry.SelfKeychain(n.ln.Addr().String(), n.cfg.Token))},
	}); err != nil {
		return err
	}
	// A camera's stream is read from the store (not the view), as the gateway checks it:
	// an unknown one is rollout's NotFound, which names the command that creates it.
	topic := func(ctx context.Context, stream string) (string, error) {
		st, err := n.rollout.Stream(ctx, stream)
		return st.Topic, err
	}
	if n.cameras, err = ingest.NewSupervisor(ingest.SupervisorConfig{Store: store, Topic: topic, Producer: n.producer,
		Open: n.cfg.OpenSource, Policy: n.cfg.CameraSources, Logger: n.log}); err != nil {
		return err
	}
	sinkStore, err := controlplane.OpenSinks(ctx, n.nc, cpOpts)
	if err != nil {
		return err
	}
	if n.sinks, err = sinks.NewManager(sinks.ManagerConfig{Sinks: sinkStore, Store: store, Zones: zones, Kafka: n.client,
		Gateway: n.url, Logger: n.log}); err != nil {
		return err
	}
	n.gateway, err = gateway.NewServer(gateway.Config{
		Kafka: n.client, NATS: n.nc, Store: store, Streams: n.streams, Rollout: n.rollout, Producer: n.producer,
		Cameras: n.cameras, Zones: zones, Registry: n.registry, Token: n.cfg.Token, Logger: n.log, Scaler: scalerView{n.scaler}, Sinks: SinkView{n.sinks},
		ListenAddr: n.ln.Addr().String(), AllowedHosts: n.cfg.AllowedHosts, AllowedOrigins: n.cfg.AllowedOrigins,
	})
	return err
}

// scalerView shows the scaler to the gateway in the API's terms.
type scalerView struct{ s *scaler.Scaler }

func (v scalerView) Runners() []wire.Heartbeat { return v.s.Runners() }

func (v scalerView) Deployments() []api.DeploymentStatus {
	var out []api.DeploymentStatus
	for _, s := range v.s.Status() {
		out = append(out, api.DeploymentStatus{Key: s.Key, Lag: s.Lag, Runners: s.Runners, Desired: s.Desired, RateFPS: s.RateFPS,
			ColdStarts: s.ColdStarts, LastCold: s.LastCold, LastError: s.LastError, Unhealthy: s.Unhealthy, Updated: s.Updated})
	}
	return out
}

// startNATS starts the embedded NATS server, or connects to Config.NATSURL.
func (n *Node) startNATS() error {
	var err error
	if n.cfg.NATSURL != "" {
		opts := []nats.Option{nats.Name("diplip-gateway"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
		if n.cfg.Token != "" {
			opts = append(opts, nats.Token(n.cfg.Token))
		}
		if n.nc, err = nats.Connect(n.cfg.NATSURL, opts...); err != nil {
			return fmt.Errorf("connecting to NATS at %s: %w", n.cfg.NATSURL, err)
		}
		n.natsURL = n.cfg.NATSURL
		return nil
	}
	natsCfg := natsnode.Config{StoreDir: filepath.Join(n.cfg.StateDir, "nats"), Logger: n.log, Token: n.cfg.Token}
	if n.cfg.NATSListen != "" {
		host, port, err := net.SplitHostPort(n.cfg.NATSListen)
		if err != nil {
			return fmt.Errorf("NATS listen address %q: %w", n.cfg.NATSListen, err)
		}
		natsCfg.Host = host
		if natsCfg.Port, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("NATS listen address %q: bad port", n.cfg.NATSListen)
		}
	}
	if n.nats, err = natsnode.Start(natsCfg); err != nil {
		return err
	}
	n.natsURL = n.nats.ClientURL()
	n.nc, err = n.nats.Connect("diplip-gateway")
	return err
}

// stop shuts down what start started, in reverse order. Every loop (the gateway, the
// cameras, the scaler) has already returned from its Run.
func (n *Node) stop() {
	if n.gateway == nil && n.ln != nil {
		n.ln.Close() // never served
	}
	if n.producer != nil {
		if err := n.producer.Close(); err != nil {
			n.log.Warn("closing the frames producer", "err", err)
		}
	}
	if n.driver != nil {
		n.driver.Close()
	}
	if n.client != nil {
		_ = n.client.Close()
	}
	if n.kafka != nil {
		_ = n.kafka.Stop()
	}
	if n.registry != nil {
		_ = n.registry.Close()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	if n.nats != nil {
		n.nats.Shutdown()
	}
}
