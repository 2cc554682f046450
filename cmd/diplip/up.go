package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/node"
)

func defaultStateDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "diplip")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "diplip")
	}
	return ".diplip"
}

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "run everything on this machine: NATS, the registry, a Kafka broker and the gateway",
		UsageText: "diplip up [--state-dir DIR] [--listen ADDR] [--kafka HOST:PORT,...] [--demo] [--duration D]\n\n" +
			"Examples:\n" +
			"   diplip up --demo                      # the sample video through the platform\n" +
			"   diplip up --kafka kafka1:9092         # use an existing Kafka cluster\n" +
			"   diplip up --demo --duration 30s       # stop by itself after 30 s",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "state-dir", Value: defaultStateDir(), EnvVars: []string{"DIPLIP_STATE_DIR"}, Usage: "where all durable state lives"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", EnvVars: []string{"DIPLIP_LISTEN"}, Usage: "the gateway's address (API, registry, UI)"},
			&cli.StringFlag{Name: "nats-listen", Value: "127.0.0.1:0", Usage: "the embedded NATS server's address (runners on other machines connect here)"},
			&cli.StringFlag{Name: "kafka", EnvVars: []string{"DIPLIP_KAFKA"}, Usage: "an existing Kafka cluster (host:port,...) instead of a managed local broker"},
			&cli.BoolFlag{Name: "demo", Usage: "run the demo on the sample video"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long (0: run until interrupted)"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"DIPLIP_TOKEN"}, Usage: "require this token on the API and the registry"},
			&cli.DurationFlag{Name: "idle-timeout", Value: 30 * time.Second, Usage: "an idle deployment scales to its min after this long"},
		}, exposureFlags()...),
		Action: runUp,
	}
}

func runUp(c *cli.Context) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := node.Config{StateDir: c.String("state-dir"), Listen: c.String("listen"), Token: c.String("token"),
		Logger: logger, RunnerCommand: []string{exe, "runner"}, IdleTimeout: c.Duration("idle-timeout"), NATSListen: c.String("nats-listen"), OpenSource: openVideo}
	applyExposure(c, &cfg)
	if c.Bool("demo") { // the demo's camera reads the sample video from set-up's media directory
		video, err := assets.Media("vtest_h264.mp4")
		if err != nil {
			return err
		}
		cfg.CameraSources.FileDirs = append(cfg.CameraSources.FileDirs, filepath.Dir(video))
	}
	if k := c.String("kafka"); k != "" {
		brokers, err := kafkaclient.ParseBrokers(k)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--kafka: %v", err), 2)
		}
		cfg.Kafka = brokers
	}
	if c.Duration("duration") < 0 {
		return cli.Exit("--duration must not be negative", 2)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if d := c.Duration("duration"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}

	w := c.App.Writer
	fmt.Fprintf(w, "diplip: starting services (state in %s)\n", cfg.StateDir)
	t0 := time.Now()
	err = runNode(ctx, cfg, func(ctx context.Context, n *node.Node) error {
		kafkaKind := "managed local broker"
		if !n.ManagedKafka() {
			kafkaKind = "external cluster"
		}
		fmt.Fprintf(w, "diplip: up in %.1fs\n", time.Since(t0).Seconds())
		fmt.Fprintf(w, "  ui        %s/\n", n.URL())
		fmt.Fprintf(w, "  gateway   %s  (health: %s/readyz, metrics: %s/metrics)\n", n.URL(), n.URL(), n.URL())
		fmt.Fprintf(w, "  registry  %s/v2/\n", n.URL())
		fmt.Fprintf(w, "  nats      %s\n", n.NATSURL())
		fmt.Fprintf(w, "  kafka     %v (%s)\n", n.Brokers(), kafkaKind)
		if cfg.Token == "" {
			fmt.Fprintln(w, "  auth      none: the gateway accepts requests without a token (set --token to require one)")
		} else {
			fmt.Fprintln(w, "  auth      token required on /v1, /v2, /metrics and NATS")
		}
		fmt.Fprintln(w, "diplip: press Ctrl-C to stop")
		if c.Bool("demo") {
			if err := runDemo(ctx, w, n, cfg.Token); err != nil {
				return err
			}
		}
		<-ctx.Done()
		fmt.Fprintln(w, "diplip: stopping (gateway, runners, kafka, registry, nats)")
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "diplip: stopped")
	return nil
}
