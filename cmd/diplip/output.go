package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// apiExit turns an error of a command that talks to the gateway into an exit code: the
// gateway's not found is 3, its bad input 2, anything else 1. An error that already has
// an exit code (cli.Exit) keeps it.
func apiExit(err error) error {
	var ec cli.ExitCoder
	if err == nil || errors.As(err, &ec) {
		return err
	}
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusNotFound:
			return cli.Exit(ae.Message, exitNotFound)
		case http.StatusBadRequest, http.StatusConflict, http.StatusUnsupportedMediaType:
			return cli.Exit(ae.Message, exitUsage)
		}
	}
	return cli.Exit(err.Error(), exitFailed)
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

// gatewayAction is the action of every command that talks to the gateway. Before act
// runs it rejects a bad -o, reads the command's one argument when arg names it ("stream
// name": act gets it; "": the command reads its arguments itself) and makes the client;
// act's error becomes an exit code through apiExit.
func gatewayAction(arg string, act func(c *cli.Context, cl *apiclient.Client, arg string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := checkOutput(c); err != nil {
			return err
		}
		var v string
		if arg != "" {
			var err error
			if v, err = oneArg(c, arg); err != nil {
				return err
			}
		}
		cl, err := client(c)
		if err != nil {
			return err
		}
		return apiExit(act(c, cl, v))
	}
}

// show is the action of every read-only listing: call the API, render the answer as a
// table or as JSON.
func show[T any](get func(*apiclient.Client, context.Context) (T, error), table func(*tabwriter.Writer, T)) cli.ActionFunc {
	return gatewayAction("", func(c *cli.Context, cl *apiclient.Client, _ string) error {
		v, err := get(cl, c.Context)
		if err != nil {
			return err
		}
		return render(c, v, func(w *tabwriter.Writer) { table(w, v) })
	})
}
