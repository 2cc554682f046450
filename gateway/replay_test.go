package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/testkit"
)

// The replay, shadow and diff routes answer rollout's refusals with the status of their
// kind (rollout's own tests check each refusal), and refuse a query they cannot read
// themselves. What a replay or a shadow does is tested in package rollout.
func TestRolloutRoutes(t *testing.T) {
	ctx := context.Background()
	l, c := startLocal(t, "")
	stream := testkit.Name("rr")
	if _, err := c.CreateStream(ctx, api.StreamRequest{Name: stream, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	ref := pushExample(t, l, "v1")
	_, err := c.StartReplay(ctx, api.ReplayRequest{Stream: "nope", Ref: ref})
	wantAPIError(t, err, http.StatusNotFound, "diplip stream create nope")
	_, err = c.StartReplay(ctx, api.ReplayRequest{Stream: stream, Ref: ref})
	wantAPIError(t, err, http.StatusBadRequest, "holds no frames")
	wantAPIError(t, c.RemoveReplay(ctx, "first"), http.StatusNotFound, "diplip replay ls")
	_, err = c.Replay(ctx, "first")
	wantAPIError(t, err, http.StatusNotFound, "diplip replay ls")
	if rs, err := c.Replays(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("replays %+v, %v", rs, err)
	}
	_, err = c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: stream, Shadow: true})
	wantAPIError(t, err, http.StatusBadRequest, "has no primary deployment of yolox-nano to shadow")
	_, err = c.Promote(ctx, stream)
	wantAPIError(t, err, http.StatusBadRequest, "has no shadow to promote")
	_, err = c.Promote(ctx, "nope")
	wantAPIError(t, err, http.StatusNotFound, "diplip stream create nope")
	_, err = c.Diff(ctx, stream, "")
	wantAPIError(t, err, http.StatusBadRequest, "has no shadow")
	_, err = c.Diff(ctx, stream, "nope")
	wantAPIError(t, err, http.StatusNotFound, `replay "nope" not found`)

	if _, err := c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: stream}); err != nil {
		t.Fatal(err)
	}
	sh, err := c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: stream, Shadow: true})
	if err != nil || sh.Role != "shadow" || sh.Key() != "yolox-nano."+stream+".shadow" || sh.Policy != "live" || sh.MaxAge != "5s" {
		t.Fatalf("shadow %+v, %v", sh, err)
	}
	d, err := c.Diff(ctx, stream, "")
	if err != nil || d.Candidate.Kind != "shadow" || d.Overall.Label != "all" || d.Primary.Digests == nil || d.Classes == nil {
		t.Fatalf("diff %+v, %v", d, err)
	}
	wantAPIError(t, c.Undeploy(ctx, "yolox-nano", stream), http.StatusConflict, "--shadow")
	if err := c.UndeployShadow(ctx, "yolox-nano", stream); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.UndeployShadow(ctx, "yolox-nano", stream), http.StatusNotFound, "has no shadow")

	for _, tc := range []struct {
		method, path string
		want         string
	}{
		{http.MethodGet, "/v1/streams/" + stream + "/diff", "want one of ?replay=NAME or ?shadow=1"},
		{http.MethodGet, "/v1/streams/" + stream + "/diff?shadow=1&replay=x", "want one of ?replay=NAME or ?shadow=1"},
		{http.MethodGet, "/v1/streams/" + stream + "/diff?shadow=1&iou=2", `iou "2": want a number in (0, 1]`},
		{http.MethodDelete, "/v1/deployments/yolox-nano/" + stream + "?role=sidecar", `role "sidecar": want primary or shadow`},
	} {
		req, _ := http.NewRequest(tc.method, l.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.Error, tc.want) {
			t.Fatalf("%s %s: %d %q (%v); want 400 mentioning %q", tc.method, tc.path, resp.StatusCode, body.Error, err, tc.want)
		}
	}
}
