package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/sinks"
)

func sinkCommand() *cli.Command {
	nameAction := func(act func(c *cli.Context, cl *apiclient.Client, name string) error) cli.ActionFunc {
		return gatewayAction("sink name", act)
	}
	return &cli.Command{
		Name:  "sink",
		Usage: "send results' events to webhooks and MQTT brokers, at least once",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a sink: a stream's events to a webhook or an MQTT broker",
				ArgsUsage: "NAME",
				UsageText: "diplip sink add NAME --stream S [--function F] (--webhook URL | --mqtt mqtt://HOST:PORT) [filters]\n\n" +
					"Events: crossed, entered, left (the tracker's zone events) and detected (a result with\n" +
					"detections, one event per class). A webhook gets each as a JSON POST with the headers\n" +
					"Idempotency-Key (the event's id) and, with --secret-env, X-Diplip-Signature:\n" +
					"sha256=HEX(HMAC-SHA256(secret, X-Diplip-Timestamp + \".\" + body)). MQTT gets them at\n" +
					"QoS 1 on PREFIX/STREAM/CAMERA/events, and retained counts on\n" +
					"PREFIX/STREAM/CAMERA/ZONE/CLASS/count. See the README's Sinks section.\n\n" +
					"Examples:\n   DIPLIP_HOOK_SECRET=... diplip sink add alerts --stream demo --webhook https://example.com/hook \\\n" +
					"      --secret-env DIPLIP_HOOK_SECRET --events crossed --zones door --cooldown 5s\n" +
					"   diplip sink add home --stream demo --mqtt mqtt://127.0.0.1:1883 --classes person",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "stream", Required: true, Usage: "the stream whose results it reads"},
					&cli.StringFlag{Name: "function", Usage: "only this function's results"},
					&cli.StringFlag{Name: "webhook", Usage: "POST events to this http(s) URL"},
					&cli.StringFlag{Name: "secret-env", Usage: "sign webhook requests with the value of this environment variable (of the process running the sink)"},
					&cli.StringSliceFlag{Name: "header", Usage: "K=V sent with every webhook request (repeatable)"},
					&cli.StringFlag{Name: "mqtt", Usage: "publish events to this broker: mqtt://HOST:PORT"},
					&cli.StringFlag{Name: "topic-prefix", Usage: "first level of MQTT topics (default diplip)"},
					&cli.StringFlag{Name: "username", Usage: "MQTT user name"},
					&cli.StringFlag{Name: "password-env", Usage: "MQTT password: the value of this environment variable"},
					&cli.StringFlag{Name: "events", Usage: "kinds to send, comma-separated: crossed,entered,left,detected (default all)"},
					&cli.StringFlag{Name: "classes", Usage: "only these classes (labels), comma-separated"},
					&cli.StringFlag{Name: "cameras", Usage: "only these cameras, comma-separated"},
					&cli.StringFlag{Name: "zones", Usage: "only these zones, comma-separated"},
					&cli.Float64Flag{Name: "min-score", Usage: "only detections scoring at least this (0 to 1)"},
					&cli.DurationFlag{Name: "cooldown", Usage: "at most one event per camera and zone (or class) in this long"},
					&cli.IntFlag{Name: "max-attempts", Usage: "attempts before an event goes to the dead letters (default 10)"},
					&cli.DurationFlag{Name: "max-age", Usage: "time retrying one event before it goes to the dead letters (default 1h)"},
					&cli.BoolFlag{Name: "allow-link-local", Usage: "allow a target at a link-local or cloud metadata address"},
				}, globalFlags...),
				Action: nameAction(func(c *cli.Context, cl *apiclient.Client, name string) error {
					req := api.SinkRequest{Name: name, Stream: c.String("stream"), Function: c.String("function"),
						Webhook: c.String("webhook"), SecretEnv: c.String("secret-env"), MQTT: c.String("mqtt"),
						TopicPrefix: c.String("topic-prefix"), Username: c.String("username"), PasswordEnv: c.String("password-env"),
						Events: splitList(c.String("events")), Classes: splitList(c.String("classes")), Cameras: splitList(c.String("cameras")),
						Zones: splitList(c.String("zones")), MinScore: float32(c.Float64("min-score")), MaxAttempts: c.Int("max-attempts"),
						AllowLinkLocal: c.Bool("allow-link-local")}
					if d := c.Duration("cooldown"); d > 0 {
						req.Cooldown = d.String()
					}
					if d := c.Duration("max-age"); d > 0 {
						req.MaxAge = d.String()
					}
					for _, h := range c.StringSlice("header") {
						k, v, ok := strings.Cut(h, "=")
						if !ok || k == "" {
							return cli.Exit(fmt.Sprintf("--header %q: want NAME=VALUE", h), exitUsage)
						}
						if req.Headers == nil {
							req.Headers = map[string]string{}
						}
						req.Headers[k] = v
					}
					if (req.Webhook == "") == (req.MQTT == "") {
						return cli.Exit("give one target: --webhook URL or --mqtt mqtt://HOST:PORT", exitUsage)
					}
					s, err := cl.AddSink(c.Context, req)
					if err != nil {
						return err
					}
					return render(c, s, func(w *tabwriter.Writer) {
						fmt.Fprintf(w, "sink %s: stream %s → %s %s (test it with: diplip sink test %s)\n", s.Name, s.Stream, s.Target, s.URL, s.Name)
					})
				}),
			},
			{
				Name:      "ls",
				Usage:     "list sinks: state, delivered, failed, retrying, lag, last error (never secrets)",
				UsageText: "diplip sink ls [-o json]",
				Flags:     globalFlags,
				Action: show((*apiclient.Client).Sinks, func(w *tabwriter.Writer, ss []api.Sink) {
					fmt.Fprintln(w, "NAME\tSTREAM\tTARGET\tSTATE\tDELIVERED\tFAILED\tRETRYING\tDEAD\tLAG\tLAST ERROR")
					for _, s := range ss {
						st := s.Status
						fmt.Fprintf(w, "%s\t%s\t%s %s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Name, s.Stream, s.Target, s.URL, st.State,
							st.Delivered, st.Failed, st.Retrying, st.DeadLettered, st.Lag, st.LastError)
					}
				}),
			},
			{
				Name: "rm", Usage: "remove a sink, its consumer group and its dead letters", ArgsUsage: "NAME",
				UsageText: "diplip sink rm NAME", Flags: globalFlags,
				Action: nameAction(func(c *cli.Context, cl *apiclient.Client, name string) error {
					if err := cl.RemoveSink(c.Context, name); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "sink %s removed\n", name)
					return nil
				}),
			},
			{
				Name: "test", Usage: "send one sample event to a sink's target and print its answer", ArgsUsage: "NAME",
				UsageText: "diplip sink test NAME", Flags: globalFlags,
				Action: nameAction(func(c *cli.Context, cl *apiclient.Client, name string) error {
					r, err := cl.TestSink(c.Context, name)
					if err != nil {
						return err
					}
					if err := render(c, r, func(w *tabwriter.Writer) {
						fmt.Fprintf(w, "%s: %s (%.0f ms)\n", name, r.Answer, r.Millis)
					}); err != nil {
						return err
					}
					if !r.OK {
						return cli.Exit(fmt.Sprintf("sink %s: the target did not accept the sample event", name), exitFailed)
					}
					return nil
				}),
			},
			{
				Name: "dead", Usage: "list the events a sink gave up on", ArgsUsage: "NAME",
				UsageText: "diplip sink dead NAME [--limit N]",
				Flags:     append([]cli.Flag{&cli.IntFlag{Name: "limit", Value: 100, Usage: "the last N (0: all)"}}, globalFlags...),
				Action: nameAction(func(c *cli.Context, cl *apiclient.Client, name string) error {
					dl, err := cl.DeadLetters(c.Context, name, c.Int("limit"))
					if err != nil {
						return err
					}
					return render(c, dl, func(w *tabwriter.Writer) {
						fmt.Fprintln(w, "OFFSET\tEVENT\tATTEMPTS\tLAST ATTEMPT\tREASON")
						for _, d := range dl {
							fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\n", d.Offset, d.Event.ID, d.Attempts, d.LastAttempt.Format(time.RFC3339), d.Reason)
						}
					})
				}),
			},
			{
				Name: "replay-dead", Usage: "send a sink's dead letters (not yet replayed) again", ArgsUsage: "NAME",
				UsageText: "diplip sink replay-dead NAME", Flags: globalFlags,
				Action: nameAction(func(c *cli.Context, cl *apiclient.Client, name string) error {
					r, err := cl.ReplayDead(c.Context, name)
					if err != nil {
						return err
					}
					return render(c, r, func(w *tabwriter.Writer) {
						fmt.Fprintf(w, "%d delivered, %d dead again, %d left\n", r.Replayed, r.Failed, r.Remaining)
					})
				}),
			},
			sinkRunCommand(),
		},
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// sinkRunCommand runs the control plane's sinks as a role of its own: with several
// processes (and `diplip up`), each sink's consumer group shares the work.
func sinkRunCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the sinks in this process (a machine of its own; diplip up runs them too)",
		UsageText: "diplip sink run --nats URL --kafka HOST:PORT[,...] [--gateway-url URL]\n\n" +
			"Secrets (--secret-env, --password-env) are read from this process's environment.\n\n" +
			"Example:\n   diplip sink run --nats nats://gateway-host:4222 --kafka kafka-host:9092 --gateway-url http://gateway-host:8080",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "nats", Required: true, EnvVars: []string{"DIPLIP_NATS"}, Usage: "the control plane's NATS URL"},
			&cli.StringFlag{Name: "kafka", Required: true, EnvVars: []string{"DIPLIP_KAFKA"}, Usage: "Kafka bootstrap addresses"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"DIPLIP_TOKEN"}, Usage: "the control plane's token"},
			&cli.StringFlag{Name: "gateway-url", Usage: "the gateway's URL, which events name their snapshots by"},
			&cli.StringFlag{Name: "metrics-listen", Value: "127.0.0.1:0", Usage: "where /metrics (Prometheus) is served; empty: nowhere"},
		},
		Action: func(c *cli.Context) error {
			brokers, err := kafkaclient.ParseBrokers(c.String("kafka"))
			if err != nil {
				return cli.Exit(err.Error(), exitUsage)
			}
			opts := []nats.Option{nats.Name("diplip-sinks"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
			if t := c.String("token"); t != "" {
				opts = append(opts, nats.Token(t))
			}
			nc, err := nats.Connect(c.String("nats"), opts...)
			if err != nil {
				return cli.Exit(fmt.Sprintf("connecting to NATS at %s: %v", c.String("nats"), err), exitFailed)
			}
			defer nc.Close()
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			store, err := controlplane.OpenWith(ctx, nc, controlplane.Options{})
			if err != nil {
				return cli.Exit(err.Error(), exitFailed)
			}
			bucket, err := controlplane.OpenSinks(ctx, nc, controlplane.Options{})
			if err != nil {
				return cli.Exit(err.Error(), exitFailed)
			}
			zones, err := controlplane.OpenZones(ctx, nc)
			if err != nil {
				return cli.Exit(err.Error(), exitFailed)
			}
			kc := kafkaclient.New(brokers, "diplip-sinks")
			defer kc.Close()
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			m, err := sinks.NewManager(sinks.ManagerConfig{Sinks: bucket, Store: store, Zones: zones, Kafka: kc,
				Gateway: c.String("gateway-url"), Logger: logger})
			if err != nil {
				return cli.Exit(err.Error(), exitFailed)
			}
			g, gctx := errgroup.WithContext(ctx)
			metricsURL, err := serveMetrics(gctx, g, c.String("metrics-listen"), false)
			if err != nil {
				return err
			}
			g.Go(func() error { return m.Run(gctx) })
			logger.Info("sinks running", "nats", c.String("nats"), "kafka", c.String("kafka"), "metrics", metricsURL)
			return g.Wait()
		},
	}
}
