package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/registry"
)

// NATS subjects of the runner protocol. The gateway listens to heartbeats and sends
// activation and deactivation requests to one runner.
const (
	SubjectHeartbeat = "diplip.runners.heartbeat"
)

// ActivateSubject is where runner id takes activation requests.
func ActivateSubject(id string) string { return "diplip.runner." + id + ".activate" }

// DeactivateSubject is where runner id takes deactivation requests.
func DeactivateSubject(id string) string { return "diplip.runner." + id + ".deactivate" }

// Heartbeat is what a runner announces every HeartbeatInterval.
type Heartbeat struct {
	ID       string   `json:"id"`
	Host     string   `json:"host"`
	PID      int      `json:"pid"`
	CPUs     int      `json:"cpus"`
	MemoryMB int64    `json:"memory_mb"`
	Devices  []string `json:"devices"` // "cpu", and "cuda:N" where the CUDA provider works
	// Providers are the ONNX Runtime execution providers that work here.
	Providers []string `json:"providers"`
	// GPUs are what nvidia-smi reports, where it exists.
	GPUs       []GPU   `json:"gpus,omitempty"`
	State      string  `json:"state"` // idle, loading or active
	Deployment string  `json:"deployment,omitempty"`
	Digest     string  `json:"digest,omitempty"`
	Partitions []int32 `json:"partitions,omitempty"`
	Frames     int64   `json:"frames"`
	// RateFPS is frames per second over the last heartbeat interval.
	RateFPS float64 `json:"rate_fps"`
	// BatchMode says how the model runs a batch: "batch" (one run, dynamic batch axis)
	// or "per-frame" (the model's batch axis is fixed at 1).
	BatchMode string `json:"batch_mode,omitempty"`
	// MetricsURL is where the runner serves Prometheus metrics.
	MetricsURL string `json:"metrics_url,omitempty"`
	// Unhealthy says why the active function keeps failing; empty when it does not.
	Unhealthy string    `json:"unhealthy,omitempty"`
	Sent      time.Time `json:"sent"`
}

// GPU is one accelerator as nvidia-smi reports it.
type GPU struct {
	Index    int    `json:"index"`
	Name     string `json:"name"`
	MemoryMB int64  `json:"memory_mb"`
}

// NvidiaGPUs asks nvidia-smi for the machine's GPUs; none when it is missing or fails.
func NvidiaGPUs() []GPU {
	out, err := exec.Command("nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return nil
	}
	var gpus []GPU
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) != 3 {
			continue
		}
		var g GPU
		g.Index, _ = strconv.Atoi(strings.TrimSpace(f[0]))
		g.Name = strings.TrimSpace(f[1])
		g.MemoryMB, _ = strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		gpus = append(gpus, g)
	}
	return gpus
}

// Activation asks a runner to work a deployment.
type Activation struct {
	Deployment controlplane.Deployment `json:"deployment"`
	Stream     controlplane.Stream     `json:"stream"`
	Brokers    []string                `json:"brokers"`
}

// Reply answers an activation or deactivation.
type Reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// ColdStart is how long pulling and loading took, in milliseconds.
	ColdStartMs float64 `json:"cold_start_ms,omitempty"`
}

// LoadFunc loads the function in dir for device, returning the model, whether it runs a
// batch in one run, and a way to free it. functions/onnx provides it; it is a parameter so
// this package stays free of cgo.
type LoadFunc func(dir, device string) (m Model, batched bool, free func() error, err error)

// AgentConfig configures a runner process's agent.
type AgentConfig struct {
	ID      string
	NATS    *nats.Conn
	Cache   *registry.Cache
	Load    LoadFunc
	Devices []string // default ["cpu"]
	// GPUs and Providers are announced as they are (see NvidiaGPUs).
	GPUs      []GPU
	Providers []string
	// MetricsURL is where this runner serves /metrics, announced in heartbeats.
	MetricsURL string
	Interval   time.Duration
	Logger     *slog.Logger
}

// Agent is a runner: it announces itself, and on activation pulls the function image by
// digest, loads it and runs a Worker; on deactivation it stops the worker and frees the
// model, going back to idle (no model, no group membership).
type Agent struct {
	cfg AgentConfig
	log *slog.Logger

	mu        sync.Mutex // guards the fields below
	active    *Activation
	worker    *Worker
	free      func() error
	batchMode string
	loading   string // the deployment being pulled and loaded, if any
	lastN     int64
	lastAt    time.Time
	stopped   bool
}

// StartAgent subscribes to the runner's subjects and starts heartbeats. Close stops it.
func StartAgent(ctx context.Context, cfg AgentConfig) (*Agent, error) {
	if cfg.NATS == nil || cfg.Cache == nil || cfg.Load == nil {
		return nil, errors.New("runner: AgentConfig needs NATS, Cache and Load")
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if len(cfg.Devices) == 0 {
		cfg.Devices = []string{"cpu"}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "runner", "runner", cfg.ID), lastAt: time.Now()}
	if _, err := cfg.NATS.Subscribe(ActivateSubject(cfg.ID), a.onActivate); err != nil {
		return nil, err
	}
	if _, err := cfg.NATS.Subscribe(DeactivateSubject(cfg.ID), a.onDeactivate); err != nil {
		return nil, err
	}
	go a.heartbeats(ctx)
	a.beat()
	return a, nil
}

// ID is the runner's id.
func (a *Agent) ID() string { return a.cfg.ID }

func (a *Agent) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.beat()
		}
	}
}

