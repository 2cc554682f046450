package sinks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/sinks"
)

// env is a stream (a real results topic on the test run's Kafka, a record on a real
// NATS control plane) and a running sinks.Manager.
type env struct {
	t       testing.TB
	stream  string
	topic   string
	kc      *kafkaclient.Client
	prod    sarama.SyncProducer
	mgr     *sinks.Manager
	secrets map[string]string
	zones   *controlplane.Zones
	natsURL string
}

func newEnv(t *testing.T) *env { return newEnvWith(t, true) }

// newEnvWith runs the manager's sinks in this process when run (else only its calls).
func newEnvWith(t testing.TB, run bool) *env {
	t.Helper()
	brokers, topic := testkit.Topic(t, 2)
	ns, nc := testkit.NATSConn(t)
	ctx := context.Background()
	store, err := controlplane.OpenWith(ctx, nc, controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := controlplane.OpenSinks(ctx, nc, controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	zones, err := controlplane.OpenZones(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, stream: testkit.Name("sinks"), topic: topic, secrets: map[string]string{}, zones: zones, natsURL: ns.ClientURL()}
	if err := store.CreateStream(ctx, wire.Stream{Name: e.stream, Topic: "unused", ResultsTopic: topic, Partitions: 2, Replication: 1}); err != nil {
		t.Fatal(err)
	}
	e.kc = kafkaclient.New(brokers, "test-sinks")
	t.Cleanup(func() { e.kc.Close() })
	if e.prod, err = e.kc.SyncProducer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.prod.Close() })
	if e.mgr, err = sinks.NewManager(sinks.ManagerConfig{Sinks: bucket, Store: store, Zones: zones, Kafka: e.kc,
		Gateway: "http://gateway.test:8080", Getenv: func(k string) string { return e.secrets[k] },
		Backoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Poll: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	if !run {
		return e
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.mgr.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return e
}

// add adds a sink and waits until its consumer group is running.
func (e *env) add(req api.SinkRequest) api.Sink {
	e.t.Helper()
	req.Stream = e.stream
	s, err := e.mgr.Add(context.Background(), req)
	if err != nil {
		e.t.Fatalf("adding sink: %v", err)
	}
	e.waitState(req.Name, api.SinkRunning, api.SinkRetrying)
	return s
}

func (e *env) status(name string) api.SinkStatus {
	list, err := e.mgr.List(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range list {
		if s.Name == name {
			return s.Status
		}
	}
	e.t.Fatalf("sink %s not listed", name)
	return api.SinkStatus{}
}

func (e *env) waitState(name string, states ...string) {
	e.t.Helper()
	testkit.CheckFor(e.t, 30*time.Second, 100*time.Millisecond, func() error {
		if st := e.status(name); !slices.Contains(states, st.State) {
			return fmt.Errorf("sink %s is %s (%s), want %v", name, st.State, st.LastError, states)
		}
		return nil
	})
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// result is a tracked result of camera's frame seq with a crossing of zone door by track
// seq, a person, captured seq seconds after t0.
func (e *env) result(camera string, seq uint64) wire.Result {
	r := wire.Result{ID: wire.ResultID(e.stream, camera, seq, "sha256:0123456789abcdef"), Stream: e.stream, Camera: camera, Seq: seq,
		CaptureTime: t0.Add(time.Duration(seq) * time.Second), Function: "yolo", Status: wire.StatusOK,
		Detections: []wire.Detection{{ClassID: 0, Label: "person", Score: 0.9, Box: wire.Box{X1: 1, Y1: 2, X2: 30, Y2: 60}, TrackID: seq}},
		Events:     []wire.ZoneEvent{{Zone: "door", Kind: wire.EventCrossed, Direction: "in", TrackID: seq, ClassID: 0, Label: "person"}},
		Counts:     []wire.ZoneCount{{Zone: "door", ClassID: 0, Label: "person", In: int64(seq)}},
		Source:     wire.Source{Partition: 1, Offset: int64(100 + seq)}}
	return r
}

func (e *env) produce(rs ...wire.Result) {
	e.t.Helper()
	for _, r := range rs {
		b, _ := json.Marshal(r)
		if _, _, err := e.prod.SendMessage(&sarama.ProducerMessage{Topic: e.topic, Key: sarama.StringEncoder(r.Camera), Value: sarama.ByteEncoder(b)}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// receiver is a webhook target: it records every request and answers status().
type receiver struct {
	*httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	got    []delivery
}

type delivery struct {
	ev     api.SinkEvent
	body   []byte
	header http.Header
	status int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.status.Store(http.StatusOK)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var ev api.SinkEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body: %v: %s", err, body)
		}
		status := int(r.status.Load())
		r.mu.Lock()
		r.got = append(r.got, delivery{ev: ev, body: body, header: req.Header.Clone(), status: status})
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

// accepted returns the events answered 2xx, in arrival order.
func (r *receiver) accepted() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.got {
		if d.status < 300 {
			out = append(out, d)
		}
	}
	return out
}

func TestWebhookDeliversSignedEvents(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t)
	e.secrets["HOOK_SECRET"] = "s3cret"
	s := e.add(api.SinkRequest{Name: "hook", Webhook: rcv.URL + "/events", SecretEnv: "HOOK_SECRET",
		Headers: map[string]string{"Authorization": "Bearer receiver-token"}, Events: []string{"crossed", "detected"}})
	if s.SecretEnv != "HOOK_SECRET" || !slices.Equal(s.Headers, []string{"Authorization"}) {
		t.Errorf("listed sink: %+v", s)
	}
	if b, _ := json.Marshal(s); strings.Contains(string(b), "s3cret") || strings.Contains(string(b), "receiver-token") {
		t.Errorf("a secret is echoed: %s", b)
	}
	e.produce(e.result("cam1", 1))
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if n := len(rcv.accepted()); n < 2 {
			return fmt.Errorf("%d events delivered, want 2", n)
		}
		return nil
	})
	got := rcv.accepted()
	crossed, detected := got[0], got[1]
	want := api.SinkEvent{ID: e.stream + "/cam1/1/0123456789ab/crossed/door/1/in", Kind: "crossed", Sink: "hook", Stream: e.stream,
		Camera: "cam1", Seq: 1, Function: "yolo", ResultID: e.stream + "/cam1/1/0123456789ab", CaptureTime: t0.Add(time.Second),
		Zone: "door", Direction: "in", TrackID: 1, Label: "person", Score: 0.9, Box: &api.Box{X1: 1, Y1: 2, X2: 30, Y2: 60},
		Counts:   []api.ZoneCount{{Zone: "door", Label: "person", In: 1}},
		Snapshot: "http://gateway.test:8080/v1/streams/" + e.stream + "/frames/1/101"}
	want.Crop = want.Snapshot + "?box=1,2,30,60"
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(crossed.ev)
	if string(wb) != string(gb) {
		t.Errorf("crossed event:\n got %s\nwant %s", gb, wb)
	}
	if detected.ev.Kind != "detected" || len(detected.ev.Detections) != 1 || detected.ev.ID != e.stream+"/cam1/1/0123456789ab/detected/person" {
		t.Errorf("detected event: %+v", detected.ev)
	}
	for _, d := range got {
		h := d.header
		if h.Get("Idempotency-Key") != d.ev.ID || h.Get("Authorization") != "Bearer receiver-token" || h.Get("X-Diplip-Sink") != "hook" {
			t.Errorf("headers: %v", h)
		}
		if !sinks.Verify([]byte("s3cret"), h.Get("X-Diplip-Timestamp"), d.body, h.Get("X-Diplip-Signature")) {
			t.Errorf("signature %q does not verify", h.Get("X-Diplip-Signature"))
		}
		if sinks.Verify([]byte("wrong"), h.Get("X-Diplip-Timestamp"), d.body, h.Get("X-Diplip-Signature")) {
			t.Error("a wrong secret verifies")
		}
	}
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("hook"); st.Delivered != 2 || st.Lag != 0 {
			return fmt.Errorf("status %+v, want 2 delivered and no lag", st)
		}
		return nil
	})
	res, err := e.mgr.Test(context.Background(), "hook")
	if err != nil || !res.OK || res.Answer != "HTTP 200 OK" {
		t.Errorf("sink test: %+v, %v", res, err)
	}
}

func TestBadInputIsRefused(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  api.SinkRequest
		want string
	}{
		{"malformed", api.SinkRequest{Webhook: "http://[::1"}, "malformed"},
		{"scheme", api.SinkRequest{Webhook: "ftp://example.com/x"}, `scheme "ftp"`},
		{"unreachable", api.SinkRequest{Webhook: closedURL}, "unreachable"},
		{"metadata", api.SinkRequest{Webhook: "http://169.254.169.254/latest"}, "metadata"},
		{"link-local v6", api.SinkRequest{Webhook: "http://[fe80::1]/x"}, "link-local"},
		{"two targets", api.SinkRequest{Webhook: rcv.URL, MQTT: "mqtt://127.0.0.1:1883"}, "one target"},
		{"unknown zone", api.SinkRequest{Webhook: rcv.URL, Zones: []string{"nowhere"}}, `zone "nowhere"`},
		{"unknown class", api.SinkRequest{Webhook: rcv.URL, Classes: []string{"unicorn"}}, `class "unicorn"`},
		{"event kind", api.SinkRequest{Webhook: rcv.URL, Events: []string{"exploded"}}, `event kind "exploded"`},
		{"cooldown", api.SinkRequest{Webhook: rcv.URL, Cooldown: "soon"}, "cooldown"},
		{"unknown function", api.SinkRequest{Webhook: rcv.URL, Function: "nope"}, `function "nope" is not registered`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "unknown class" {
				e.produce(e.result("cam1", 1)) // the stream has seen a person
			}
			tc.req.Name, tc.req.Stream = "bad", e.stream
			_, err := e.mgr.Add(ctx, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !isInvalid(err) {
				t.Errorf("err = %v, want an invalid-input error with %q", err, tc.want)
			}
		})
	}
	// A secret the sink's process lacks: recorded, but failed here, saying why.
	if _, err := e.mgr.Add(ctx, api.SinkRequest{Name: "nosecret", Stream: e.stream, Webhook: rcv.URL, SecretEnv: "UNSET_VAR"}); err != nil {
		t.Fatal(err)
	}
	e.waitState("nosecret", api.SinkFailed)
	if st := e.status("nosecret"); !strings.Contains(st.LastError, "UNSET_VAR") {
		t.Errorf("status %+v does not name the variable", st)
	}
	// Allowed, the address is checked like any other: reachable or not, not refused for
	// being link-local.
	if _, err := e.mgr.Add(ctx, api.SinkRequest{Name: "ll", Stream: e.stream, Webhook: "http://169.254.169.254/latest", AllowLinkLocal: true}); err != nil &&
		(strings.Contains(err.Error(), "metadata") || strings.Contains(err.Error(), "link-local")) {
		t.Errorf("with allow-link-local: %v", err)
	}
}

func isInvalid(err error) bool { return errors.Is(err, sinks.ErrInvalid) }

// TestWebhookOutageLosesNothing: the receiver answers 500 for 30 s (issue #25's figure),
// then recovers; the sink keeps retrying through the outage without giving up on
// anything, every event arrives at least once (by idempotency key), and per camera the
// first arrivals keep the order; duplicates are counted and reported.
func TestWebhookOutageLosesNothing(t *testing.T) {
	const outage = 30 * time.Second
	e := newEnv(t)
	rcv := newReceiver(t)
	e.add(api.SinkRequest{Name: "hook", Webhook: rcv.URL, Events: []string{"crossed"}, MaxAttempts: 10000})
	rcv.status.Store(http.StatusInternalServerError)
	down := time.Now()
	const n = 15
	cams := []string{"cam1", "cam2", "cam3"}
	for i := uint64(1); i <= n; i++ {
		for _, c := range cams {
			e.produce(e.result(c, i))
		}
	}
	testkit.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("hook"); st.State != api.SinkRetrying || st.Failed < 5 {
			return fmt.Errorf("status %+v, want retrying", st)
		}
		return nil
	})
	time.Sleep(time.Until(down.Add(outage))) // the outage goes on
	during := e.status("hook")
	rcv.status.Store(http.StatusOK)
	up := time.Now()
	if n := len(rcv.accepted()); n != 0 {
		t.Errorf("%d events accepted during the outage", n)
	}
	// Still retrying at the end of the outage, at the backoff's cap (300 ms here), not
	// given up and not dead-lettered.
	if atLeast := int64(outage / (2 * time.Second)); during.State != api.SinkRetrying || during.Failed < atLeast || during.DeadLettered != 0 {
		t.Errorf("status at the end of the %v outage: %+v, want retrying with at least %d failed attempts", outage, during, atLeast)
	}
	checkAllOnce(t, rcv, cams, n)
	t.Logf("outage %v: %d failed attempts; every event delivered %v after recovery", outage, during.Failed, time.Since(up).Round(100*time.Millisecond))
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("hook"); st.DeadLettered != 0 || st.Retrying != 0 || st.Lag != 0 || st.Delivered < int64(len(cams)*n) {
			return fmt.Errorf("status after recovery: %+v", st)
		}
		return nil
	})
}

