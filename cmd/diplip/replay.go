package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "run a function image over the frames a stream still holds, next to nothing live",
		ArgsUsage: "STREAM",
		UsageText: "diplip replay STREAM --fn REF [--from TIME] [--to TIME] [--camera ID ...] [--max N] [--name NAME] [--detach]\n" +
			"diplip replay STREAM --fn REF --after FIRST [--classes C,...] [--min-size PX] [--max-per-frame N] [--from TIME] [--to TIME] ...\n" +
			"diplip replay ls | rm NAME\n\n" +
			"The replay has its own consumer group, starting at --from (offset for time; default the earliest\n" +
			"retained frame) and ending at --to (default: the stream's end now), and its own results topic,\n" +
			"diplip.results.STREAM.replay.NAME, each result tagged with the image digest. It runs as fast as\n" +
			"its runners allow and scales to zero when done. Compare it with: diplip fn diff STREAM --replay NAME\n\n" +
			"With --after the image is replayed as a second stage over FIRST's stored results (the stream's results\n" +
			"topic, whose records --from and --to then bound), not over the frames: FIRST is not run again, and the\n" +
			"second stage sees the detections (and track ids) the live one saw. Its selection is --classes/--min-size/\n" +
			"--max-per-frame, or else the live second stage's. To replay FIRST itself, replay it without --after.\n" +
			"fn diff compares it with the live second stage: cosine similarity of embeddings, or top-1 label agreement.\n\n" +
			"Example:\n   diplip replay demo --fn 127.0.0.1:8080/fn/yolox-nano:v2 --from 2026-11-26T10:00:00Z --name v2-morning\n" +
			"   diplip replay demo --fn 127.0.0.1:8080/fn/person-reid:v2 --after yolox-nano --name reid-v2",
		Flags: append([]cli.Flag{
			// Not Required: urfave/cli would then demand it of `replay ls` and `replay rm` too.
			&cli.StringFlag{Name: "fn", Usage: "the function image to replay (required)"},
			&cli.TimestampFlag{Name: "from", Layout: time.RFC3339, Usage: "start at the first frame stored at or after this time (RFC 3339); default: the earliest retained"},
			&cli.TimestampFlag{Name: "to", Layout: time.RFC3339, Usage: "end before the first frame stored at or after this time; default: the stream's end now"},
			&cli.StringSliceFlag{Name: "camera", Usage: "only these cameras' frames (repeatable)"},
			&cli.IntFlag{Name: "max", Value: 1, Usage: "most runners"},
			&cli.StringFlag{Name: "name", Usage: "the replay's name (default FUNCTION-MMDD-HHMMSS)"},
			&cli.BoolFlag{Name: "detach", Usage: "start it and return; follow with: diplip replay ls"},
			&cli.BoolFlag{Name: "insecure", Usage: "allow plain HTTP to a registry that is not on loopback"},
			&cli.StringFlag{Name: "after", Usage: "replay the image as a second stage over the stored results of this function (deployed on the stream)"},
			&cli.StringSliceFlag{Name: "classes", Usage: "--after: only detections with these labels (default: the live second stage's selection, else all)"},
			&cli.IntFlag{Name: "min-size", Usage: "--after: skip detections whose box is less than this many pixels high"},
			&cli.IntFlag{Name: "max-per-frame", Usage: "--after: at most this many detections per frame, the highest scoring first"},
		}, globalFlags...),
		Action: gatewayAction("stream name", replayStart),
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Usage:     "list replays with their progress",
				UsageText: "diplip replay ls [-o json]\n\nExample:\n   diplip replay ls",
				Flags:     globalFlags,
				Action: show((*apiclient.Client).Replays, func(w *tabwriter.Writer, rs []api.Replay) {
					fmt.Fprintln(w, "NAME\tSTREAM\tFUNCTION\tDIGEST\tSTATE\tFRAMES\tRESULTS TOPIC")
					for _, r := range rs {
						fn := r.Function
						if r.After != "" {
							fn = r.After + " → " + fn
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", r.Name, r.Stream, fn, shortDigest(r.Digest),
							r.State, r.Processed, r.Total, r.ResultsTopic)
					}
				}),
			},
			{
				Name:      "rm",
				Usage:     "stop a replay and remove it with its results topic and consumer group",
				ArgsUsage: "NAME",
				UsageText: "diplip replay rm NAME\n\nExample:\n   diplip replay rm v2-morning",
				Flags:     globalFlags,
				Action: gatewayAction("replay name", func(c *cli.Context, cl *apiclient.Client, name string) error {
					if err := cl.RemoveReplay(c.Context, name); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed replay %s\n", name)
					return nil
				}),
			},
		},
	}
}

