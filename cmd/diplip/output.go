package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	apiclient "github.com/diplip/diplip/api/client"
)

// Global flags every command that talks to a gateway understands.
var globalFlags = []cli.Flag{
	&cli.StringFlag{Name: "gateway", Value: "http://127.0.0.1:8080", EnvVars: []string{"DIPLIP_GATEWAY"}, Usage: "the gateway's address"},
	&cli.StringFlag{Name: "token", EnvVars: []string{"DIPLIP_TOKEN"}, Usage: "the gateway's token, when it requires one"},
	&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json"},
}

// Exit codes scripts can rely on.
const (
	exitUsage    = 2 // bad flags or arguments
	exitNotFound = 3 // the named thing does not exist
	exitFailed   = 1 // anything else
)

func client(c *cli.Context) (*apiclient.Client, error) {
	cl, err := apiclient.New(c.String("gateway"), c.String("token"))
	if err != nil {
		return nil, cli.Exit(err.Error(), exitUsage)
	}
	return cl, nil
}

// apiExit turns an API error into an exit code: not found is 3, bad input 2.
func apiExit(err error) error {
	if err == nil {
		return nil
	}
	var ae *apiclient.Error
	if ok := asAPIError(err, &ae); ok {
		switch {
		case ae.Status == 404:
			return cli.Exit(ae.Message, exitNotFound)
		case ae.Status == 400 || ae.Status == 409 || ae.Status == 415:
			return cli.Exit(ae.Message, exitUsage)
		}
	}
	return cli.Exit(err.Error(), exitFailed)
}

func asAPIError(err error, target **apiclient.Error) bool {
	e, ok := err.(*apiclient.Error)
	if ok {
		*target = e
	}
	return ok
}

// checkOutput rejects an unknown -o value before any work is done.
func checkOutput(c *cli.Context) error {
	switch c.String("output") {
	case "table", "json":
		return nil
	}
	return cli.Exit(fmt.Sprintf("--output %q: want table or json", c.String("output")), exitUsage)
}

// render prints v as JSON with -o json, else calls table with a tab-aligned writer.
func render(c *cli.Context, v any, table func(w *tabwriter.Writer)) error {
	if c.String("output") == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// interactive reports whether stderr is a terminal: progress bars only then.
func interactive() bool { return isatty.IsTerminal(os.Stderr.Fd()) }

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// show is the action of every read-only listing: call the API, render the answer as a
// table or as JSON.
func show[T any](get func(*apiclient.Client, context.Context) (T, error), table func(*tabwriter.Writer, T)) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := checkOutput(c); err != nil {
			return err
		}
		cl, err := client(c)
		if err != nil {
			return err
		}
		v, err := get(cl, c.Context)
		if err != nil {
			return apiExit(err)
		}
		return render(c, v, func(w *tabwriter.Writer) { table(w, v) })
	}
}
