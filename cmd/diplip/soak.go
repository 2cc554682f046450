package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/bench"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/registry"
)

func soakCommand() *cli.Command {
	return &cli.Command{
		Name:  "soak",
		Usage: "run diplip up under a steady load for a long time and check that nothing grows",
		UsageText: "diplip soak [--duration D] [--interval D] [--cameras N] [--fps F] [--out DIR]\n\n" +
			"Starts `diplip up` as a child process (its own state directory, a free port, a managed\n" +
			"Kafka broker), deploys the YOLOX-Nano example with tracking (min = max = 1 runner), adds\n" +
			"N pulled cameras looping the sample video and a counting line on one of them, and samples\n" +
			"RSS, open descriptors and goroutines of up, the runner and the broker JVM every interval.\n" +
			"At the end it prints each process's slope per hour (least squares over the samples after\n" +
			"the first 5 minutes, or the first sixth of a shorter run) and frames in against results\n" +
			"out, and exits 1 when a frame has no result or a slope misses its target.\n\n" +
			"Examples:\n   diplip soak                  # 30 minutes\n   diplip soak --duration 3m",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "duration", Value: 30 * time.Minute, Usage: "how long the cameras run"},
			&cli.DurationFlag{Name: "interval", Value: 30 * time.Second, Usage: "time between samples"},
			&cli.IntFlag{Name: "cameras", Value: 4, Usage: "pulled cameras looping the sample video"},
			&cli.Float64Flag{Name: "fps", Value: 10, Usage: "each camera's frame rate"},
			&cli.StringFlag{Name: "out", Usage: "results directory (default bench-results/soak-TIMESTAMP)"},
		},
		Action: runSoak,
	}
}

func runSoak(c *cli.Context) error {
	if c.Duration("duration") <= 0 || c.Duration("interval") <= 0 || c.Int("cameras") < 1 || c.Float64("fps") <= 0 {
		return cli.Exit("--duration, --interval, --cameras and --fps must be positive", exitUsage)
	}
	out := c.String("out")
	if out == "" {
		out = filepath.Join("bench-results", "soak-"+time.Now().Format("20060102-150405"))
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	video, err := assets.Media("vtest_h264.mp4")
	if err != nil {
		return err
	}
	dir, err := assets.Example("yolox-nano")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := bench.SoakConfig{Exe: exe, Duration: c.Duration("duration"), Interval: c.Duration("interval"),
		Cameras: c.Int("cameras"), FPS: c.Float64("fps"), Video: video, Out: out, Progress: c.App.ErrWriter,
		Push: func(ctx context.Context, addr string) (string, error) {
			img, _, err := registry.Build(dir, checkWithONNXRuntime)
			if err != nil {
				return "", err
			}
			ref, err := registry.ParseReference(addr+"/fn/yolox-nano:soak", false)
			if err != nil {
				return "", err
			}
			if _, err := registry.Push(ctx, img, ref, nil); err != nil {
				return "", err
			}
			return ref.String(), nil
		}}
	rep, err := bench.RunSoak(ctx, cfg)
	if err != nil {
		return cli.Exit(fmt.Sprintf("soak: %v (samples so far in %s)", err, out), exitFailed)
	}
	fmt.Fprint(c.App.Writer, "\n"+bench.SoakText(rep))
	fmt.Fprintf(c.App.Writer, "(samples and summary in %s)\n", out)
	if len(rep.Misses) > 0 {
		return cli.Exit(fmt.Sprintf("soak: %d targets missed", len(rep.Misses)), exitFailed)
	}
	return nil
}
