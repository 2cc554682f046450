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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

// NvidiaGPUs asks nvidia-smi for the machine's GPUs; none when it is missing or fails.
func NvidiaGPUs() []wire.GPU {
	out, err := exec.Command("nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return nil
	}
	var gpus []wire.GPU
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) != 3 {
			continue
		}
		var g wire.GPU
		g.Index, _ = strconv.Atoi(strings.TrimSpace(f[0]))
		g.Name = strings.TrimSpace(f[1])
		g.MemoryMB, _ = strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		gpus = append(gpus, g)
	}
	return gpus
}

// errPermanent marks activation errors that a retry would meet again.
var errPermanent = errors.New("activation failed")

// ErrDeviceUnavailable is wrapped by a LoadFunc's error when the device cannot be used
// here (no such GPU, no CUDA provider, missing CUDA libraries): a deployment that asked
// for "any" device falls back to the CPU; one that named the device fails with the reason.
var ErrDeviceUnavailable = errors.New("device unavailable")

// LoadFunc loads the function in dir for device, returning the model, whether it runs a
// batch in one run, and a way to free it. functions/onnx provides it; it is a parameter so
// this package stays free of cgo.
type LoadFunc func(dir string, device wire.Device, lanes int) (m Model, batched bool, free func() error, err error)

// AgentConfig configures a runner process's agent.
type AgentConfig struct {
	ID    string
	NATS  *nats.Conn
	Cache *registry.Cache
	Load  LoadFunc
	// Devices are where this runner can run models; default [cpu].
	Devices []wire.Device
	// GPUs and Providers are announced as they are (see NvidiaGPUs).
	GPUs      []wire.GPU
	Providers []string
	// Token is the platform's token; it is sent only to the gateway's own registry (the
	// activation names it), never to other registries.
	Token string
	// Lanes is how many inferences a worker runs at once (see WorkerConfig.Lanes), unless
	// the deployment says. Default 1.
	Lanes int
	// Zones are the cameras' counting zones for deployments that track (a
	// controlplane.ZoneView the caller runs); nil: no zones.
	Zones ZoneSource
	// MetricsURL is where this runner serves /metrics, announced in heartbeats.
	MetricsURL string
	// Interval between heartbeats. Default 1s.
	Interval time.Duration
	// PullTimeout bounds pulling a function image. Default 2 minutes.
	PullTimeout time.Duration
	Logger      *slog.Logger
}

// Agent is a runner: it announces itself, and on activation pulls the function image by
// digest, loads it and runs a Worker; on deactivation it stops the worker and frees the
// model, going back to idle (no model, no group membership). The process's one Kafka
// client is made on the first activation and kept until Run returns.
type Agent struct {
	cfg AgentConfig
	log *slog.Logger

	mu         sync.Mutex // guards the fields below
	active     *wire.Activation
	worker     *Worker
	stopWorker context.CancelFunc
	workerDone chan struct{}
	free       func() error
	batchMode  string
	loading    string             // the deployment being pulled and loaded, if any
	cancelLoad context.CancelFunc // cancels that load (a deactivation while loading)
	lastErr    string
	lastN      int64
	lastAt     time.Time
	kafka      *kafkaclient.Client
}

// NewAgent checks cfg; Run announces the runner and serves activations.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.NATS == nil || cfg.Cache == nil || cfg.Load == nil {
		return nil, errors.New("runner: AgentConfig needs NATS, Cache and Load")
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if len(cfg.Devices) == 0 {
		cfg.Devices = []wire.Device{wire.DeviceCPU}
	}
	cfg.Lanes = max(cfg.Lanes, 1)
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("component", "runner", "runner", cfg.ID), lastAt: time.Now()}, nil
}

// ID is the runner's id.
func (a *Agent) ID() string { return a.cfg.ID }