// replaySummary is what `replay -o json` prints once the replay is done (or detached).
type replaySummary struct {
	api.Replay
	ElapsedS float64 `json:"elapsed_s"`
	FPS      float64 `json:"fps"`
}

func replayStart(c *cli.Context, cl *apiclient.Client, stream string) error {
	if c.String("fn") == "" {
		return cli.Exit("--fn REF: required (the function image to replay, e.g. 127.0.0.1:8080/fn/yolox-nano:v2)", exitUsage)
	}
	req := api.ReplayRequest{Stream: stream, Ref: c.String("fn"), Insecure: c.Bool("insecure"), Name: c.String("name"),
		Cameras: c.StringSlice("camera"), Max: c.Int("max"), After: c.String("after"), Classes: c.StringSlice("classes"),
		MinSize: c.Int("min-size"), MaxPerFrame: c.Int("max-per-frame")}
	if t := c.Timestamp("from"); t != nil {
		req.From = t.UTC().Format(time.RFC3339)
	}
	if t := c.Timestamp("to"); t != nil {
		req.To = t.UTC().Format(time.RFC3339)
	}
	if req.From != "" && req.To != "" && req.From >= req.To {
		return cli.Exit(fmt.Sprintf("--from %s is not before --to %s", req.From, req.To), exitUsage)
	}
	t0 := time.Now()
	r, err := cl.StartReplay(c.Context, req)
	if err != nil {
		return err
	}
	if !c.Bool("detach") {
		if r, err = waitReplay(c, cl, r); err != nil {
			return err
		}
	}
	sum := replaySummary{Replay: r, ElapsedS: time.Since(t0).Seconds()}
	if sum.ElapsedS > 0 {
		sum.FPS = float64(r.Processed) / sum.ElapsedS
	}
	return render(c, sum, func(w *tabwriter.Writer) {
		if r.State != api.ReplayDone {
			fmt.Fprintf(w, "replay %s of %s on %s started: %d frames\nresults\t%s\nfollow\tdiplip replay ls\n", r.Name, r.Function, r.Stream, r.Total, r.ResultsTopic)
			return
		}
		fmt.Fprintf(w, "replay %s of %s on %s done: %d frames in %.1f s (%.1f fps)\nresults\t%s\ncompare\tdiplip fn diff %s --replay %s\n",
			r.Name, r.Function, r.Stream, r.Total, sum.ElapsedS, sum.FPS, r.ResultsTopic, r.Stream, r.Name)
	})
}

// waitReplay polls the replay until it is done, with a progress bar (frames done / total,
// fps, ETA) on a terminal. Ctrl-C stops waiting, not the replay.
func waitReplay(c *cli.Context, cl *apiclient.Client, r api.Replay) (api.Replay, error) {
	var bar *progressbar.ProgressBar
	if interactive() {
		bar = progressbar.NewOptions64(max(r.Total, 1), progressbar.OptionSetDescription("replay "+r.Name),
			progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("frames"), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond))
		defer func() { _ = bar.Finish(); fmt.Fprintln(os.Stderr) }()
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for r.State != api.ReplayDone {
		select {
		case <-c.Context.Done():
			return r, cli.Exit(fmt.Sprintf("stopped waiting; replay %s goes on (see: diplip replay ls; stop it with: diplip replay rm %s)", r.Name, r.Name), exitFailed)
		case <-t.C:
		}
		var err error
		if r, err = cl.Replay(c.Context, r.Name); err != nil {
			return r, err
		}
		if bar != nil {
			_ = bar.Set64(r.Processed)
		}
	}
	return r, nil
}

func shortDigest(d string) string {
	if i := strings.LastIndex(d, "@sha256:"); i >= 0 && len(d) > i+20 {
		return d[i+1 : i+20]
	}
	return d
}
