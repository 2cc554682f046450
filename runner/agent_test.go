package runner_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
	"github.com/diplip/diplip/runner"
)

// authRecorder is a real registry that records the credentials clients send it.
type authRecorder struct {
	http.Handler
	mu   sync.Mutex
	auth []string
}

func (a *authRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := r.Header.Get("Authorization"); h != "" {
		a.mu.Lock()
		a.auth = append(a.auth, h)
		a.mu.Unlock()
	}
	a.Handler.ServeHTTP(w, r)
}

// A runner sends the platform's token only to the gateway's own registry: pulling a
// function image from any other registry, it never hands that registry the token.
func TestAgentSendsTheTokenOnlyToItsGatewaysRegistry(t *testing.T) {
	reg, err := registry.NewEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	other := &authRecorder{Handler: reg}
	srv := httptest.NewServer(other)
	defer srv.Close()
	img, _, err := registry.Build("../functions/examples/yolox-nano", nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := registry.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/fn/yolox-nano:v1", false)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := registry.Push(context.Background(), img, ref, nil)
	if err != nil {
		t.Fatal(err)
	}

	_, nc := testkit.NATSConn(t)
	addrs, st := stream(t, 1)
	loaded := make(chan string, 1)
	agent, err := runner.NewAgent(runner.AgentConfig{ID: testkit.Name("r"), NATS: nc, Cache: &registry.Cache{Dir: t.TempDir()},
		Token: "s3cret-platform-token",
		Load: func(dir string, device wire.Device) (runner.Model, bool, func() error, error) {
			loaded <- dir
			return &fixedModel{}, false, func() error { return nil }, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	beats, err := nc.SubscribeSync(wire.SubjectHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := beats.NextMsg(10 * time.Second); err != nil { // it announces itself once subscribed
		t.Fatalf("no heartbeat: %v", err)
	}

	act := wire.Activation{Stream: st, Brokers: addrs, Registry: "gateway.example:8080",
		Deployment: wire.Deployment{Function: "yolox-nano", Stream: st.Name, Digest: digest.String(), Max: 1, Batch: 1,
			Device: wire.DeviceCPU, Policy: wire.PolicyReplay}}
	b, _ := json.Marshal(act)
	m, err := nc.Request(wire.ActivateSubject(agent.ID()), b, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var rep wire.Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil || !rep.OK {
		t.Fatalf("activation: %s (%v)", m.Data, err)
	}
	select {
	case <-loaded:
	default:
		t.Fatal("the function was not loaded")
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	for _, a := range other.auth {
		if strings.Contains(a, "s3cret") || strings.HasPrefix(a, "Basic ") {
			t.Fatalf("the other registry was sent credentials %q", a)
		}
	}
}
