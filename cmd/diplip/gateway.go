package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/node"
)

func gatewayCommand() *cli.Command {
	return &cli.Command{
		Name:  "gateway",
		Usage: "run only the gateway (API, registry, autoscaler) against an existing NATS and Kafka",
		UsageText: "diplip gateway --nats URL --kafka HOST:PORT,... [--listen ADDR] [--state-dir DIR] [--token T]\n\n" +
			"The split deployment for several machines: NATS (with JetStream) and Kafka run elsewhere, runners\n" +
			"are started by hand (`diplip runner --nats URL`) on the machines that have the cores or GPUs.\n" +
			"The state dir holds the embedded registry; control-plane state lives in NATS.\n\n" +
			"Example:\n   diplip gateway --nats nats://nats1:4222 --kafka kafka1:9092,kafka2:9092 --listen 0.0.0.0:8080 --token $T",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "nats", Required: true, EnvVars: []string{"DIPLIP_NATS"}, Usage: "the NATS server (JetStream enabled)"},
			&cli.StringFlag{Name: "kafka", Required: true, EnvVars: []string{"DIPLIP_KAFKA"}, Usage: "the Kafka cluster (host:port,...)"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", EnvVars: []string{"DIPLIP_LISTEN"}, Usage: "the gateway's address"},
			&cli.StringFlag{Name: "state-dir", Value: defaultStateDir(), EnvVars: []string{"DIPLIP_STATE_DIR"}, Usage: "where the registry keeps images"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"DIPLIP_TOKEN"}, Usage: "require this token on the API, the registry and NATS"},
			&cli.DurationFlag{Name: "idle-timeout", Value: 30 * time.Second, Usage: "an idle deployment scales to its min after this long"},
			&cli.IntFlag{Name: "control-plane-replicas", EnvVars: []string{"DIPLIP_CONTROL_PLANE_REPLICAS"},
				Usage: "JetStream replicas of the control-plane buckets on a NATS cluster, e.g. 3 (default: buckets that exist keep theirs, new ones get 1)"},
		}, exposureFlags()...),
		Action: func(c *cli.Context) error {
			brokers, err := kafkaclient.ParseBrokers(c.String("kafka"))
			if err != nil {
				return cli.Exit("--kafka: "+err.Error(), exitUsage)
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if r := c.Int("control-plane-replicas"); r < 0 || r > 5 {
				return cli.Exit(fmt.Sprintf("--control-plane-replicas %d: want 1 to 5", r), exitUsage)
			}
			w := c.App.Writer
			cfg := node.Config{StateDir: c.String("state-dir"), Listen: c.String("listen"), NATSURL: c.String("nats"),
				Kafka: brokers, Token: c.String("token"), IdleTimeout: c.Duration("idle-timeout"), Logger: logger, OpenSource: openVideo,
				ControlPlaneReplicas: c.Int("control-plane-replicas")}
			applyExposure(c, &cfg)
			err = runNode(ctx, cfg, func(ctx context.Context, n *node.Node) error {
				fmt.Fprintf(w, "diplip gateway: %s (registry %s/v2/)\n  nats   %s\n  kafka  %v\n  runners: start them with: diplip runner --nats %s\n",
					n.URL(), n.URL(), n.NATSURL(), n.Brokers(), n.NATSURL())
				<-ctx.Done()
				return nil
			})
			if err != nil {
				return cli.Exit(err.Error(), exitFailed)
			}
			fmt.Fprintln(w, "diplip gateway: stopped")
			return nil
		},
	}
}
