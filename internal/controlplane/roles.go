package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/wire"
)

// Shadow and replay deployments live in the deployments bucket under their own keys
// (wire.Deployment.Key), so the scaler and the runners treat them like any deployment.

// DeploymentByKey returns the deployment stored under key.
func (s *Store) DeploymentByKey(ctx context.Context, key string) (wire.Deployment, error) {
	v, _, err := get[wire.Deployment](ctx, s.deployments, key)
	return v, err
}

// DeleteDeploymentKey removes the deployment stored under key.
func (s *Store) DeleteDeploymentKey(ctx context.Context, key string) error {
	return del(ctx, s.deployments, key)
}

// Shadow returns the shadow deployment on stream (there is at most one), ErrNotFound
// when there is none.
func (s *Store) Shadow(ctx context.Context, stream string) (wire.Deployment, error) {
	deps, err := s.Deployments(ctx)
	if err != nil {
		return wire.Deployment{}, err
	}
	for _, d := range deps {
		if d.Role == wire.RoleShadow && d.Stream == stream {
			return d, nil
		}
	}
	return wire.Deployment{}, ErrNotFound
}

// Replays lists the replay deployments, by key.
func (s *Store) Replays(ctx context.Context) ([]wire.Deployment, error) {
	deps, err := s.Deployments(ctx)
	if err != nil {
		return nil, err
	}
	var out []wire.Deployment
	for _, d := range deps {
		if d.Role == wire.RoleReplay && d.Replay != nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// Replay returns the replay called name, ErrNotFound when there is none.
func (s *Store) Replay(ctx context.Context, name string) (wire.Deployment, error) {
	rs, err := s.Replays(ctx)
	if err != nil {
		return wire.Deployment{}, err
	}
	for _, d := range rs {
		if d.Replay.Name == name {
			return d, nil
		}
	}
	return wire.Deployment{}, ErrNotFound
}

// MarkReplayDone records that the replay stored under key reached its window's end, with
// compare-and-set (the Generation stays: nothing about its work changed). A replay that
// is gone or already done is left alone.
func (s *Store) MarkReplayDone(ctx context.Context, key string, at time.Time) error {
	for {
		d, rev, err := get[wire.Deployment](ctx, s.deployments, key)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Role != wire.RoleReplay || d.Replay == nil || d.Replay.Done {
			return nil
		}
		info := *d.Replay
		info.Done, info.Finished = true, at.UTC()
		d.Replay = &info
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		_, err = s.deployments.Update(ctx, key, b, rev)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongRevision(err) {
			return err
		}
	}
}
