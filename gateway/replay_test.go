package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// Replays, shadows, diffs and promotion refuse bad input with the status (and so the CLI
// exit code) and a message that says what was wrong, and a refused replay leaves no
// topic, consumer group or record behind.
func TestReplayShadowBadInput(t *testing.T) {
	ctx := context.Background()
	l, c := startLocal(t, "")
	ref := pushExample(t, l, "v1")
	host := strings.TrimPrefix(l.URL, "http://")
	stream, empty := testkit.Name("rp"), testkit.Name("empty")
	for _, name := range []string{stream, empty} {
		if _, err := c.CreateStream(ctx, api.StreamRequest{Name: name, Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	for range 3 {
		resp, err := http.Post(l.URL+"/v1/streams/"+stream+"/frames?camera=c", "image/jpeg", bytes.NewReader(jpg))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	now := time.Now()
	for _, tc := range []struct {
		name   string
		req    api.ReplayRequest
		status int
		want   string
	}{
		{"unknown stream", api.ReplayRequest{Stream: "nope", Ref: ref}, http.StatusNotFound, "diplip stream create nope"},
		{"unknown image", api.ReplayRequest{Stream: stream, Ref: host + "/fn/missing:v9", Name: "gone"}, http.StatusNotFound, "not found in its registry"},
		{"no image", api.ReplayRequest{Stream: stream}, http.StatusBadRequest, "ref: required"},
		{"from after to", api.ReplayRequest{Stream: stream, Ref: ref, From: rfc(now), To: rfc(now.Add(-time.Minute))}, http.StatusBadRequest, "is not before to"},
		{"from before the retained frames", api.ReplayRequest{Stream: stream, Ref: ref, From: rfc(now.Add(-time.Hour))}, http.StatusBadRequest, "holds frames from"},
		{"from after the latest frame", api.ReplayRequest{Stream: stream, Ref: ref, From: rfc(now.Add(time.Hour))}, http.StatusBadRequest, "is after the latest frame: stream"},
		{"to before the retained frames", api.ReplayRequest{Stream: stream, Ref: ref, To: rfc(now.Add(-time.Hour))}, http.StatusBadRequest, "holds frames from"},
		{"a stream without frames", api.ReplayRequest{Stream: empty, Ref: ref}, http.StatusBadRequest, "holds no frames"},
		{"a bad name", api.ReplayRequest{Stream: stream, Ref: ref, Name: "Bad.Name"}, http.StatusBadRequest, `replay name "Bad.Name"`},
		{"a bad time", api.ReplayRequest{Stream: stream, Ref: ref, From: "yesterday"}, http.StatusBadRequest, "RFC 3339"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.StartReplay(ctx, tc.req)
			wantAPIError(t, err, tc.status, tc.want)
		})
	}
	// Nothing of the refused replays exists.
	kc := kafkaclient.New(l.Brokers(), "test-replay")
	defer kc.Close()
	if rs, err := c.Replays(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("refused replays left records: %+v, %v", rs, err)
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

	// A replay that is accepted: its topic and group exist, its name is taken, rm removes
	// all of it.
	r, err := c.StartReplay(ctx, api.ReplayRequest{Stream: stream, Ref: ref, Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Total != 3 || r.State != api.ReplayRunning || r.ResultsTopic != "diplip.results."+stream+".replay.first" || r.Group != "diplip.yolox-nano."+stream+".replay.first" {
		t.Fatalf("replay %+v", r)
	}
	_, err = c.StartReplay(ctx, api.ReplayRequest{Stream: stream, Ref: ref, Name: "first"})
	wantAPIError(t, err, http.StatusConflict, "already exists")
	if ok, _ := kc.TopicExists(r.ResultsTopic); !ok {
		t.Fatal("the replay's results topic is missing")
	}
	if ok, _ := kc.GroupExists(r.Group); !ok {
		t.Fatal("the replay's group is missing")
	}
	if got, err := c.Replay(ctx, "first"); err != nil || got.Processed != 0 || got.Total != 3 {
		t.Fatalf("replay status %+v, %v", got, err)
	}
	err = c.DeleteStream(ctx, stream)
	wantAPIError(t, err, http.StatusConflict, "diplip replay rm first")
	if err := c.RemoveReplay(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.RemoveReplay(ctx, "first"), http.StatusNotFound, "diplip replay ls")
	if ok, _ := kc.GroupExists(r.Group); ok {
		t.Fatal("replay rm left its group")
	}
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if ok, _ := kc.TopicExists(r.ResultsTopic); ok {
			return errorString("replay rm left its topic")
		}
		return nil
	})

	// Shadows: none without a primary; none to promote or compare.
	_, err = c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: stream, Shadow: true})
	wantAPIError(t, err, http.StatusBadRequest, "has no primary deployment of yolox-nano to shadow")
	_, err = c.Promote(ctx, stream)
	wantAPIError(t, err, http.StatusBadRequest, "has no shadow to promote")
	_, err = c.Diff(ctx, stream, "")
	wantAPIError(t, err, http.StatusBadRequest, "has no shadow")
	_, err = c.Diff(ctx, stream, "nope")
	wantAPIError(t, err, http.StatusNotFound, `replay "nope" not found`)
	_, err = c.Promote(ctx, "nope")
	wantAPIError(t, err, http.StatusNotFound, "diplip stream create nope")

	// A shadow next to a primary: its own key, group and topic; the primary cannot be
	// undeployed from under it; undeploying the shadow leaves the primary.
	if _, err := c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: stream}); err != nil {
		t.Fatal(err)
	}
	sh, err := c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: stream, Shadow: true})
	if err != nil {
		t.Fatal(err)
	}
	if sh.Role != "shadow" || sh.Key() != "yolox-nano."+stream+".shadow" || sh.Policy != "live" || sh.MaxAge != "5s" {
		t.Fatalf("shadow %+v", sh)
	}
	if ok, _ := kc.TopicExists(wire.ShadowResultsTopic(stream)); !ok {
		t.Fatal("the shadow's results topic is missing")
	}
	wantAPIError(t, c.Undeploy(ctx, "yolox-nano", stream), http.StatusConflict, "--shadow")
	if err := c.UndeployShadow(ctx, "yolox-nano", stream); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.UndeployShadow(ctx, "yolox-nano", stream), http.StatusNotFound, "has no shadow")
	ds, err := c.Deployments(ctx)
	if err != nil || len(ds) != 1 || ds[0].Role != "primary" {
		t.Fatalf("after undeploying the shadow: %+v, %v", ds, err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
