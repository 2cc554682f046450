package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
	"github.com/diplip/diplip/runner"
)

func runnerCommand() *cli.Command {
	return &cli.Command{
		Name:  "runner",
		Usage: "run a runner: it announces itself over NATS and runs the functions the gateway activates on it",
		UsageText: "diplip runner --nats URL [--id ID] [--cache DIR] [--threads N]\n\n" +
			"An idle runner holds no model and no Kafka group membership; the gateway's autoscaler\n" +
			"activates it when a deployment has work. `diplip up` starts runners itself; start them by hand\n" +
			"on other machines to add capacity.\n\n" +
			"Example (a second machine):\n   diplip runner --nats nats://gateway-host:4222",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "nats", Required: true, EnvVars: []string{"DIPLIP_NATS"}, Usage: "the control plane's NATS URL"},
			&cli.StringFlag{Name: "id", Usage: "this runner's id (default: HOST-PID)"},
			&cli.StringFlag{Name: "cache", Value: filepath.Join(defaultStateDir(), "cache"), Usage: "the function image cache"},
			&cli.IntFlag{Name: "lanes", Value: onnx.DefaultLanes(runtime.NumCPU()), Usage: "inferences run at once (each decodes and lays out its frames while the others infer); a deployment's lanes override it"},
			&cli.IntFlag{Name: "threads", Usage: "ONNX Runtime intra-op threads per lane (default: the CPUs divided by the lanes)"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"DIPLIP_TOKEN"}, Usage: "the gateway's token (for NATS and its registry)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "metrics-listen", Value: "127.0.0.1:0", Usage: "where /metrics (Prometheus) is served; empty: nowhere"},
			&cli.BoolFlag{Name: "pprof", EnvVars: []string{"DIPLIP_RUNNER_PPROF"}, Usage: "also serve Go's profiles under /debug/pprof/ on the metrics listener (e.g. go tool pprof http://ADDR/debug/pprof/profile)"},
		},
		Action: runRunner,
	}
}

func runRunner(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return cli.Exit(fmt.Sprintf("--log-level %q: want debug, info, warn or error", c.String("log-level")), exitUsage)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	natsOpts := []nats.Option{nats.Name("diplip-runner"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	if t := c.String("token"); t != "" {
		natsOpts = append(natsOpts, nats.Token(t))
	}
	nc, err := nats.Connect(c.String("nats"), natsOpts...)
	if err != nil {
		return cli.Exit(fmt.Sprintf("connecting to NATS at %s: %v", c.String("nats"), err), exitFailed)
	}
	defer nc.Close()
	cache := &registry.Cache{Dir: c.String("cache")}
	threads, lanes := c.Int("threads"), c.Int("lanes")
	if lanes < 1 || lanes > 64 || threads < 0 {
		return cli.Exit(fmt.Sprintf("--lanes %d, --threads %d: want 1..64 lanes and threads ≥ 0 (0: CPUs / lanes)", lanes, threads), exitUsage)
	}
	load := func(dir string, device wire.Device, lanes int) (runner.Model, bool, func() error, error) {
		fn, err := pipeline.Load(dir, pipeline.Options{Device: string(device), IntraOpThreads: threads, Lanes: lanes})
		if errors.Is(err, onnx.ErrDeviceUnavailable) {
			return nil, false, nil, fmt.Errorf("%w: %w", runner.ErrDeviceUnavailable, err)
		}
		if err != nil {
			return nil, false, nil, err
		}
		return fn, fn.DynamicBatch, fn.Close, nil
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, gctx := errgroup.WithContext(ctx)
	metricsURL, err := serveMetrics(gctx, g, c.String("metrics-listen"), c.Bool("pprof"))
	if err != nil {
		return err
	}
	// Probed from files, without loading ONNX Runtime: a runner that is never activated
	// stays small. Loading a model on cuda:N is the real check.
	var devices []wire.Device
	for _, d := range onnx.ProbeDevices() {
		devices = append(devices, wire.Device(d))
	}
	providers := []string{"CPUExecutionProvider"}
	if len(devices) > 1 {
		providers = append(providers, "CUDAExecutionProvider")
	}
	zones, err := controlplane.OpenZones(ctx, nc)
	if err != nil {
		return cli.Exit(fmt.Sprintf("the control plane's zones at %s: %v", c.String("nats"), err), exitFailed)
	}
	zoneView := zones.View()
	g.Go(func() error { return zoneView.Run(gctx) })
	agent, err := runner.NewAgent(runner.AgentConfig{ID: c.String("id"), NATS: nc, Cache: cache, Load: load, Zones: zoneView,
		Devices: devices, Providers: providers, GPUs: runner.NvidiaGPUs(), Lanes: lanes, Token: c.String("token"), Logger: logger, MetricsURL: metricsURL})
	if err != nil {
		return err
	}
	logger.Info("runner ready", "runner", agent.ID(), "nats", c.String("nats"), "metrics", metricsURL)
	g.Go(func() error { return agent.Run(gctx) })
	if err := g.Wait(); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	logger.Info("runner stopped", "runner", agent.ID())
	return nil
}
