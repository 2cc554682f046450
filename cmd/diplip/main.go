// Command diplip is the CLI of the diplip platform: it wires the packages to the terminal
// and holds no logic of its own. Each command group lives in its own file and is built by
// a constructor returning *cli.Command.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := newApp()
	if err := app.Run(interspersed(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "diplip:", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "diplip",
		Usage: "deep-learning inference on live camera streams, on Kafka and NATS",
		Description: "diplip bridges camera streams into Kafka topics, runs trained models packaged as OCI\n" +
			"function images on scale-to-zero runners, and publishes detections live.\n\n" +
			"Start everything on this machine with the demo:\n\n   diplip up --demo",
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			upCommand(),
			gatewayCommand(),
			streamCommand(),
			cameraCommand(),
			zoneCommand(),
			sinkCommand(),
			fnCommand(),
			replayCommand(),
			runnerCommand(),
			resourcesCommand(),
			resultsCommand(),
			benchCommand(),
			soakCommand(),
			versionCommand(),
			completionCommand(),
		},
		// main prints errors and picks exit codes, once, for every command.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}
