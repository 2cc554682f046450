package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/sinks"
)

// Sinks through the API of a node: bad input refused with the reason, a signed event
// at a receiver naming its frame by a gateway URL (behind the token), ls without
// secrets, test, dead letters, rm.
func TestSinks(t *testing.T) {
	ctx := context.Background()
	const token = "sink-token"
	l, c := startLocal(t, token)
	stream := testkit.Name("sk")
	st, err := c.CreateStream(ctx, api.StreamRequest{Name: stream, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		mu.Unlock()
	}))
	defer rcv.Close()

	for _, tc := range []struct {
		name string
		req  api.SinkRequest
		code int
		want string
	}{
		{"a malformed url", api.SinkRequest{Webhook: "http://[::1"}, http.StatusBadRequest, `webhook url "http://[::1" is malformed`},
		{"an unreachable url", api.SinkRequest{Webhook: "http://127.0.0.1:1/hook"}, http.StatusBadRequest, `webhook url "http://127.0.0.1:1/hook" is unreachable`},
		{"the metadata service", api.SinkRequest{Webhook: "http://169.254.169.254/"}, http.StatusBadRequest, "--allow-link-local"},
		{"an unknown zone", api.SinkRequest{Webhook: rcv.URL, Zones: []string{"door"}}, http.StatusBadRequest, `zone "door"`},
		{"an unknown stream", api.SinkRequest{Stream: "nope", Webhook: rcv.URL}, http.StatusNotFound, "diplip stream create nope"},
		{"no target", api.SinkRequest{}, http.StatusBadRequest, "one target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Name = "bad"
			if tc.req.Stream == "" {
				tc.req.Stream = stream
			}
			_, err := c.AddSink(ctx, tc.req)
			wantAPIError(t, err, tc.code, tc.want)
		})
	}

	t.Setenv("TEST_SINK_SECRET", "s3cret")
	s, err := c.AddSink(ctx, api.SinkRequest{Name: "hook", Stream: stream, Webhook: rcv.URL, SecretEnv: "TEST_SINK_SECRET",
		Headers: map[string]string{"Authorization": "Bearer abc"}, Events: []string{"entered"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddSink(ctx, api.SinkRequest{Name: "hook", Stream: stream, Webhook: rcv.URL}); err == nil {
		t.Fatal("a second sink of the same name was added")
	}
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ss, err := c.Sinks(ctx)
		if err != nil || len(ss) != 1 || ss[0].Status.State != api.SinkRunning {
			return fmt.Errorf("sinks %+v, %v", ss, err)
		}
		return nil
	})
	ack, err := c.PushFrame(ctx, stream, apiclient.Frame{Camera: "cam1", Image: testkit.Media(t, "vtest_frame600.jpg")})
	if err != nil {
		t.Fatal(err)
	}
	res := wire.Result{ID: wire.ResultID(stream, "cam1", ack.Seq, "sha256:0123456789abcdef"), Stream: stream, Camera: "cam1", Seq: ack.Seq,
		CaptureTime: time.Now().UTC(), Function: "f", Status: wire.StatusOK, Source: wire.Source{Partition: ack.Partition, Offset: ack.Offset},
		Events:     []wire.ZoneEvent{{Zone: "door", Kind: wire.EventEntered, TrackID: 7, Label: "person"}},
		Detections: []wire.Detection{{Label: "person", Score: 0.8, TrackID: 7, Box: wire.Box{X1: 10, Y1: 20, X2: 50, Y2: 80}}}}
	b, _ := json.Marshal(res)
	kc := kafkaclient.New(testkit.Kafka(t), "test-sinks")
	defer kc.Close()
	p, err := kc.SyncProducer()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: st.ResultsTopic, Key: sarama.StringEncoder("cam1"), Value: sarama.ByteEncoder(b)}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return fmt.Errorf("no event at the receiver yet")
		}
		return nil
	})
	mu.Lock()
	req, body := got[0], bodies[0]
	mu.Unlock()
	if !sinks.Verify([]byte("s3cret"), req.Header.Get("X-Diplip-Timestamp"), body, req.Header.Get("X-Diplip-Signature")) ||
		req.Header.Get("Authorization") != "Bearer abc" {
		t.Errorf("headers %v", req.Header)
	}
	var ev api.SinkEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.Kind != "entered" || ev.Zone != "door" || req.Header.Get("Idempotency-Key") != ev.ID {
		t.Fatalf("event %s: %v", body, err)
	}
	// The snapshot is the frame's JPEG, behind the token.
	if want := l.URL + "/v1/streams/" + stream + "/frames/"; !strings.HasPrefix(ev.Snapshot, want) {
		t.Fatalf("snapshot %q, want %s...", ev.Snapshot, want)
	}
	if ev.Crop != ev.Snapshot+"?box=10,20,50,80" {
		t.Errorf("crop url %q", ev.Crop)
	}
	for _, tc := range []struct {
		url, auth string
		code      int
		w, h      int
	}{
		{ev.Snapshot, "", http.StatusUnauthorized, 0, 0},
		{ev.Snapshot, "Bearer " + token, http.StatusOK, 768, 576},
		{ev.Crop, "Bearer " + token, http.StatusOK, 40, 60},
		{ev.Snapshot + "?box=1,2", "Bearer " + token, http.StatusBadRequest, 0, 0},
		{ev.Snapshot + "?box=5000,5000,6000,6000", "Bearer " + token, http.StatusBadRequest, 0, 0},
	} {
		r, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		img, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s with %q: %d %s", tc.url, tc.auth, resp.StatusCode, img)
			continue
		}
		if tc.code == http.StatusOK {
			cfg, err := jpeg.DecodeConfig(bytes.NewReader(img))
			if err != nil || cfg.Width != tc.w || cfg.Height != tc.h {
				t.Errorf("%s: a %dx%d JPEG (%v), want %dx%d", tc.url, cfg.Width, cfg.Height, err, tc.w, tc.h)
			}
		}
	}

	ss, err := c.Sinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ss)
	if strings.Contains(string(raw), "s3cret") || strings.Contains(string(raw), "Bearer abc") || ss[0].SecretEnv != "TEST_SINK_SECRET" {
		t.Errorf("ls shows a secret or lost its variable: %s", raw)
	}
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		ss, _ := c.Sinks(ctx)
		if len(ss) != 1 || ss[0].Status.Delivered != 1 || ss[0].Status.Lag != 0 {
			return fmt.Errorf("status %+v", ss)
		}
		return nil
	})
	if r, err := c.TestSink(ctx, "hook"); err != nil || !r.OK || r.Event.Kind != "test" {
		t.Errorf("test: %+v %v", r, err)
	}
	if dl, err := c.DeadLetters(ctx, "hook", 0); err != nil || len(dl) != 0 {
		t.Errorf("dead letters: %+v %v", dl, err)
	}
	if r, err := c.ReplayDead(ctx, "hook"); err != nil || r.Replayed != 0 {
		t.Errorf("replay: %+v %v", r, err)
	}
	// The dashboard has the panel (its script calls the same routes).
	if resp, err := http.Get(l.URL + "/"); err != nil {
		t.Error(err)
	} else {
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(page), `id="sinks"`) || !strings.Contains(string(page), "/replay-dead") {
			t.Error("the dashboard has no sinks panel")
		}
	}
	if err := c.RemoveSink(ctx, s.Name); err != nil {
		t.Fatal(err)
	}
	_, err = c.TestSink(ctx, "hook")
	wantAPIError(t, err, http.StatusNotFound, `sink "hook" not found`)
}
