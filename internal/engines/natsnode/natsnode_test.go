package natsnode_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/engines/natsnode"
	"github.com/diplip/diplip/internal/testkit"
)

func TestRequestReply(t *testing.T) {
	_, nc := testkit.NATSConn(t)
	sub, err := nc.Subscribe("diplip.echo", func(m *nats.Msg) { _ = m.Respond([]byte(strings.ToUpper(string(m.Data)))) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	resp, err := nc.Request("diplip.echo", []byte("activate"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Data) != "ACTIVATE" {
		t.Fatalf("reply %q, want ACTIVATE", resp.Data)
	}
}

// Control-plane state lives in JetStream KV on a file store: a value put before a restart
// is there after it, and compare-and-set still sees its revision.
func TestKeyValueSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	store := t.TempDir()

	s, err := natsnode.Start(natsnode.Config{StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := s.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "streams", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "lobby", []byte(`{"partitions":4}`))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s.Shutdown()

	s = testkit.NATS(t, store)
	nc, err = s.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	kv, err = js.KeyValue(ctx, "streams")
	if err != nil {
		t.Fatalf("bucket gone after restart: %v", err)
	}
	e, err := kv.Get(ctx, "lobby")
	if err != nil {
		t.Fatalf("key gone after restart: %v", err)
	}
	if string(e.Value()) != `{"partitions":4}` || e.Revision() != rev {
		t.Fatalf("after restart got %s at revision %d, want the value put at revision %d", e.Value(), e.Revision(), rev)
	}
	if _, err := kv.Update(ctx, "lobby", []byte(`{"partitions":8}`), rev+100); err == nil {
		t.Fatal("compare-and-set with a wrong revision succeeded")
	}
	if _, err := kv.Update(ctx, "lobby", []byte(`{"partitions":8}`), rev); err != nil {
		t.Fatalf("compare-and-set with the right revision: %v", err)
	}
}

func TestTokenIsRequired(t *testing.T) {
	s, err := natsnode.Start(natsnode.Config{StoreDir: t.TempDir(), Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("connected without the token")
	}
	nc, err := nats.Connect(s.ClientURL(), nats.Token("s3cret"))
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	nc.Close()
}
