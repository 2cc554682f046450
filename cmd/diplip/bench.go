package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/bench"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/node"
	"github.com/diplip/diplip/registry"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure the platform against the machine's limit: direct loop, pipeline, cold start, scaling, ingest",
		UsageText: "diplip bench [--quick | --sweep FILE | --full] [--out DIR] [--kafka HOST:PORT,...]\n\n" +
			"Starts its own diplip on this machine (a managed Kafka unless --kafka), runs the sweep and\n" +
			"writes results.csv, results.md, scaling.png and latency.png into --out. Ratios are measured\n" +
			"side by side in one run.\n\n" +
			"Examples:\n   diplip bench --quick\n   diplip bench --sweep bench/sweeps/full.yaml --out bench-results/full",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quick", Usage: "the quick sweep (under 3 minutes on 2 cores)"},
			&cli.BoolFlag{Name: "full", Usage: "the full sweep"},
			&cli.StringFlag{Name: "sweep", Usage: "a sweep file (see bench/sweeps)"},
			&cli.StringFlag{Name: "out", Usage: "results directory (default bench-results/TIMESTAMP)"},
			&cli.StringFlag{Name: "kafka", Usage: "an existing Kafka cluster instead of a managed broker"},
			&cli.StringFlag{Name: "int8-dir", Usage: "an INT8 copy of the sweep's function directory (yolox-nano unless its function says) for the limit-int8 and drain-int8 rows (sets the sweep's int8 and int8_dir)"},
		},
		Action: runBench,
	}
}

// errBenchDone ends the node once the bench has its rows.
var errBenchDone = errors.New("bench done")

func runBench(c *cli.Context) error {
	var sw *bench.Sweep
	var err error
	switch {
	case c.String("sweep") != "":
		f, ferr := os.Open(c.String("sweep"))
		if ferr != nil {
			return cli.Exit(ferr.Error(), exitUsage)
		}
		sw, err = bench.ParseSweep(f)
		f.Close()
	case c.Bool("full"):
		sw, err = bench.BuiltinSweep("full")
	default:
		sw, err = bench.BuiltinSweep("quick")
	}
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	if d := c.String("int8-dir"); d != "" {
		if !sw.Direct || sw.Drain == 0 {
			return cli.Exit("--int8-dir: the sweep has no limit and drain rows to measure INT8 against (direct: true, drain > 0)", exitUsage)
		}
		sw.INT8, sw.INT8Dir = true, d
	}
	out := c.String("out")
	if out == "" {
		out = filepath.Join("bench-results", time.Now().Format("20060102-150405")+"-"+sw.Name)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	state, err := os.MkdirTemp("", "diplip-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := node.Config{StateDir: state, Listen: "127.0.0.1:0", Logger: logger, RunnerCommand: []string{exe, "runner"},
		IdleTimeout: 60 * time.Second}
	if k := c.String("kafka"); k != "" {
		if cfg.Kafka, err = kafkaclient.ParseBrokers(k); err != nil {
			return cli.Exit("--kafka: "+err.Error(), exitUsage)
		}
	}
	w := c.App.ErrWriter
	fmt.Fprintf(w, "bench: sweep %q, results in %s\n", sw.Name, out)
	var rows []bench.Row
	var runErr error
	t0 := time.Now()
	err = runNode(ctx, cfg, func(ctx context.Context, n *node.Node) error {

		dir, err := assets.Example(sw.Function)
		if err != nil {
			return err
		}
		img, spec, err := registry.Build(dir, checkWithONNXRuntime)
		if err != nil {
			return err
		}
		ref, err := registry.ParseReference(n.Addr()+"/fn/"+spec.Name+":bench", false)
		if err != nil {
			return err
		}
		if _, err := registry.Push(ctx, img, ref, nil); err != nil {
			return err
		}
		p, err := assets.Media("vtest_10s.mjpeg")
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lib, err := assets.KafkaLibDir()
		if err != nil {
			return err
		}
		env := &bench.Env{Node: n, Ref: ref.String(), FunctionDir: dir, Frames: ingest.SplitJPEGs(raw), Media: p, KafkaLib: lib, Progress: w}
		rows, runErr = bench.Run(ctx, sw, env)
		return errBenchDone // stop the node
	})
	if err != nil && !errors.Is(err, errBenchDone) {
		return err
	}
	md := bench.Markdown(rows)
	fmt.Fprint(c.App.Writer, "\n"+md)
	fmt.Fprintf(c.App.Writer, "\n(%s, %d cores; %.0f s)\n", sw.Name, runtime.NumCPU(), time.Since(t0).Seconds())
	f, err := os.Create(filepath.Join(out, "results.csv"))
	if err != nil {
		return err
	}
	if err := bench.WriteCSV(f, rows); err != nil {
		return err
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := bench.PlotScaling(rows, filepath.Join(out, "scaling.png")); err != nil {
		return err
	}
	if err := bench.PlotLatency(rows, filepath.Join(out, "latency.png")); err != nil {
		return err
	}
	if runErr != nil {
		return cli.Exit(fmt.Sprintf("bench stopped early: %v (the rows above were measured)", runErr), exitFailed)
	}
	return nil
}
