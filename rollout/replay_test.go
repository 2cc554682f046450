package rollout_test

import (
	"context"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// Replays, shadows, diffs and promotion refuse bad input with the kind (and so the HTTP
// status and the CLI exit code) and a message that says what was wrong, and a refused
// replay leaves no topic, consumer group or record behind.
func TestReplayShadowBadInput(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc, ref := e.svc, e.ref
	st, empty := e.stream(t, "rp", 2), e.stream(t, "empty", 2)
	stream := st.Name
	e.push(t, st, 3)
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	now := time.Now()
	for _, tc := range []struct {
		name string
		req  rollout.ReplayRequest
		kind rollout.Kind
		want string
	}{
		{"unknown stream", rollout.ReplayRequest{Stream: "nope", Ref: ref}, rollout.NotFound, "diplip stream create nope"},
		{"unknown image", rollout.ReplayRequest{Stream: stream, Ref: e.host + "/fn/missing:v9", Name: "gone"}, rollout.NotFound, "not found in its registry"},
		{"no image", rollout.ReplayRequest{Stream: stream}, rollout.Invalid, "ref: required"},
		{"from after to", rollout.ReplayRequest{Stream: stream, Ref: ref, From: rfc(now), To: rfc(now.Add(-time.Minute))}, rollout.Invalid, "is not before to"},
		{"from before the retained frames", rollout.ReplayRequest{Stream: stream, Ref: ref, From: rfc(now.Add(-time.Hour))}, rollout.Invalid, "holds frames from"},
		{"from after the latest frame", rollout.ReplayRequest{Stream: stream, Ref: ref, From: rfc(now.Add(time.Hour))}, rollout.Invalid, "is after the latest frame: stream"},
		{"to before the retained frames", rollout.ReplayRequest{Stream: stream, Ref: ref, To: rfc(now.Add(-time.Hour))}, rollout.Invalid, "holds frames from"},
		{"a stream without frames", rollout.ReplayRequest{Stream: empty.Name, Ref: ref}, rollout.Invalid, "holds no frames"},
		{"a bad name", rollout.ReplayRequest{Stream: stream, Ref: ref, Name: "Bad.Name"}, rollout.Invalid, `replay name "Bad.Name"`},
		{"a bad time", rollout.ReplayRequest{Stream: stream, Ref: ref, From: "yesterday"}, rollout.Invalid, "RFC 3339"},
		{"an empty camera", rollout.ReplayRequest{Stream: stream, Ref: ref, Cameras: []string{""}}, rollout.Invalid, "an empty camera id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.StartReplay(ctx, tc.req)
			wantError(t, err, tc.kind, tc.want)
		})
	}
	// Nothing of the refused replays exists.
	kc := e.kafka
	if deps, err := e.store.Deployments(ctx); err != nil || len(deps) != 0 {
		t.Fatalf("refused replays left records: %+v, %v", deps, err)
	}
	for _, name := range []string{"gone"} {
		d := wire.Deployment{Function: "yolox-nano", Stream: stream, Role: wire.RoleReplay, Replay: &wire.ReplayInfo{Name: name}}
		if ok, err := kc.TopicExists(d.ResultsTopic(wire.Stream{})); ok || err != nil {
			t.Fatalf("topic of a refused replay: %v %v", ok, err)
		}
		if ok, err := kc.GroupExists(d.Group()); ok || err != nil {
			t.Fatalf("group of a refused replay: %v %v", ok, err)
		}
	}

	// A replay that is accepted: its topic and group exist, its name is taken, removing it
	// removes all of it.
	r, err := svc.StartReplay(ctx, rollout.ReplayRequest{Stream: stream, Ref: ref, Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Replay.Total != 3 || r.Finished() || r.ResultsTopic(st) != "diplip.results."+stream+".replay.first" || r.Group() != "diplip.yolox-nano."+stream+".replay.first" ||
		r.Policy != wire.PolicyReplay || r.Max != 1 || r.Batch != 8 || r.Generation != 1 {
		t.Fatalf("replay %+v", r)
	}
	_, err = svc.StartReplay(ctx, rollout.ReplayRequest{Stream: stream, Ref: ref, Name: "first"})
	wantError(t, err, rollout.Conflict, "already exists")
	if ok, _ := kc.TopicExists(r.ResultsTopic(st)); !ok {
		t.Fatal("the replay's results topic is missing")
	}
	if ok, _ := kc.GroupExists(r.Group()); !ok {
		t.Fatal("the replay's group is missing")
	}
	got, err := svc.Replay(ctx, "first")
	if err != nil {
		t.Fatal(err)
	}
	if processed, err := svc.ReplayProgress(ctx, got); err != nil || processed != 0 || got.Replay.Total != 3 {
		t.Fatalf("replay progress %d of %d, %v", processed, got.Replay.Total, err)
	}
	wantError(t, svc.DeleteStream(ctx, stream), rollout.Conflict, "diplip replay rm first")
	if err := svc.RemoveReplay(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	wantError(t, svc.RemoveReplay(ctx, "first"), rollout.NotFound, "diplip replay ls")
	if ok, _ := kc.GroupExists(r.Group()); ok {
		t.Fatal("removing the replay left its group")
	}
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if ok, _ := kc.TopicExists(r.ResultsTopic(st)); ok {
			return errorString("removing the replay left its topic")
		}
		return nil
	})

	// Shadows: none without a primary; none to promote or compare.
	_, err = svc.Deploy(ctx, rollout.Request{Ref: ref, Stream: stream, Role: wire.RoleShadow})
	wantError(t, err, rollout.Invalid, "has no primary deployment of yolox-nano to shadow")
	_, err = svc.Promote(ctx, stream)
	wantError(t, err, rollout.Invalid, "has no shadow to promote")
	_, err = svc.DiffShadow(ctx, stream, 0)
	wantError(t, err, rollout.Invalid, "has no shadow")
	_, err = svc.DiffReplay(ctx, stream, "nope", 0)
	wantError(t, err, rollout.NotFound, `replay "nope" not found`)
	_, err = svc.Promote(ctx, "nope")
	wantError(t, err, rollout.NotFound, "diplip stream create nope")

	// A shadow next to a primary: its own key, group and topic; the primary cannot be
	// undeployed from under it; undeploying the shadow leaves the primary.
	if _, err := svc.Deploy(ctx, rollout.Request{Ref: ref, Stream: stream}); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Deploy(ctx, rollout.Request{Ref: ref, Stream: stream, Role: wire.RoleShadow, From: rfc(now)})
	wantError(t, err, rollout.Invalid, "a shadow runs next to the live primary")
	sh, err := svc.Deploy(ctx, rollout.Request{Ref: ref, Stream: stream, Role: wire.RoleShadow})
	if err != nil {
		t.Fatal(err)
	}
	if sh.Role != wire.RoleShadow || sh.Key() != "yolox-nano."+stream+".shadow" || sh.Policy != wire.PolicyLive ||
		time.Duration(sh.MaxAge) != 5*time.Second || len(sh.StartAt) != 2 {
		t.Fatalf("shadow %+v", sh)
	}
	if ok, _ := kc.TopicExists(wire.ShadowResultsTopic(stream)); !ok {
		t.Fatal("the shadow's results topic is missing")
	}
	wantError(t, svc.Undeploy(ctx, "yolox-nano", stream), rollout.Conflict, "--shadow")
	if err := svc.UndeployShadow(ctx, "yolox-nano", stream); err != nil {
		t.Fatal(err)
	}
	wantError(t, svc.UndeployShadow(ctx, "yolox-nano", stream), rollout.NotFound, "has no shadow")
	ds, err := e.store.Deployments(ctx)
	if err != nil || len(ds) != 1 || ds[0].Role != wire.RolePrimary {
		t.Fatalf("after undeploying the shadow: %+v, %v", ds, err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
