package controlplane_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

func open(t *testing.T, storeDir string) *controlplane.Store {
	t.Helper()
	s := testkit.NATS(t, storeDir)
	nc, err := s.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	st, err := controlplane.Open(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func deployment(fn, stream string) wire.Deployment {
	return wire.Deployment{Function: fn, Stream: stream, Digest: "r@sha256:aa", Max: 2, Batch: 4, Device: "cpu", Policy: "live"}
}

func TestStreamsAndFunctions(t *testing.T) {
	ctx := context.Background()
	st := open(t, "")
	if err := st.CreateStream(ctx, wire.Stream{Name: "lobby", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateStream(ctx, wire.Stream{Name: "lobby"}); !errors.Is(err, controlplane.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if _, err := st.Stream(ctx, "hall"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
	if err := st.PutFunction(ctx, wire.Function{Name: "det", Digest: "r@sha256:aa"}); err != nil {
		t.Fatal(err)
	}
	fns, err := st.Functions(ctx)
	if err != nil || len(fns) != 1 || fns[0].Name != "det" {
		t.Fatalf("Functions = %+v, %v", fns, err)
	}
	if err := st.DeleteFunction(ctx, "det"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteFunction(ctx, "det"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

// Records survive a restart of the NATS server on the same store: `diplip up` restarts
// with its deployments.
func TestDeploymentsSurviveRestartAndCountGenerations(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	d, err := st.PutDeployment(ctx, deployment("det", "lobby"))
	if err != nil || d.Generation != 1 {
		t.Fatalf("create: %+v, %v", d, err)
	}
	up := deployment("det", "lobby")
	up.Digest = "r@sha256:bb"
	if d, err = st.PutDeployment(ctx, up); err != nil || d.Generation != 2 {
		t.Fatalf("rolling update: %+v, %v", d, err)
	}

	st = open(t, dir) // a second server on the same store
	got, err := st.Deployment(ctx, "det", "lobby")
	if err != nil || got.Digest != "r@sha256:bb" || got.Generation != 2 {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
}

// Concurrent updates of one deployment all land, each with its own generation.
func TestConcurrentUpdatesDoNotLoseGenerations(t *testing.T) {
	ctx := context.Background()
	st := open(t, "")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := st.PutDeployment(ctx, deployment("det", "lobby")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := st.Deployment(ctx, "det", "lobby")
	if err != nil || got.Generation != 8 {
		t.Fatalf("after 8 concurrent puts: generation %d, %v", got.Generation, err)
	}
}

func TestWatchDeployments(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st := open(t, "")
	if _, err := st.PutDeployment(ctx, deployment("det", "lobby")); err != nil {
		t.Fatal(err)
	}
	ch, err := st.WatchDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() controlplane.DeploymentChange {
		select {
		case c := <-ch:
			return c
		case <-ctx.Done():
			t.Fatal("no change arrived")
		}
		return controlplane.DeploymentChange{}
	}
	if c := next(); c.Deleted || c.Deployment.Function != "det" {
		t.Fatalf("initial value: %+v", c)
	}
	if err := st.DeleteDeployment(ctx, "det", "lobby"); err != nil {
		t.Fatal(err)
	}
	if c := next(); !c.Deleted || c.Key != "det.lobby" {
		t.Fatalf("delete: %+v", c)
	}
}

func TestDeploymentValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*wire.Deployment)
		want string
	}{
		{"bad stream", func(d *wire.Deployment) { d.Stream = "Lobby!" }, `stream name "Lobby!"`},
		{"min over max", func(d *wire.Deployment) { d.Min = 3 }, "min 3, max 2"},
		{"batch", func(d *wire.Deployment) { d.Batch = 0 }, "batch 0"},
		{"device", func(d *wire.Deployment) { d.Device = "gpu0" }, `device "gpu0"`},
		{"policy", func(d *wire.Deployment) { d.Policy = "sometimes" }, `policy "sometimes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := deployment("det", "lobby")
			tc.edit(&d)
			if err := d.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %s", err, tc.want)
			}
		})
	}
	d := deployment("det", "lobby")
	d.Device = "cuda:1"
	if err := d.Validate(); err != nil {
		t.Fatalf("valid deployment: %v", err)
	}
}
