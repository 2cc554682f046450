package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/wire"
)

func resultsCommand() *cli.Command {
	return &cli.Command{
		Name:      "results",
		Usage:     "show a stream's results, or a second stage's (--after): the latest ones, and new ones live with --follow",
		ArgsUsage: "STREAM",
		UsageText: "diplip results STREAM [--after FIRST [--fn FUNCTION]] [--last N] [--follow] [-o json]\n\n" +
			"Results come from the stream's durable results topic, then live over NATS.\n" +
			"With --after they are the enriched results of the second stage that runs after FIRST\n" +
			"(its own results topic, then its own live subject): --fn names it when several do.\n" +
			"With -o json each result is one JSON line (NDJSON).\n\n" +
			"Examples:\n   diplip results lobby --follow\n" +
			"   diplip results lobby --after yolox-nano --fn person-reid --last 5 -o json",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "last", Value: 10, Usage: "how many past results to show first"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep showing new results until interrupted"},
			&cli.StringFlag{Name: "after", Usage: "a second stage's results: the function it runs after (its first stage)"},
			&cli.StringFlag{Name: "fn", Aliases: []string{"function"}, Usage: "with --after: the second stage's function (needed when several run after FIRST)"},
		}, globalFlags...),
		Action: gatewayAction("stream name", func(c *cli.Context, cl *apiclient.Client, stream string) error {
			if c.String("fn") != "" && c.String("after") == "" {
				return cli.Exit(fmt.Sprintf("--fn %s: name its first stage with --after FIRST (see diplip fn ls); a stream's own results are its primaries'", c.String("fn")), exitUsage)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			enc := json.NewEncoder(c.App.Writer)
			each := func(r api.Result) error {
				if c.String("output") == "json" {
					return enc.Encode(r)
				}
				_, err := fmt.Fprintln(c.App.Writer, resultLine(r))
				return err
			}
			if first := c.String("after"); first != "" {
				return cl.ResultsAfter(ctx, stream, first, c.String("fn"), c.Int("last"), c.Bool("follow"), each)
			}
			return cl.Results(ctx, stream, c.Int("last"), c.Bool("follow"), each)
		}),
	}
}

// resultLine is one result for a terminal.
func resultLine(r api.Result) string {
	dets := make([]wire.Detection, len(r.Detections))
	for i, d := range r.Detections {
		dets[i] = wire.Detection{ClassID: d.ClassID, Label: d.Label}
	}
	what := wire.Summarize(dets)
	if r.Status != api.StatusOK {
		what = r.Status + ": " + r.Error
	}
	if len(r.Stages) > 1 { // a chain's enriched result: what the second stage added
		var embedded, classified int
		for _, d := range r.Detections {
			embedded, classified = embedded+min(len(d.Embedding), 1), classified+min(len(d.Labels), 1)
		}
		what += fmt.Sprintf(" · after %s: %d embedded, %d classified", r.Stages[0].Function, embedded, classified)
	}
	line := fmt.Sprintf("%s  %-10s #%-6d %-8s %6.1f ms  %s", r.CaptureTime.Local().Format("15:04:05.000"), r.Camera,
		r.Seq%1_000_000, r.Function, r.Timings.EndToEnd, what)
	for _, e := range r.Events { // a tracking deployment's zone events, e.g. "walkway: person #12 crossed in"
		label := e.Label
		if label == "" {
			label = fmt.Sprintf("class %d", e.ClassID)
		}
		line += fmt.Sprintf("\n    %s: %s #%d %s %s", e.Zone, label, e.TrackID, e.Kind, e.Direction)
	}
	if len(r.Events) > 0 {
		var counts []string
		for _, c := range r.Counts {
			if c.In+c.Out > 0 {
				counts = append(counts, fmt.Sprintf("%s %s in %d out %d", c.Zone, c.Label, c.In, c.Out))
			} else {
				counts = append(counts, fmt.Sprintf("%s %s inside %d", c.Zone, c.Label, c.Inside))
			}
		}
		line += "\n    counts: " + strings.Join(counts, "; ")
	}
	return line
}

func resourcesCommand() *cli.Command {
	return &cli.Command{
		Name:      "resources",
		Usage:     "show the runners (CPUs, memory, devices) and what each runs: DiPLIP's step 1",
		UsageText: "diplip resources [-o json]\n\nExample:\n   diplip resources --gateway http://gw:8080",
		Flags:     globalFlags,
		Action: show((*apiclient.Client).Resources, func(w *tabwriter.Writer, res api.Resources) {
			fmt.Fprintln(w, "RUNNER\tHOST\tCPUS\tMEMORY\tDEVICES\tGPUS\tSTATE\tDEPLOYMENT\tPARTITIONS\tBATCH\tFPS")
			for _, r := range res.Runners {
				var gpus []string
				for _, g := range r.GPUs {
					gpus = append(gpus, fmt.Sprintf("%d:%s %s", g.Index, g.Name, humanBytes(g.MemoryMB<<20)))
				}
				if len(gpus) == 0 {
					gpus = []string{"-"}
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%v\t%s\t%.1f\n", r.ID, r.Host, r.CPUs, humanBytes(r.MemoryMB<<20),
					fmt.Sprint(r.Devices), strings.Join(gpus, ","), r.State, r.Deployment, r.Partitions, r.BatchMode, r.RateFPS)
			}
			if len(res.Runners) == 0 {
				fmt.Fprintln(w, "(no runners: deployments wake them on the first frame)")
			}
			fmt.Fprintln(w, "\nDEPLOYMENT\tLAG\tRUNNERS\tDESIRED\tFPS\tCOLD STARTS\tLAST ERROR")
			for _, d := range res.Deployments {
				key := d.Key
				if fs, first, chain := strings.Cut(key, ".after."); chain { // FUNCTION.STREAM.after.FIRST: a second stage
					fn, _, _ := strings.Cut(fs, ".")
					key += " (" + first + " → " + fn + ")"
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%.1f\t%d\t%s\n", key, d.Lag, len(d.Runners), d.Desired, d.RateFPS, d.ColdStarts, d.LastError)
			}
		}),
	}
}
