package rollout_test

import (
	"context"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// Where a new deployment starts: a live one at the stream's end (the retained frames are
// not its backlog) with a default max age, a replay at the earliest retained frame or at
// From.
func TestNewDeploymentsStartWhereTheirPolicySays(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	lagOf := func(st wire.Stream) int64 {
		t.Helper()
		lag, err := e.kafka.Lag(wire.Deployment{Function: "yolox-nano", Stream: st.Name}.Group(), st.Topic)
		if err != nil {
			t.Fatal(err)
		}
		return lag
	}
	for _, tc := range []struct {
		name    string
		req     rollout.Request
		pushed  int
		wantLag int64
	}{
		{"live starts at the end", rollout.Request{}, 3, 0},
		{"live on a stream without frames yet", rollout.Request{}, 0, 0},
		{"replay starts at the earliest retained frame", rollout.Request{Policy: "replay"}, 3, 3},
		{"replay from a time after the frames", rollout.Request{Policy: "replay", From: time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}, 3, 0},
		{"replay from a time before the frames", rollout.Request{Policy: "replay", From: time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := e.stream(t, "s", 2)
			e.push(t, st, tc.pushed)
			req := tc.req
			req.Ref, req.Stream = e.ref, st.Name
			d, err := e.svc.Deploy(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Policy == wire.PolicyLive && time.Duration(d.MaxAge) != 5*time.Second {
				t.Fatalf("live deployment's max age %v, want the default 5s", time.Duration(d.MaxAge))
			}
			if got := lagOf(st); got != tc.wantLag {
				t.Fatalf("lag after deploying: %d, want %d", got, tc.wantLag)
			}
			e.push(t, st, 2) // new frames are the deployment's work either way
			if got := lagOf(st); got != tc.wantLag+2 {
				t.Fatalf("lag after 2 more frames: %d, want %d", got, tc.wantLag+2)
			}
		})
	}
	_, err := e.svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: testkit.Name("nope"), From: "yesterday"})
	wantError(t, err, rollout.NotFound, "diplip stream create")
	st := e.stream(t, "s", 1).Name
	_, err = e.svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: st, Policy: "replay", From: "yesterday"})
	wantError(t, err, rollout.Invalid, "RFC 3339")
	_, err = e.svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: st, From: time.Now().UTC().Format(time.RFC3339)})
	wantError(t, err, rollout.Invalid, "only a replay deployment")
	_, err = e.svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: st, Delivery: "twice"})
	wantError(t, err, rollout.Invalid, `delivery "twice": want at-least-once or exactly-once`)
	_, err = e.svc.Deploy(ctx, rollout.Request{Stream: st})
	wantError(t, err, rollout.Invalid, "ref: required")
	_, err = e.svc.Deploy(ctx, rollout.Request{Ref: e.host + "/fn/missing:v9", Stream: st})
	wantError(t, err, rollout.NotFound, "not found in its registry; push it first with: diplip fn push")
	_, err = e.svc.Deploy(ctx, rollout.Request{Ref: "127.0.0.1:1/fn/x:v1", Stream: st})
	wantError(t, err, rollout.Upstream, "connection refused")
	if ds, err := e.store.Deployments(ctx); err != nil || len(ds) != 5 {
		t.Fatalf("refused deploys left records: %d, %v", len(ds), err)
	}
	d, err := e.svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: st})
	if err != nil || d.Delivery != "" || d.Generation != 1 {
		t.Fatalf("default delivery %q (%v), want at-least-once (stored as nothing)", d.Delivery, err)
	}
	// The test broker runs transactions (its transaction log needs one replica): the same
	// pair redeployed exactly-once is a rolling update that says so.
	d, err = e.svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: st, Delivery: "exactly-once"})
	if err != nil || d.Delivery != wire.ExactlyOnce || d.Generation != 2 {
		t.Fatalf("exactly-once deployment %+v (%v)", d, err)
	}
}

// A shadow is promoted: the primary moves to the shadow's digest (a rolling update), the
// function record follows it, and the shadow goes; the stream cannot go while either
// exists.
func TestPromoteShadow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	st := e.stream(t, "pr", 1)
	primary, err := e.svc.Deploy(ctx, rollout.Request{Ref: e.ref, Stream: st.Name, Max: 2})
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, e.svc.DeleteFunction(ctx, "yolox-nano"), rollout.Conflict, "diplip fn undeploy yolox-nano --stream "+st.Name)
	// The shadow is the same function under another tag, with its own batch.
	v2 := e.pushExample(t, "v2")
	sh, err := e.svc.Deploy(ctx, rollout.Request{Ref: v2, Stream: st.Name, Role: wire.RoleShadow, Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, e.svc.DeleteStream(ctx, st.Name), rollout.Conflict, "has deployment")
	diff, err := e.svc.DiffShadow(ctx, st.Name, 0)
	if err != nil || diff.IoU != 0.5 || diff.Candidate.Kind != "shadow" || diff.Candidate.Topic != wire.ShadowResultsTopic(st.Name) ||
		diff.Report.Overall.Label != "all" || len(diff.Primary.Digests) != 0 {
		t.Fatalf("diff of a shadow without results: %+v, %v", diff, err)
	}
	promoted, err := e.svc.Promote(ctx, st.Name)
	if err != nil {
		t.Fatal(err)
	}
	if promoted.Role != wire.RolePrimary || promoted.Digest != sh.Digest || promoted.Batch != 4 || promoted.Max != 2 || promoted.Generation != primary.Generation+1 {
		t.Fatalf("promoted %+v (shadow %s)", promoted, sh.Digest)
	}
	if fn, err := e.svc.Function(ctx, "yolox-nano"); err != nil || fn.Digest != sh.Digest {
		t.Fatalf("function record after promote: %+v, %v", fn, err)
	}
	if _, err := e.store.Shadow(ctx, st.Name); err == nil {
		t.Fatal("the shadow is still recorded after promote")
	}
	if err := e.svc.Undeploy(ctx, "yolox-nano", st.Name); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.svc.Undeploy(ctx, "yolox-nano", st.Name), rollout.NotFound, "not deployed")
	if err := e.svc.DeleteFunction(ctx, "yolox-nano"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteStream(ctx, st.Name); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.svc.DeleteStream(ctx, st.Name), rollout.NotFound, "diplip stream create")
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		for _, topic := range []string{st.Topic, st.ResultsTopic, wire.ShadowResultsTopic(st.Name)} {
			if ok, err := e.kafka.TopicExists(topic); ok || err != nil {
				return errorString("topic " + topic + " still exists after the stream went")
			}
		}
		return nil
	})
}
