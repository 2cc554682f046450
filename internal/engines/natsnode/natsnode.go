// Package natsnode runs diplip's control plane server in-process: an embedded nats-server
// with JetStream on a file store, so that key-value state survives a restart on the same
// directory. In production any NATS cluster takes its place; nothing else in diplip
// depends on the server being embedded.
package natsnode

import (
	"errors"
	"fmt"
	"log/slog"
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
	ns, err := server.NewServer(&server.Options{
		ServerName:         "diplip",
		Host:               cfg.Host,
		Port:               port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		Authorization:      cfg.Token,
		NoSigs:             true, // the process owner handles signals, not the library
		NoLog:              true,
		MaxPayload:         8 << 20, // live results can carry a frame thumbnail
		JetStreamMaxMemory: 64 << 20,
	})
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
