package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
	"github.com/diplip/diplip/rollout"
)

// env is a rollout service on real services: its own NATS control plane and registry
// (served over HTTP), the test run's Kafka broker.
type env struct {
	svc   *rollout.Service
	store *controlplane.Store
	kafka *kafkaclient.Client
	host  string // the registry's host:port
	ref   string // the example function, pushed to it
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	_, nc := testkit.NATSConn(t)
	store, err := controlplane.Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	kc := kafkaclient.New(testkit.Kafka(t), "test-rollout")
	t.Cleanup(func() { kc.Close() })
	p, err := kc.SyncProducer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	svc, err := rollout.New(rollout.Config{Store: store, Kafka: kc, Producer: p})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.NewEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(func() { srv.Close(); reg.Close() })
	e := &env{svc: svc, store: store, kafka: kc, host: strings.TrimPrefix(srv.URL, "http://")}
	e.ref = e.pushExample(t, "v1")
	return e
}

// pushExample builds the example function and pushes it to the registry.
func (e *env) pushExample(t *testing.T, tag string) string {
	t.Helper()
	img, _, err := registry.Build("../functions/examples/yolox-nano", nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := registry.ParseReference(e.host+"/fn/yolox-nano:"+tag, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(context.Background(), img, ref, nil); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// stream creates a stream of a unique name.
func (e *env) stream(t *testing.T, prefix string, partitions int32) wire.Stream {
	t.Helper()
	st, err := e.svc.CreateStream(context.Background(), rollout.StreamRequest{Name: testkit.Name(prefix), Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// push stores n frames of camera c on st, as ingest does.
func (e *env) push(t *testing.T, st wire.Stream, n int) {
	t.Helper()
	p, err := e.kafka.SyncProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	for i := range n {
		f := wire.Frame{Camera: "c", Seq: uint64(i + 1), CaptureTime: time.Now(), IngestTime: time.Now(), ContentType: wire.ContentJPEG, Data: jpg}
		if _, _, err := p.SendMessage(kafkaclient.FrameMessage(&f, st.Topic)); err != nil {
			t.Fatal(err)
		}
	}
}

func wantError(t *testing.T, err error, kind rollout.Kind, msg string) {
	t.Helper()
	if rollout.KindOf(err) != kind || !strings.Contains(fmt.Sprint(err), msg) {
		t.Fatalf("err = %v (kind %v); want kind %v mentioning %q", err, rollout.KindOf(err), kind, msg)
	}
}

// Kinds are told apart by errors.Is and KindOf, through wrapping, while the message stays
// the user's.
func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		kind   rollout.Kind
		target error
	}{
		{rollout.Invalid, rollout.ErrInvalid}, {rollout.NotFound, rollout.ErrNotFound}, {rollout.Conflict, rollout.ErrConflict},
		{rollout.Upstream, rollout.ErrUpstream}, {rollout.Unavailable, rollout.ErrUnavailable},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			cause := errors.New("the cause")
			err := error(&rollout.Error{Kind: tc.kind, Err: cause})
			wrapped := errors.Join(errors.New("context"), err)
			if !errors.Is(wrapped, tc.target) || !errors.Is(wrapped, cause) || rollout.KindOf(wrapped) != tc.kind || err.Error() != "the cause" {
				t.Fatalf("%v: Is %v, cause %v, kind %v", err, errors.Is(wrapped, tc.target), errors.Is(wrapped, cause), rollout.KindOf(wrapped))
			}
			for _, other := range []error{rollout.ErrInvalid, rollout.ErrNotFound, rollout.ErrConflict, rollout.ErrUpstream, rollout.ErrUnavailable} {
				if other != tc.target && errors.Is(err, other) {
					t.Fatalf("%v is also %v", tc.kind, other)
				}
			}
		})
	}
	if rollout.KindOf(errors.New("plain")) != 0 || rollout.KindOf(nil) != 0 {
		t.Fatal("an error of no kind has a kind")
	}
}