// checkAllOnce waits for every camera's events 1..n and checks the order of their first
// arrivals; duplicates are counted and logged.
func checkAllOnce(t *testing.T, rcv *receiver, cams []string, n uint64) {
	t.Helper()
	testkit.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		seen := map[string]bool{}
		for _, d := range rcv.accepted() {
			seen[d.ev.ID] = true
		}
		if len(seen) < len(cams)*int(n) {
			return fmt.Errorf("%d distinct events delivered, want %d", len(seen), len(cams)*int(n))
		}
		return nil
	})
	first := map[string]bool{}
	last := map[string]uint64{}
	dups := 0
	for _, d := range rcv.accepted() {
		if first[d.ev.ID] {
			dups++
			continue
		}
		first[d.ev.ID] = true
		if d.ev.Seq <= last[d.ev.Camera] {
			t.Errorf("camera %s: event of frame %d arrived after frame %d's", d.ev.Camera, d.ev.Seq, last[d.ev.Camera])
		}
		last[d.ev.Camera] = d.ev.Seq
	}
	t.Logf("%d events delivered, %d duplicates", len(first), dups)
}

func TestCooldown(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t)
	e.add(api.SinkRequest{Name: "cool", Webhook: rcv.URL, Events: []string{"detected"}, Cooldown: "5s"})
	for i := uint64(1); i <= 12; i++ { // a person lingers for 12 s, one frame a second
		e.produce(e.result("cam1", i))
	}
	e.produce(e.result("cam2", 3)) // another camera has its own cooldown
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("cool"); st.Lag != 0 || st.Delivered < 4 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	var got []string
	for _, d := range rcv.accepted() {
		got = append(got, fmt.Sprintf("%s/%d", d.ev.Camera, d.ev.Seq))
	}
	slices.Sort(got)
	if want := []string{"cam1/1", "cam1/11", "cam1/6", "cam2/3"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v (one per 5 s per camera and class)", got, want)
	}
}