// Run announces the runner every Interval and serves activation and deactivation
// requests until ctx ends; then it deactivates (the worker finishes its batches and
// commits), unsubscribes and closes the Kafka client.
func (a *Agent) Run(ctx context.Context) error {
	var handlers sync.WaitGroup // activation requests in progress
	actSub, err := a.cfg.NATS.Subscribe(wire.ActivateSubject(a.cfg.ID), func(m *nats.Msg) {
		handlers.Go(func() { a.onActivate(ctx, m) })
	})
	if err != nil {
		return fmt.Errorf("runner: subscribing to activations: %w", err)
	}
	deSub, err := a.cfg.NATS.Subscribe(wire.DeactivateSubject(a.cfg.ID), a.onDeactivate)
	if err != nil {
		actSub.Unsubscribe()
		return fmt.Errorf("runner: subscribing to deactivations: %w", err)
	}
	a.beat()
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
			a.beat()
		}
	}
	actSub.Unsubscribe()
	deSub.Unsubscribe()
	a.Deactivate() // also cancels a load in progress
	handlers.Wait()
	a.Deactivate() // an activation that finished while we waited
	a.mu.Lock()
	kc := a.kafka
	a.kafka = nil
	a.mu.Unlock()
	if kc != nil {
		kc.Close()
	}
	return nil
}