func (a *Agent) beat() {
	a.mu.Lock()
	hb := Heartbeat{ID: a.cfg.ID, PID: os.Getpid(), CPUs: runtime.NumCPU(), MemoryMB: totalMemoryMB(),
		Devices: a.cfg.Devices, Providers: a.cfg.Providers, GPUs: a.cfg.GPUs, State: "idle", Sent: time.Now(),
		MetricsURL: a.cfg.MetricsURL}
	hb.Host, _ = os.Hostname()
	if a.loading != "" {
		hb.State, hb.Deployment = "loading", a.loading
	}
	if a.active != nil && a.worker != nil {
		hb.State, hb.Deployment, hb.Digest = "active", a.active.Deployment.Key(), a.active.Deployment.Digest
		hb.Partitions = a.worker.Partitions()
		hb.Unhealthy = a.worker.Unhealthy()
		hb.BatchMode = a.batchMode
		hb.Frames = a.worker.Stats.Frames.Load()
		if dt := hb.Sent.Sub(a.lastAt).Seconds(); dt > 0 {
			hb.RateFPS = float64(hb.Frames-a.lastN) / dt
		}
		a.lastN = hb.Frames
	}
	a.lastAt = hb.Sent
	stopped := a.stopped
	a.mu.Unlock()
	if stopped {
		return
	}
	b, _ := json.Marshal(hb)
	_ = a.cfg.NATS.Publish(SubjectHeartbeat, b)
}

func respond(m *nats.Msg, r Reply) {
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

func (a *Agent) onActivate(m *nats.Msg) {
	var act Activation
	if err := json.Unmarshal(m.Data, &act); err != nil {
		respond(m, Reply{Error: "activation is not valid JSON: " + err.Error()})
		return
	}
	t0 := time.Now()
	err := a.activate(act)
	if err != nil {
		a.log.Error("activation failed", "deployment", act.Deployment.Key(), "err", err)
		respond(m, Reply{Error: err.Error()})
		return
	}
	cold := time.Since(t0)
	a.log.Info("activated", "deployment", act.Deployment.Key(), "digest", act.Deployment.Digest, "cold_start", cold)
	respond(m, Reply{OK: true, ColdStartMs: float64(cold.Microseconds()) / 1000})
	a.beat()
}

func (a *Agent) activate(act Activation) error {
	a.mu.Lock()
	switch {
	case a.active != nil && a.active.Deployment.Key() == act.Deployment.Key() && a.active.Deployment.Digest == act.Deployment.Digest:
		a.mu.Unlock()
		return nil // already doing exactly this
	case a.active != nil:
		a.mu.Unlock()
		return fmt.Errorf("runner %s is busy with %s", a.cfg.ID, a.active.Deployment.Key())
	case a.loading != "":
		a.mu.Unlock()
		return fmt.Errorf("runner %s is loading %s", a.cfg.ID, a.loading)
	}
	a.loading = act.Deployment.Key() // heartbeats say "loading" while the lock is free
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.loading = ""
		a.mu.Unlock()
	}()

	ref, err := name.NewDigest(act.Deployment.Digest)
	if err != nil {
		return fmt.Errorf("deployment digest %q: %w", act.Deployment.Digest, err)
	}
	dir, spec, err := a.cfg.Cache.Pull(context.Background(), ref)
	if err != nil {
		return err
	}
	device := act.Deployment.Device
	if device == "any" || device == "" {
		device = a.cfg.Devices[len(a.cfg.Devices)-1] // the last listed is the best (GPU after cpu)
	}
	model, batched, free, err := a.cfg.Load(dir, device)
	if err != nil {
		return fmt.Errorf("loading %s on %s: %w", spec.Name, device, err)
	}
	var maxDelay time.Duration // a per-frame model gains nothing from waiting for a batch
	if batched {
		maxDelay = time.Duration(spec.Batch.MaxDelay)
	}
	w, err := StartWorker(WorkerConfig{Brokers: act.Brokers, Deployment: act.Deployment, Stream: act.Stream, Model: model,
		MaxDelay: maxDelay, NATS: a.cfg.NATS, ClientID: "diplip-runner-" + a.cfg.ID, Logger: a.cfg.Logger})
	if err != nil {
		_ = free()
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.active, a.worker, a.free = &act, w, free
	a.batchMode = "per-frame"
	if batched {
		a.batchMode = "batch"
	}
	a.lastN = 0
	return nil
}

func (a *Agent) onDeactivate(m *nats.Msg) {
	a.Deactivate()
	respond(m, Reply{OK: true})
	a.beat()
}

// Deactivate stops the worker (finishing its batch, committing, leaving the group) and
// frees the model. It does nothing on an idle runner.
func (a *Agent) Deactivate() {
	a.mu.Lock()
	w, free, act := a.worker, a.free, a.active
	a.worker, a.free, a.active = nil, nil, nil
	a.mu.Unlock()
	if w == nil {
		return
	}
	w.Stop()
	if err := free(); err != nil {
		a.log.Warn("freeing the model", "err", err)
	}
	debug.FreeOSMemory() // give the model's memory back to the OS, not just to Go's heap
	a.log.Info("deactivated", "deployment", act.Deployment.Key())
}

// Close deactivates and stops announcing.
func (a *Agent) Close() {
	a.Deactivate()
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
}

// totalMemoryMB reads the machine's memory from /proc/meminfo (0 where unavailable).
func totalMemoryMB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int64
	fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
	return kb / 1024
}
