package main

import (
	"encoding/json"
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/internal/assets"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print diplip's version and the versions of the engines it runs",
		UsageText: "diplip version [-o json]\n\nExample:\n   diplip version -o json",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"}},
		Action: func(c *cli.Context) error {
			v := map[string]string{"diplip": version, "kafka": assets.KafkaVersion, "onnxruntime": assets.ORTVersion}
			if bi, ok := debug.ReadBuildInfo(); ok {
				v["go"] = bi.GoVersion
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v["commit"] = s.Value
					}
				}
			}
			switch c.String("output") {
			case "json":
				return json.NewEncoder(c.App.Writer).Encode(v)
			case "text":
				fmt.Fprintf(c.App.Writer, "diplip %s (kafka %s, onnxruntime %s, %s)\n", v["diplip"], v["kafka"], v["onnxruntime"], v["go"])
				return nil
			default:
				return cli.Exit(fmt.Sprintf("--output %q: want text or json", c.String("output")), 2)
			}
		},
	}
}
