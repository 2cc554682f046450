package gateway_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/ingest/video"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/node"
	"github.com/diplip/diplip/node/nodetest"
)

// Zones: lines and areas on a stream's camera, with every bad input refused with the
// reason; removing a camera deletes the tracker state of tracking deployments on its
// stream (a tombstone in their compacted state topic).
func TestZones(t *testing.T) {
	ctx := context.Background()
	n, c, file := startWithCameras(t)
	stream := testkit.Name("z")
	if _, err := c.CreateStream(ctx, api.StreamRequest{Name: stream, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddCamera(ctx, api.CameraRequest{ID: "gate", Stream: stream, URL: file, FPS: 2, Loop: true}); err != nil {
		t.Fatal(err)
	}
	line := []api.Point{{X: 0, Y: 300}, {X: 767, Y: 300}}
	for _, tc := range []struct {
		name string
		req  api.ZoneRequest
		code int
		want string
	}{
		{"a line of one point", api.ZoneRequest{Stream: stream, Camera: "gate", Name: "l", Line: line[:1]}, http.StatusBadRequest, "line"},
		{"a polygon of two points", api.ZoneRequest{Stream: stream, Camera: "gate", Name: "p", Polygon: line}, http.StatusBadRequest, "polygon"},
		{"points outside any frame", api.ZoneRequest{Stream: stream, Camera: "gate", Name: "far", Line: []api.Point{{X: 0, Y: 0}, {X: 1e9, Y: 5}}}, http.StatusBadRequest, "far"},
		{"no geometry", api.ZoneRequest{Stream: stream, Camera: "gate", Name: "none"}, http.StatusBadRequest, "give a line"},
		{"a bad name", api.ZoneRequest{Stream: stream, Camera: "gate", Name: "Bad Name", Line: line}, http.StatusBadRequest, "zone name"},
		{"an unknown stream", api.ZoneRequest{Stream: "nope", Camera: "gate", Name: "l", Line: line}, http.StatusNotFound, "diplip stream create nope"},
		{"an unknown camera", api.ZoneRequest{Stream: stream, Camera: "ghost", Name: "l", Line: line}, http.StatusNotFound, `camera "ghost" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.AddZone(ctx, tc.req)
			wantAPIError(t, err, tc.code, tc.want)
		})
	}
	z, err := c.AddZone(ctx, api.ZoneRequest{Stream: stream, Camera: "gate", Name: "walkway", Line: line})
	if err != nil || z.Name != "walkway" || len(z.Line) != 2 {
		t.Fatalf("add: %+v %v", z, err)
	}
	_, err = c.AddZone(ctx, api.ZoneRequest{Stream: stream, Camera: "gate", Name: "walkway", Line: line})
	wantAPIError(t, err, http.StatusConflict, "diplip zone rm")
	zs, err := c.Zones(ctx, stream)
	if err != nil || len(zs) != 1 || zs[0].Camera != "gate" {
		t.Fatalf("ls: %+v %v", zs, err)
	}

	// A tracking deployment's state of the camera is deleted with the camera.
	nc, err := n.ConnectNATS("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	store, err := controlplane.Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	d := wire.Deployment{Function: "det", Stream: stream, Digest: "r/fn@sha256:0123", Max: 1, Batch: 1, Device: wire.DeviceCPU,
		Policy: wire.PolicyLive, Track: &wire.TrackParams{}, Updated: time.Now()}
	if _, err := store.PutDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	kc := kafkaclient.New(n.Brokers(), "test-zones")
	defer kc.Close()
	if err := kc.EnsureCompactedTopic(wire.StateTopic(d), 1); err != nil {
		t.Fatal(err)
	}
	p, err := kc.SyncProducer()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: wire.StateTopic(d), Key: sarama.StringEncoder("gate"), Value: sarama.StringEncoder(`{"v":1}`)}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := c.RemoveCamera(ctx, "gate"); err != nil {
		t.Fatal(err)
	}
	state, err := kc.LatestByKey(t.Context(), wire.StateTopic(d), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := state["gate"]; ok {
		t.Fatalf("the removed camera's tracker state is still there: %s", state["gate"])
	}
	if err := c.RemoveZone(ctx, stream, "gate", "walkway"); err != nil {
		t.Fatal(err)
	}
	err = c.RemoveZone(ctx, stream, "gate", "walkway")
	wantAPIError(t, err, http.StatusNotFound, "no zone")
}

// startWithCameras runs a node that pulls cameras with OpenCV and may read the sample
// video, and returns it, a client, and the video's path.
func startWithCameras(t *testing.T) (*node.Node, *apiclient.Client, string) {
	t.Helper()
	file, err := assets.Media("vtest_h264.mp4")
	if err != nil {
		t.Fatal(err)
	}
	n := nodetest.Start(t, node.Config{Kafka: testkit.Kafka(t), OpenSource: video.Open,
		CameraSources: ingest.SourcePolicy{FileDirs: []string{filepath.Dir(file)}}})
	c, err := apiclient.New(n.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	return n, c, file
}
