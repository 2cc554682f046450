// Package natsnode runs diplip's control plane server in-process: an embedded nats-server
// with JetStream on a file store, so that key-value state survives a restart on the same
// directory. In production any NATS cluster takes its place; nothing else in diplip
// depends on the server being embedded.
package natsnode

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config describes the embedded server. The zero value plus StoreDir listens on a random
// loopback port.
type Config struct {
	// StoreDir holds JetStream's file store. Required.
	StoreDir string
	// Host to listen on. Default 127.0.0.1.
	Host string
	// Port to listen on; 0 picks a free port.
	Port int
	// Token, when set, is required from every client.
	Token string
	// ReadyTimeout bounds how long Start waits for the server. Default 10s.
	ReadyTimeout time.Duration
	// Logger receives life-cycle events. Default: slog.Default().
	Logger *slog.Logger

	// ServerName names the server among its cluster's peers; each must be unique there.
	// Default "diplip".
	ServerName string
	// Cluster, when set, makes the server one node of a NATS cluster: JetStream then
	// places each stream's replicas on its peers (a key-value bucket with Replicas 3
	// survives the loss of one of three servers).
	Cluster *ClusterConfig
}

// ClusterConfig is one server's part in a NATS cluster. Every peer names the same Name
// and lists the others' route URLs; each keeps its own StoreDir.
type ClusterConfig struct {
	// Name of the cluster, the same on every peer. Required.
	Name string
	// Host and Port where peers connect (routes). Port 0 picks a free port, which a
	// restarted server would not get again: clusters that restart servers fix it.
	Host string
	Port int
	// Routes are the peers' route URLs, nats-route://host:port (its own may be listed too).
	Routes []string
}

// Server is a running embedded nats-server.
type Server struct {
	ns  *server.Server
	cfg Config
}

// Start starts the server and returns once it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsnode: Config.StoreDir is required")
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("natsnode: %w", err)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = -1 // nats-server's "random free port"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "diplip"
	}
	opts := &server.Options{
		ServerName:         cfg.ServerName,
		Host:               cfg.Host,
		Port:               port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		Authorization:      cfg.Token,
		NoSigs:             true, // the process owner handles signals, not the library
		NoLog:              true,
		MaxPayload:         8 << 20, // live results can carry a frame thumbnail
		JetStreamMaxMemory: 64 << 20,
	}
	if c := cfg.Cluster; c != nil {
		if err := clusterOptions(opts, *c); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsnode: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(cfg.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("natsnode: server not ready after %v (store %s)", cfg.ReadyTimeout, cfg.StoreDir)
	}
	cfg.Logger.Info("nats started", "component", "natsnode", "url", ns.ClientURL(), "store", cfg.StoreDir)
	return &Server{ns: ns, cfg: cfg}, nil
}

// clusterOptions checks c and sets the route options of a clustered server.
func clusterOptions(opts *server.Options, c ClusterConfig) error {
	if c.Name == "" {
		return errors.New("natsnode: Cluster.Name is required for a clustered server")
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	port := c.Port
	if port == 0 {
		port = -1
	}
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: port}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || (u.Scheme != "nats-route" && u.Scheme != "nats") {
			return fmt.Errorf("natsnode: cluster route %q: want nats-route://host:port", r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// ClusterURL is the nats-route:// URL peers list in their Cluster.Routes; empty for a
// server that is not clustered.
func (s *Server) ClusterURL() string {
	addr := s.ns.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats-route://" + addr.String()
}

// WaitJetStream waits until JetStream can serve requests: on a cluster, once its peers
// have elected a meta leader (ReadyForConnections does not wait for that).
func (s *Server) WaitJetStream(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		// Current: it knows the meta leader and has caught up with it (always, alone).
		if s.ns.JetStreamEnabled() && s.ns.JetStreamIsCurrent() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natsnode: JetStream of %s not ready after %v (no meta leader among its peers)", s.cfg.ServerName, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ClientURL is the nats:// URL clients in other processes connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Connect returns a client connected in-process (no TCP), with the server's token.
func (s *Server) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name(name), nats.InProcessServer(s.ns)}, opts...)
	if s.cfg.Token != "" {
		opts = append(opts, nats.Token(s.cfg.Token))
	}
	nc, err := nats.Connect(s.ns.ClientURL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("natsnode: connecting in-process: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until it has stopped; JetStream flushes its store.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