func TestDeadLettersAndReplay(t *testing.T) {
	e := newEnv(t)
	rcv := newReceiver(t)
	e.add(api.SinkRequest{Name: "dead", Webhook: rcv.URL, Events: []string{"crossed"}, MaxAttempts: 3})
	rcv.status.Store(http.StatusServiceUnavailable) // retried until max attempts
	e.produce(e.result("cam1", 1), e.result("cam1", 2))
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("dead"); st.DeadLettered != 2 {
			return fmt.Errorf("status %+v, want 2 dead letters", st)
		}
		return nil
	})
	rcv.status.Store(http.StatusBadRequest) // permanent: one attempt
	e.produce(e.result("cam1", 3), e.result("cam1", 4))
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("dead"); st.DeadLettered != 4 || st.Lag != 0 {
			return fmt.Errorf("status %+v, want 4 dead letters", st)
		}
		return nil
	})
	dead, err := e.mgr.Dead(context.Background(), "dead", 0)
	if err != nil || len(dead) != 4 {
		t.Fatalf("dead letters: %d, %v", len(dead), err)
	}
	for i, dl := range dead {
		wantAttempts, wantReason := 3, "gave up after 3 attempts"
		if i >= 2 {
			wantAttempts, wantReason = 1, "400 Bad Request"
		}
		if dl.Event.Seq != uint64(i+1) || dl.Attempts != wantAttempts || !strings.Contains(dl.Reason, wantReason) {
			t.Errorf("dead letter %d: seq %d, %d attempts, %q", i, dl.Event.Seq, dl.Attempts, dl.Reason)
		}
	}
	rcv.status.Store(http.StatusOK) // fixed
	res, err := e.mgr.ReplayDead(context.Background(), "dead")
	if err != nil || res.Replayed != 4 || res.Failed != 0 {
		t.Fatalf("replay: %+v, %v", res, err)
	}
	var seqs []uint64
	for _, d := range rcv.accepted() {
		seqs = append(seqs, d.ev.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3, 4}) {
		t.Errorf("replayed %v", seqs)
	}
	if res, err := e.mgr.ReplayDead(context.Background(), "dead"); err != nil || res.Replayed != 0 {
		t.Errorf("second replay: %+v, %v (want nothing left)", res, err)
	}
	if err := e.mgr.Remove(context.Background(), "dead"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.Dead(context.Background(), "dead", 0); !errors.Is(err, sinks.ErrNotFound) {
		t.Errorf("dead letters of a removed sink: %v", err)
	}
}
