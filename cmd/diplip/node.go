package main

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/diplip/diplip/node"
)

// runNode runs a node until ctx ends, calling with (in its own goroutine, once the node is
// ready) the work to do on it: printing, the demo, the bench. It returns the first error
// of either; with is cancelled when the node stops, and the node when with fails.
func runNode(ctx context.Context, cfg node.Config, with func(ctx context.Context, n *node.Node) error) error {
	n, err := node.New(cfg)
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
