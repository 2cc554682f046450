package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkanode"
	"github.com/diplip/diplip/internal/natsnode"
	"github.com/diplip/diplip/registry"
)

// LocalConfig describes everything `diplip up` runs on one machine.
type LocalConfig struct {
	// StateDir holds all durable state: nats/, registry/, kafka/. Required.
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
	// Token, when set, is required by the API and the registry.
	Token string
	// RunnerCommand starts a runner process (e.g. [diplip runner]); the driver adds
	// --nats, --cache and --id. Empty: no local runners, only ones registered by hand.
	RunnerCommand []string
	// OpenSource opens pulled cameras (ingest/video.Open); nil: no pulled cameras.
	OpenSource OpenSourceFunc
	// IdleTimeout before a deployment scales to its min. Default 30s.
	IdleTimeout time.Duration
	// KafkaHeapMB is the managed broker's heap. Default 768.
	KafkaHeapMB int
	Logger      *slog.Logger
}

// Local is a running single-machine diplip: embedded NATS, embedded registry, a managed
// (or external) Kafka, and the gateway's listener.
type Local struct {
	NATS     *natsnode.Server   // nil when LocalConfig.NATSURL names an external server
	NATSURL  string             // where clients in other processes connect
	Kafka    *kafkanode.Cluster // nil when an external cluster is used
	Brokers  []string
	Registry *registry.Embedded
	Gateway  *Server
	URL      string // the gateway's base URL, e.g. http://127.0.0.1:8080
	Scaler   *Autoscaler
	Driver   *LocalDriver // nil without LocalConfig.RunnerCommand

	nc         *nats.Conn
	ln         net.Listener
	scalerDone chan struct{}
	served     chan struct{} // closed when the listener has stopped serving
	token      string
	cancel     context.CancelFunc
	serveErr   chan error
	log        *slog.Logger
}

