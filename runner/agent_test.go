package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/nats-io/nats.go"
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
		Load: func(dir string, device wire.Device, lanes int) (runner.Model, bool, func() error, error) {
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

// hangingRegistry accepts connections and never answers: a registry that hung.
func hangingRegistry(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return strings.TrimPrefix(srv.URL, "http://")
}

// startAgent runs an agent until the test ends and waits for its first heartbeat.
func startAgent(t *testing.T, cfg runner.AgentConfig) (*runner.Agent, *nats.Conn) {
	t.Helper()
	_, nc := testkit.NATSConn(t)
	cfg.NATS, cfg.ID = nc, testkit.Name("r")
	if cfg.Cache == nil {
		cfg.Cache = &registry.Cache{Dir: t.TempDir()}
	}
	if cfg.Load == nil {
		cfg.Load = func(string, wire.Device, int) (runner.Model, bool, func() error, error) {
			return &fixedModel{}, false, func() error { return nil }, nil
		}
	}
	beats, err := nc.SubscribeSync(wire.SubjectHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := runner.NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := beats.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no heartbeat: %v", err)
	}
	return agent, nc
}

// activate sends an activation for an image at digest and returns the reply's error.
func activate(t *testing.T, nc *nats.Conn, id, digest string) (string, time.Duration) {
	t.Helper()
	st := wire.Stream{Name: "s", Topic: "diplip.frames.s", ResultsTopic: "diplip.results.s", Partitions: 1}
	act := wire.Activation{Stream: st, Brokers: []string{"127.0.0.1:1"},
		Deployment: wire.Deployment{Function: "fn", Stream: "s", Digest: digest, Max: 1, Batch: 1, Device: wire.DeviceCPU, Policy: wire.PolicyReplay}}
	b, _ := json.Marshal(act)
	t0 := time.Now()
	m, err := nc.Request(wire.ActivateSubject(id), b, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var rep wire.Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OK {
		t.Fatalf("activation succeeded; want it to fail")
	}
	return rep.Error, time.Since(t0)
}

// A registry that hangs cannot leave a runner "loading" for ever: the pull has a timeout
// and the activation fails saying so.
func TestAgentPullTimesOut(t *testing.T) {
	host := hangingRegistry(t)
	agent, nc := startAgent(t, runner.AgentConfig{PullTimeout: time.Second})
	msg, took := activate(t, nc, agent.ID(), host+"/fn/x@sha256:"+strings.Repeat("a", 64))
	if !strings.Contains(msg, "took longer than 1s") || took > 20*time.Second {
		t.Fatalf("activation error %q after %v; want a pull timeout after about 1 s", msg, took)
	}
}

// A deactivation that arrives while the runner is still pulling cancels the load: the
// activation fails at once and the runner is idle, not active with a deployment that was
// taken away.
func TestAgentDeactivationWhileLoading(t *testing.T) {
	host := hangingRegistry(t)
	agent, nc := startAgent(t, runner.AgentConfig{PullTimeout: time.Minute})
	go func() {
		time.Sleep(500 * time.Millisecond)
		_, _ = nc.Request(wire.DeactivateSubject(agent.ID()), nil, 10*time.Second)
	}()
	msg, took := activate(t, nc, agent.ID(), host+"/fn/x@sha256:"+strings.Repeat("b", 64))
	if took > 10*time.Second || !strings.Contains(msg, "deactivated while pulling") {
		t.Fatalf("activation error %q after %v; want it cancelled by the deactivation", msg, took)
	}
	beats, _ := nc.SubscribeSync(wire.SubjectHeartbeat)
	testkit.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		m, err := beats.NextMsg(5 * time.Second)
		if err != nil {
			return err
		}
		var hb wire.Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil {
			return err
		}
		if hb.ID == agent.ID() && hb.State != wire.StateIdle {
			return fmt.Errorf("runner %s", hb.State)
		}
		return nil
	})
}
