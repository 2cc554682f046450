package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
)

func streamCommand() *cli.Command {
	return &cli.Command{
		Name:  "stream",
		Usage: "manage streams: the Kafka topics cameras write frames to",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a stream (a frames topic and a results topic with P partitions)",
				ArgsUsage: "NAME",
				UsageText: "diplip stream create NAME --partitions P [--replication R] [--retention 1h] [--retention-bytes N]\n\n" +
					"Partitions bound how many runners can share the stream.\n\n" +
					"Example:\n   diplip stream create lobby --partitions 4 --retention 1h",
				Flags: append([]cli.Flag{
					&cli.IntFlag{Name: "partitions", Aliases: []string{"p"}, Value: 1, Usage: "Kafka partitions"},
					&cli.IntFlag{Name: "replication", Usage: "replication factor (default: min(3, brokers))"},
					&cli.DurationFlag{Name: "retention", Usage: "how long frames are kept (default: the broker's)"},
					&cli.Int64Flag{Name: "retention-bytes", Usage: "bytes kept per partition (default: the broker's)"},
				}, globalFlags...),
				Action: gatewayAction("stream name", func(c *cli.Context, cl *apiclient.Client, name string) error {
					st, err := cl.CreateStream(c.Context, api.StreamRequest{
						Name: name, Partitions: int32(c.Int("partitions")), Replication: int16(c.Int("replication")),
						RetentionMs: c.Duration("retention").Milliseconds(), RetentionBytes: c.Int64("retention-bytes"),
					})
					if err != nil {
						return err
					}
					return render(c, st, func(w *tabwriter.Writer) {
						fmt.Fprintf(w, "created stream %s: topic %s, %d partitions, replication %d\n", st.Name, st.Topic, st.Partitions, st.Replication)
					})
				}),
			},
			{
				Name:      "ls",
				Usage:     "list streams, with the time window of frames each still holds",
				UsageText: "diplip stream ls [-o json]\n\nExample:\n   diplip stream ls -o json",
				Flags:     globalFlags,
				Action: show((*apiclient.Client).Streams, func(w *tabwriter.Writer, sts []api.StreamStatus) {
					fmt.Fprintln(w, "NAME\tPARTITIONS\tREPLICATION\tRETENTION\tFRAMES\tWINDOW\tLAG\tTOPIC")
					for _, s := range sts {
						ret := "broker default"
						if s.RetentionMs > 0 {
							ret = (time.Duration(s.RetentionMs) * time.Millisecond).String()
						}
						var lags []string
						for _, k := range slices.Sorted(maps.Keys(s.Lag)) {
							lags = append(lags, fmt.Sprintf("%s=%d", k, s.Lag[k]))
						}
						if len(lags) == 0 {
							lags = []string{"-"}
						}
						window := "-"
						if !s.FirstFrame.IsZero() {
							window = s.FirstFrame.Local().Format(time.DateTime) + " → " + s.LastFrame.Local().Format(time.TimeOnly)
							if s.FirstFrame.YearDay() != s.LastFrame.YearDay() || s.FirstFrame.Year() != s.LastFrame.Year() {
								window = s.FirstFrame.Local().Format(time.DateTime) + " → " + s.LastFrame.Local().Format(time.DateTime)
							}
						}
						fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Partitions, s.Replication, ret, s.Frames,
							window, strings.Join(lags, ","), s.Topic)
					}
				}),
			},
			{
				Name:      "rm",
				Usage:     "delete a stream and its topics (no function may be deployed on it)",
				ArgsUsage: "NAME",
				UsageText: "diplip stream rm NAME\n\nExample:\n   diplip stream rm lobby",
				Flags:     globalFlags,
				Action: gatewayAction("stream name", func(c *cli.Context, cl *apiclient.Client, name string) error {
					if err := cl.DeleteStream(c.Context, name); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "deleted stream %s\n", name)
					return nil
				}),
			},
		},
	}
}