// StartLocal starts every service in order and returns once they are all ready. On error
// whatever was started is stopped again.
func StartLocal(ctx context.Context, cfg LocalConfig) (l *Local, err error) {
	if cfg.StateDir == "" {
		return nil, errors.New("gateway: LocalConfig.StateDir is required")
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
	l = &Local{log: cfg.Logger, serveErr: make(chan error, 1), token: cfg.Token}
	defer func() {
		if err != nil {
			l.Stop()
			l = nil
		}
	}()

	// The listener first: a busy port is the commonest failure and the cheapest to report.
	if l.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return l, fmt.Errorf("listening on %s: %w (pick another with --listen)", cfg.Listen, err)
	}
	l.URL = "http://" + l.ln.Addr().String()

	if err := l.startNATS(cfg); err != nil {
		return l, err
	}
	if l.Registry, err = registry.NewEmbedded(filepath.Join(cfg.StateDir, "registry"), cfg.Logger); err != nil {
		return l, err
	}
	l.Brokers = cfg.Kafka
	if len(l.Brokers) == 0 {
		l.Kafka, err = kafkanode.Start(ctx, kafkanode.Config{
			Dir: filepath.Join(cfg.StateDir, "kafka"), HeapMB: cfg.KafkaHeapMB, Logger: cfg.Logger,
		})
		if err != nil {
			return l, err
		}
		l.Brokers = l.Kafka.Addrs()
	}

	store, err := controlplane.Open(ctx, l.nc)
	if err != nil {
		return l, err
	}
	var driver Driver
	if len(cfg.RunnerCommand) > 0 {
		cmd := append(append([]string{}, cfg.RunnerCommand...), "--nats", l.NATSURL,
			"--cache", filepath.Join(cfg.StateDir, "cache"))
		l.Driver = &LocalDriver{Command: cmd, LogDir: filepath.Join(cfg.StateDir, "runners"), Logger: cfg.Logger}
		if cfg.Token != "" {
			l.Driver.Env = []string{"DIPLIP_TOKEN=" + cfg.Token}
		}
		driver = l.Driver
	}
	if l.Scaler, err = NewAutoscaler(AutoscalerConfig{
		Store: store, NATS: l.nc, Brokers: l.Brokers, Driver: driver, IdleTimeout: cfg.IdleTimeout, Logger: cfg.Logger,
	}); err != nil {
		return l, err
	}
	if l.Gateway, err = NewServer(Config{
		Kafka: l.Brokers, NATS: l.nc, Store: store, Registry: l.Registry, Token: cfg.Token, Logger: cfg.Logger, Scaler: l.Scaler,
		OpenSource:      cfg.OpenSource,
		RegistryOptions: []remote.Option{remote.WithAuthFromKeychain(registry.SelfKeychain(l.ln.Addr().String(), cfg.Token))},
	}); err != nil {
		return l, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.served = make(chan struct{})
	go func() {
		err := l.Gateway.Serve(sctx, l.ln)
		if err != nil {
			l.log.Warn("gateway stopped with an error", "err", err)
		}
		l.serveErr <- err // buffered: Done's reader may be gone
		close(l.served)
	}()
	if err := l.Gateway.ResumeCameras(ctx); err != nil {
		l.log.Warn("some cameras did not resume", "err", err)
	}
	l.scalerDone = make(chan struct{})
	go func() {
		defer close(l.scalerDone)
		l.Scaler.Run(sctx)
	}()
	l.log.Info("diplip is up", "gateway", l.URL, "registry", l.ln.Addr().String()+"/v2/",
		"nats", l.NATSURL, "kafka", strings.Join(l.Brokers, ","), "state", cfg.StateDir)
	return l, nil
}

// startNATS starts the embedded NATS server, or connects to LocalConfig.NATSURL.
func (l *Local) startNATS(cfg LocalConfig) error {
	var err error
	if cfg.NATSURL != "" {
		opts := []nats.Option{nats.Name("diplip-gateway"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
		if cfg.Token != "" {
			opts = append(opts, nats.Token(cfg.Token))
		}
		if l.nc, err = nats.Connect(cfg.NATSURL, opts...); err != nil {
			return fmt.Errorf("connecting to NATS at %s: %w", cfg.NATSURL, err)
		}
		l.NATSURL = cfg.NATSURL
		return nil
	}
	natsCfg := natsnode.Config{StoreDir: filepath.Join(cfg.StateDir, "nats"), Logger: cfg.Logger, Token: cfg.Token}
	if cfg.NATSListen != "" {
		host, port, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return fmt.Errorf("NATS listen address %q: %w", cfg.NATSListen, err)
		}
		natsCfg.Host = host
		if natsCfg.Port, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("NATS listen address %q: bad port", cfg.NATSListen)
		}
	}
	if l.NATS, err = natsnode.Start(natsCfg); err != nil {
		return err
	}
	l.NATSURL = l.NATS.ClientURL()
	l.nc, err = l.NATS.Connect("diplip-gateway")
	return err
}

// ConnectNATS returns a new client of the control plane's NATS.
func (l *Local) ConnectNATS(name string) (*nats.Conn, error) {
	if l.NATS != nil {
		return l.NATS.Connect(name)
	}
	opts := []nats.Option{nats.Name(name)}
	if l.token != "" {
		opts = append(opts, nats.Token(l.token))
	}
	return nats.Connect(l.NATSURL, opts...)
}

// Done delivers the gateway listener's error if it stops serving while running, so that
// the owner can shut down instead of running without an API; Stop may be called after.
func (l *Local) Done() <-chan error { return l.serveErr }

// Stop shuts everything down in the reverse order of StartLocal: the gateway (no new
// frames), the runners (each finishes its batch and commits), then Kafka, the registry
// and NATS.
func (l *Local) Stop() {
	if l.Gateway != nil {
		l.Gateway.StopCameras() // no new frames from pulled cameras
	}
	if l.cancel != nil {
		l.cancel()
		<-l.served // whether or not Done's reader took the error
		<-l.scalerDone
	} else if l.ln != nil {
		l.ln.Close()
	}
	if l.Driver != nil {
		l.Driver.Close()
	}
	if l.Gateway != nil {
		_ = l.Gateway.Close()
	}
	if l.Kafka != nil {
		_ = l.Kafka.Stop()
	}
	if l.Registry != nil {
		_ = l.Registry.Close()
	}
	if l.nc != nil {
		l.nc.Close()
	}
	if l.NATS != nil {
		l.NATS.Shutdown()
	}
}
