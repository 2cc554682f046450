package node

import (
	"context"
	"errors"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/rollout"
	"github.com/diplip/diplip/sinks"
)

// SinkView shows a sinks.Manager to the gateway: the same calls, with sinks' error kinds
// turned into rollout's, which the gateway maps to statuses.
type SinkView struct{ M *sinks.Manager }

func sinkErr(err error) error {
	for _, k := range []struct {
		from error
		to   rollout.Kind
	}{{sinks.ErrInvalid, rollout.Invalid}, {sinks.ErrNotFound, rollout.NotFound}, {sinks.ErrConflict, rollout.Conflict}, {sinks.ErrUpstream, rollout.Upstream}} {
		if errors.Is(err, k.from) {
			return &rollout.Error{Kind: k.to, Err: err}
		}
	}
	return err
}

func (v SinkView) Add(ctx context.Context, req api.SinkRequest) (api.Sink, error) {
	s, err := v.M.Add(ctx, req)
	return s, sinkErr(err)
}

func (v SinkView) List(ctx context.Context) ([]api.Sink, error) { return v.M.List(ctx) }

func (v SinkView) Remove(ctx context.Context, name string) error {
	return sinkErr(v.M.Remove(ctx, name))
}

func (v SinkView) Test(ctx context.Context, name string) (api.SinkTestResult, error) {
	r, err := v.M.Test(ctx, name)
	return r, sinkErr(err)
}

func (v SinkView) Dead(ctx context.Context, name string, limit int) ([]api.DeadLetter, error) {
	d, err := v.M.Dead(ctx, name, limit)
	return d, sinkErr(err)
}

func (v SinkView) ReplayDead(ctx context.Context, name string) (api.ReplayDeadResult, error) {
	r, err := v.M.ReplayDead(ctx, name)
	return r, sinkErr(err)
}
