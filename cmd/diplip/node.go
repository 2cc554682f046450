package main

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"

	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/node"
	"github.com/urfave/cli/v2"
)

// runNode runs a node until ctx ends, calling with (in its own goroutine, once the node is
// ready) the work to do on it: printing, the demo, the bench. It returns the first error
// of either; with is cancelled when the node stops, and the node when with fails.
func runNode(ctx context.Context, cfg node.Config, with func(ctx context.Context, n *node.Node) error) error {
	n, err := node.New(cfg)
	if errors.Is(err, node.ErrExposed) {
		return cli.Exit(err.Error(), exitUsage)
	}
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.Run(gctx) })
	g.Go(func() error {
		select {
		case <-n.Ready():
		case <-gctx.Done():
			return nil
		}
		return with(gctx, n)
	})
	return g.Wait()
}

// exposureFlags are the flags of `up` and `gateway` that decide who may reach the node.
func exposureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "allow-host", Usage: "a further host name the gateway answers to (besides its listener and localhost), e.g. a public DNS name; repeatable"},
		&cli.StringSliceFlag{Name: "allow-origin", Usage: "a web origin (scheme://host:port) besides the gateway's own that may call the API from a browser; repeatable"},
		&cli.BoolFlag{Name: "insecure-no-token", Usage: "allow a listener that other machines can reach without --token (the API, registry and NATS are then open to them)"},
		&cli.StringSliceFlag{Name: "camera-files", Usage: "a directory whose video files pulled cameras may read (files elsewhere are refused); repeatable"},
		&cli.BoolFlag{Name: "camera-link-local", Usage: "let pulled cameras reach link-local hosts (169.254.0.0/16, fe80::/10: cloud metadata lives there)"},
	}
}

// applyExposure copies exposureFlags into cfg.
func applyExposure(c *cli.Context, cfg *node.Config) {
	cfg.AllowedHosts = c.StringSlice("allow-host")
	cfg.AllowedOrigins = c.StringSlice("allow-origin")
	cfg.InsecureNoToken = c.Bool("insecure-no-token")
	cfg.CameraSources = ingest.SourcePolicy{FileDirs: c.StringSlice("camera-files"), AllowLinkLocal: c.Bool("camera-link-local")}
}