func (a *Agent) beat() {
	a.mu.Lock()
	hb := wire.Heartbeat{ID: a.cfg.ID, PID: os.Getpid(), CPUs: runtime.NumCPU(), MemoryMB: totalMemoryMB(),
		Devices: a.cfg.Devices, Providers: a.cfg.Providers, GPUs: a.cfg.GPUs, State: wire.StateIdle, Sent: time.Now(),
		MetricsURL: a.cfg.MetricsURL, LastError: a.lastErr, Lanes: a.cfg.Lanes}
	hb.Host, _ = os.Hostname()
	if a.loading != "" {
		hb.State, hb.Deployment = wire.StateLoading, a.loading
	}
	if a.active != nil && a.worker != nil {
		hb.State, hb.Deployment, hb.Digest = wire.StateActive, a.active.Deployment.Key(), a.active.Deployment.Digest
		hb.Generation = a.active.Deployment.Generation
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
	a.mu.Unlock()
	b, _ := json.Marshal(hb)
	_ = a.cfg.NATS.Publish(wire.SubjectHeartbeat, b)
}

func respond(m *nats.Msg, r wire.Reply) {
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

func (a *Agent) onActivate(ctx context.Context, m *nats.Msg) {
	var act wire.Activation
	if err := json.Unmarshal(m.Data, &act); err != nil {
		respond(m, wire.Reply{Error: "activation is not valid JSON: " + err.Error()})
		return
	}
	t0 := time.Now()
	err := a.activate(ctx, act)
	a.mu.Lock()
	a.lastErr = ""
	if err != nil {
		a.lastErr = err.Error()
	}
	a.mu.Unlock()
	if err != nil {
		a.log.Error("activation failed", "deployment", act.Deployment.Key(), "err", err)
		respond(m, wire.Reply{Error: err.Error(), Permanent: errors.Is(err, errPermanent)})
		a.beat()
		return
	}
	cold := time.Since(t0)
	a.log.Info("activated", "deployment", act.Deployment.Key(), "digest", act.Deployment.Digest, "cold_start", cold)
	respond(m, wire.Reply{OK: true, ColdStartMs: float64(cold.Microseconds()) / 1000})
	a.beat()
}

func (a *Agent) activate(ctx context.Context, act wire.Activation) error {
	lctx, cancel := context.WithTimeout(ctx, a.cfg.PullTimeout)
	defer cancel()
	a.mu.Lock()
	switch {
	case a.active != nil && a.active.Deployment.Key() == act.Deployment.Key() && a.active.Deployment.Digest == act.Deployment.Digest &&
		a.active.Deployment.Generation == act.Deployment.Generation:
		a.mu.Unlock()
		return nil // already doing exactly this
	case a.active != nil:
		a.mu.Unlock()
		return fmt.Errorf("runner %s is busy with %s", a.cfg.ID, a.active.Deployment.Key())
	case a.loading != "":
		a.mu.Unlock()
		return fmt.Errorf("runner %s is loading %s", a.cfg.ID, a.loading)
	}
	a.loading, a.cancelLoad = act.Deployment.Key(), cancel // heartbeats say "loading" while the lock is free
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.loading, a.cancelLoad = "", nil
		a.mu.Unlock()
	}()

	ref, err := name.NewDigest(act.Deployment.Digest)
	if err != nil {
		return fmt.Errorf("deployment digest %q: %w", act.Deployment.Digest, err)
	}
	dir, spec, err := a.cfg.Cache.Pull(lctx, ref, remote.WithAuthFromKeychain(registry.SelfKeychain(act.Registry, a.cfg.Token)))
	if err != nil {
		switch {
		case errors.Is(lctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("pulling %s took longer than %v: %w", ref, a.cfg.PullTimeout, err)
		case lctx.Err() != nil:
			return fmt.Errorf("deactivated while pulling %s", ref)
		}
		return err
	}
	device := act.Deployment.Device
	if device == wire.DeviceAny || device == "" {
		device = a.cfg.Devices[len(a.cfg.Devices)-1] // the last listed is the best (GPU after cpu)
	}
	if !slices.Contains(a.cfg.Devices, device) {
		return fmt.Errorf("device %s: this runner has %v", device, a.cfg.Devices)
	}
	lanes := a.cfg.Lanes
	if act.Deployment.Lanes > 0 {
		lanes = act.Deployment.Lanes
	}
	model, batched, free, err := a.cfg.Load(dir, device, lanes)
	if anyDevice := act.Deployment.Device == wire.DeviceAny || act.Deployment.Device == ""; err != nil && anyDevice &&
		device != wire.DeviceCPU && errors.Is(err, ErrDeviceUnavailable) {
		a.log.Warn("the GPU cannot be used; the deployment allows any device, so it runs on the CPU", "device", device, "err", err)
		device = wire.DeviceCPU
		model, batched, free, err = a.cfg.Load(dir, device, lanes)
	}
	if err != nil { // the same image on the same device fails the same way next time
		return fmt.Errorf("%w: loading %s on %s: %w", errPermanent, spec.Name, device, err)
	}
	if lctx.Err() != nil { // deactivated (or stopped) while loading
		_ = free()
		return fmt.Errorf("deactivated while loading %s", act.Deployment.Key())
	}
	var maxDelay time.Duration // a per-frame model gains nothing from waiting for a batch
	if batched {
		maxDelay = time.Duration(spec.Batch.MaxDelay)
	}
	kc := a.kafkaClient(act.Brokers)
	w, err := NewWorker(WorkerConfig{Kafka: kc, Deployment: act.Deployment, Stream: act.Stream, Model: model,
		Lanes: lanes, MaxDelay: maxDelay, Zones: a.cfg.Zones, NATS: a.cfg.NATS, Logger: a.cfg.Logger})
	if err != nil {
		_ = free()
		return err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx)) // Deactivate stops it, in order
	done := make(chan struct{})
	a.mu.Lock()
	a.active, a.worker, a.free, a.stopWorker, a.workerDone = &act, w, free, stop, done
	a.batchMode = "per-frame"
	if batched {
		a.batchMode = "batch"
	}
	a.lastN = 0
	a.mu.Unlock()
	go func() { // owned: Deactivate waits for done
		defer close(done)
		if err := w.Run(wctx); err != nil {
			a.log.Error("worker stopped", "deployment", act.Deployment.Key(), "err", err)
			a.mu.Lock()
			a.lastErr = err.Error()
			a.mu.Unlock()
		}
	}()
	return nil
}

// kafkaClient returns the process's Kafka client for brokers, replacing one made for
// another cluster.
func (a *Agent) kafkaClient(brokers []string) *kafkaclient.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kafka != nil && slices.Equal(a.kafka.Brokers(), brokers) {
		return a.kafka
	}
	if a.kafka != nil {
		a.kafka.Close()
	}
	a.kafka = kafkaclient.NewWithConfig(brokers, kafkaclient.RunnerConfig("diplip-runner-"+a.cfg.ID))
	return a.kafka
}

func (a *Agent) onDeactivate(m *nats.Msg) {
	a.Deactivate()
	respond(m, wire.Reply{OK: true})
	a.beat()
}

// Deactivate stops the worker (finishing its batches, committing, leaving the group) and
// frees the model; a load in progress is cancelled. It does nothing on an idle runner.
func (a *Agent) Deactivate() {
	a.mu.Lock()
	if a.cancelLoad != nil {
		a.cancelLoad()
	}
	w, free, act, stop, done := a.worker, a.free, a.active, a.stopWorker, a.workerDone
	a.worker, a.free, a.active, a.stopWorker, a.workerDone = nil, nil, nil, nil, nil
	a.mu.Unlock()
	if w == nil {
		return
	}
	stop()
	<-done
	if err := free(); err != nil {
		a.log.Warn("freeing the model", "err", err)
	}
	debug.FreeOSMemory() // give the model's memory back to the OS, not just to Go's heap
	a.log.Info("deactivated", "deployment", act.Deployment.Key())
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
