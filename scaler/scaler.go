package scaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// Driver provides runner processes when no idle registered runner can take work.
// LocalDriver starts `diplip runner` processes on this machine; other engines
// (Kubernetes, Nomad) would be other Drivers.
type Driver interface {
	// Launch asks for one more runner. It returns once the request is made; the runner
	// announces itself over NATS when it is up.
	Launch() error
	// Retire stops runner id if this driver started it, and reports whether it did.
	Retire(id string) bool
}

// Config configures a Scaler.
type Config struct {
	Store *controlplane.Store
	NATS  *nats.Conn
	Kafka *kafkaclient.Client
	// Driver, when not nil, starts runners when no idle one fits; nil: only runners
	// registered by hand are used.
	Driver Driver
	// IdleTimeout: a deployment with no lag and no progress for this long scales to its
	// min; a runner the driver started that has been idle this long is retired. Default 30s.
	IdleTimeout time.Duration
	// Interval between decisions. Default 500ms.
	Interval time.Duration
	// Registry is the gateway's own registry host, told to runners in activations.
	Registry string
	// Lease, when set, makes the scaler act only while it holds the lease: with several
	// gateways on one control plane, one scaler activates and launches runners and the
	// others only measure (two would both activate the same runner). Nil: always act.
	Lease  Lease
	Logger *slog.Logger
}

// Lease is a lock shared by the scalers of a control plane (controlplane.Lease).
type Lease interface {
	// Hold takes or renews the lease and reports whether this scaler holds it.
	Hold(ctx context.Context) (bool, error)
	// Release gives it up.
	Release(ctx context.Context)
}

// DeploymentStatus is the scaler's view of one deployment.
type DeploymentStatus struct {
	Key        string
	Lag        int64
	Runners    []string
	Desired    int
	RateFPS    float64
	ColdStarts int
	LastCold   float64 // ms
	LastError  string
	Unhealthy  string // a runner's reason when the function keeps failing
	Updated    time.Time
}

// runnerState is what the scaler knows of one runner.
type runnerState struct {
	hb        wire.Heartbeat
	seen      time.Time
	idleSince time.Time
}

// deploymentState is what the scaler carries from one pass to the next for a deployment.
type deploymentState struct {
	status    DeploymentStatus
	progress  time.Time
	capacity  float64
	overSince time.Time
	// failed is why activation failed permanently for generation failedGen of the
	// deployment; a new generation (a redeploy) clears it.
	failed    string
	failedGen int
}

// Scaler keeps each deployment's runners between its min and max, following the consumer
// lag: each pass measures (heartbeats, lag), asks Decide, and acts (activation requests,
// driver launches). Run owns every goroutine it starts.
type Scaler struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	runners map[string]*runnerState
	deps    map[string]*deploymentState
	backoff Backoff
	leading bool // this pass acts (it holds the lease, or there is none)
}

// New returns a scaler; Run makes the decisions.
func New(cfg Config) (*Scaler, error) {
	if cfg.Store == nil || cfg.NATS == nil || cfg.Kafka == nil {
		return nil, errors.New("scaler: Config needs Store, NATS and Kafka")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Scaler{cfg: cfg, log: cfg.Logger.With("component", "scaler"),
		runners: map[string]*runnerState{}, deps: map[string]*deploymentState{},
		backoff: Backoff{Min: 5 * time.Second, Max: 2 * time.Minute}}, nil
}

// Run listens to heartbeats and decides every Interval until ctx ends. Activation
// requests in flight are abandoned with ctx and waited for before Run returns.
func (s *Scaler) Run(ctx context.Context) error {
	sub, err := s.cfg.NATS.Subscribe(wire.SubjectHeartbeat, s.onHeartbeat)
	if err != nil {
		return fmt.Errorf("scaler: subscribing to heartbeats: %w", err)
	}
	defer sub.Unsubscribe()
	wake := make(chan struct{}, 1)
	wsub, err := s.cfg.NATS.Subscribe(wire.SubjectWake, func(*nats.Msg) {
		select {
		case wake <- struct{}{}:
		default: // a pass is due anyway
		}
	})
	if err != nil {
		return fmt.Errorf("scaler: subscribing to wake-ups: %w", err)
	}
	defer wsub.Unsubscribe()
	if s.cfg.Lease != nil {
		defer s.cfg.Lease.Release(context.WithoutCancel(ctx))
	}
	var requests sync.WaitGroup
	defer requests.Wait()
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-wake: // a stream got frames: decide now (a deployment at zero wakes sooner)
		}
		if err := s.pass(ctx, &requests); err != nil {
			s.log.Warn("scaler pass failed", "err", err)
		}
	}
}

func (s *Scaler) onHeartbeat(m *nats.Msg) {
	var hb wire.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.ID == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs, ok := s.runners[hb.ID]
	if !ok {
		rs = &runnerState{}
		s.runners[hb.ID] = rs
		s.backoff.Reset()
		s.log.Info("runner registered", "runner", hb.ID, "host", hb.Host, "devices", hb.Devices)
	}
	if hb.State == wire.StateIdle && (rs.hb.State != wire.StateIdle || rs.idleSince.IsZero()) {
		rs.idleSince = time.Now()
	}
	rs.hb, rs.seen = hb, time.Now()
}

// Runners returns the runners heard from recently, by id.
func (s *Scaler) Runners() []wire.Heartbeat {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Heartbeat
	for _, rs := range s.runners {
		out = append(out, rs.hb)
	}
	slices.SortFunc(out, func(x, y wire.Heartbeat) int { return compare(x.ID, y.ID) })
	return out
}

// Status returns the scaler's view of each deployment.
func (s *Scaler) Status() []DeploymentStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DeploymentStatus
	for _, d := range s.deps {
		out = append(out, d.status)
	}
	slices.SortFunc(out, func(x, y DeploymentStatus) int { return compare(x.Key, y.Key) })
	return out
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// failedFor is the permanent failure recorded for d's generation, if any.
func (ds *deploymentState) failedFor(d wire.Deployment) string {
	if ds.failed != "" && ds.failedGen == d.Generation {
		return ds.failed
	}
	return ""
}

func (s *Scaler) dep(key string) *deploymentState {
	d, ok := s.deps[key]
	if !ok {
		d = &deploymentState{status: DeploymentStatus{Key: key}}
		s.deps[key] = d
	}
	return d
}

// views returns the runners as Decide sees them; the caller holds s.mu.
func (s *Scaler) views() []Runner {
	out := make([]Runner, 0, len(s.runners))
	for id, rs := range s.runners {
		out = append(out, Runner{ID: id, State: rs.hb.State, Deployment: rs.hb.Deployment, Digest: rs.hb.Digest,
			RateFPS: rs.hb.RateFPS, Devices: rs.hb.Devices, Generation: rs.hb.Generation})
	}
	return out
}

// pass is one round of measuring, deciding and acting.
func (s *Scaler) pass(ctx context.Context, requests *sync.WaitGroup) error {
	if s.cfg.Lease == nil {
		s.leading = true
	} else {
		held, err := s.cfg.Lease.Hold(ctx)
		if err != nil {
			s.log.Warn("scaler lease", "err", err)
		}
		if held != s.leading {
			s.log.Info("scaler lease", "held", held)
		}
		s.leading = held
	}
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	keys := map[string]bool{}
	for _, d := range deps {
		keys[d.Key()] = true
	}
	s.mu.Lock()
	for id, rs := range s.runners {
		if now.Sub(rs.seen) > 5*time.Second {
			s.log.Warn("runner lost (no heartbeat for 5s)", "runner", id)
			delete(s.runners, id)
		}
	}
	for key := range s.deps {
		if !keys[key] {
			delete(s.deps, key)
			metrics.ConsumerLag.DeleteLabelValues(key)
		}
	}
	orphans := Orphans(s.views(), keys)
	s.mu.Unlock()
	if s.leading {
		for _, id := range orphans {
			s.deactivate(ctx, id)
		}
	}

	for _, d := range deps {
		if err := s.scale(ctx, requests, d, now); err != nil {
			s.mu.Lock()
			s.dep(d.Key()).status.LastError = err.Error()
			s.mu.Unlock()
		}
	}
	if s.leading {
		s.retireIdle(now)
	}
	s.mu.Lock()
	byState := map[wire.State]int{}
	for _, rs := range s.runners {
		byState[rs.hb.State]++
	}
	s.mu.Unlock()
	for _, state := range wire.States {
		metrics.Runners.WithLabelValues(string(state)).Set(float64(byState[state]))
	}
	return nil
}

// scale measures one deployment, decides and acts.
func (s *Scaler) scale(ctx context.Context, requests *sync.WaitGroup, d wire.Deployment, now time.Time) error {
	st, err := s.cfg.Store.Stream(ctx, d.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", d.Stream, err)
	}
	var lag map[int32]int64
	if d.Role == wire.RoleReplay && d.StopAt != nil {
		// A replay's work ends at StopAt, not at the stream's end: its lag is what is left
		// of its window, and once none is left it is done (a second stage's replay: in
		// its input, the first stage's results).
		if lag, err = s.replayLag(ctx, &d, st, now); err != nil {
			return err
		}
	} else if lag, err = s.cfg.Kafka.PartitionLag(d.Group(), d.InputTopic(st)); err != nil { // a second stage's: its first's results
		return fmt.Errorf("lag of %s: %w", d.Group(), err)
	}

	s.mu.Lock()
	ds := s.dep(d.Key())
	runners := s.views()
	var total int64
	for _, l := range lag {
		total += l
	}
	var rate float64
	var unhealthy string
	for _, rs := range s.runners {
		if rs.hb.Deployment == d.Key() && rs.hb.State == wire.StateActive {
			rate += rs.hb.RateFPS
			// A runner with a backlog is not waiting for frames: its rate is its capacity.
			if total > 0 && rs.hb.RateFPS > 0 {
				ds.capacity = max(ds.capacity*0.9, rs.hb.RateFPS)
			}
			if rs.hb.Unhealthy != "" {
				unhealthy = fmt.Sprintf("runner %s: %s", rs.hb.ID, rs.hb.Unhealthy)
			}
		}
	}
	if total > 0 || rate > 0 {
		ds.progress = now
	}
	dec := Decide(Observation{Now: now, Deployment: d, Partitions: st.Partitions, Lag: lag, Runners: runners,
		LastProgress: ds.progress, Capacity: ds.capacity, OverSince: ds.overSince, IdleTimeout: s.cfg.IdleTimeout,
		CanLaunch: s.cfg.Driver != nil && s.backoff.Allowed(now), Failed: ds.failedFor(d)})
	ds.overSince = dec.OverSince
	var working []string
	for _, r := range runners {
		if r.Deployment == d.Key() && (r.State == wire.StateActive || r.State == wire.StateLoading) {
			working = append(working, r.ID)
		}
	}
	slices.Sort(working)
	ds.status.Lag, ds.status.Runners, ds.status.Desired, ds.status.RateFPS = total, working, dec.Desired, rate
	ds.status.Updated, ds.status.Unhealthy = now, unhealthy
	if why := ds.failedFor(d); why != "" && unhealthy == "" {
		ds.status.Unhealthy = why
	}
	if !s.leading { // measured and reported; another gateway's scaler acts
		dec.Activate, dec.Deactivate, dec.Launch = nil, nil, false
	}
	if dec.Launch {
		s.backoff.Launched(now)
	}
	s.mu.Unlock()
	metrics.ConsumerLag.WithLabelValues(d.Key()).Set(float64(total))
	if dec.Reason != "" && (len(dec.Activate) > 0 || len(dec.Deactivate) > 0 || dec.Launch) {
		s.log.Info("scaling", "deployment", d.Key(), "desired", dec.Desired, "runners", len(working), "reason", dec.Reason)
	}

	for _, id := range dec.Activate {
		s.activate(ctx, requests, id, d, st)
	}
	for _, id := range dec.Deactivate {
		s.deactivate(ctx, id)
	}
	if dec.Launch {
		if err := s.cfg.Driver.Launch(); err != nil {
			return fmt.Errorf("launching a runner: %w", err)
		}
	}
	return nil
}

// replayLag measures what is left of a replay's window on each partition and, when
// nothing is, records the replay as done (in the store and in d).
func (s *Scaler) replayLag(ctx context.Context, d *wire.Deployment, st wire.Stream, now time.Time) (map[int32]int64, error) {
	next, err := s.cfg.Kafka.Committed(d.Group(), d.InputTopic(st))
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", d.Group(), err)
	}
	lag := ReplayRemaining(next, d.StopAt)
	var left int64
	for _, l := range lag {
		left += l
	}
	if left == 0 && !d.Finished() && d.Replay != nil {
		if err := s.cfg.Store.MarkReplayDone(ctx, d.Key(), now); err != nil {
			return nil, fmt.Errorf("marking replay %s done: %w", d.Replay.Name, err)
		}
		info := *d.Replay
		info.Done, info.Finished = true, now.UTC()
		d.Replay = &info
		s.log.Info("replay done", "replay", info.Name, "deployment", d.Key(), "frames", info.Total)
	}
	return lag, nil
}

// ReplayRemaining is what is left of a window on each partition: its end (stop) minus
// the next offset the group reads, never negative.
func ReplayRemaining(next, stop map[int32]int64) map[int32]int64 {
	out := make(map[int32]int64, len(stop))
	for p, end := range stop {
		out[p] = max(0, end-next[p])
	}
	return out
}

// activate asks runner id to work d. The request runs in a goroutine the Run call owns
// (loading a model can take a while) and ends with ctx.
func (s *Scaler) activate(ctx context.Context, requests *sync.WaitGroup, id string, d wire.Deployment, st wire.Stream) {
	// The stream as d's runners see it: a shadow's or a replay's results go to its own topic.
	b, _ := json.Marshal(wire.Activation{Deployment: d, Stream: d.ForRunner(st), Brokers: s.cfg.Kafka.Brokers(), Registry: s.cfg.Registry})
	// Mark it busy now so the next pass does not pick it again while it loads.
	s.mu.Lock()
	if rs, ok := s.runners[id]; ok {
		rs.hb.State, rs.hb.Deployment, rs.hb.Digest, rs.hb.RateFPS = wire.StateLoading, d.Key(), d.Digest, 0
		rs.hb.Generation = d.Generation
	}
	s.mu.Unlock()
	requests.Go(func() {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var rep wire.Reply
		m, err := s.cfg.NATS.RequestWithContext(rctx, wire.ActivateSubject(id), b)

		if err == nil {
			err = json.Unmarshal(m.Data, &rep)
		}
		if err == nil && !rep.OK {
			err = errors.New(rep.Error)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		ds := s.dep(d.Key())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			ds.status.LastError = fmt.Sprintf("activating runner %s: %v", id, err)
			if rep.Permanent {
				ds.failed, ds.failedGen = "activation failed on runner "+id+": "+rep.Error+"; fix it and deploy again", d.Generation
			}
			if rs, ok := s.runners[id]; ok {
				rs.hb.State = wire.StateIdle
			}
			s.log.Error("activation failed", "runner", id, "deployment", d.Key(), "err", err)
			return
		}
		ds.status.ColdStarts++
		ds.status.LastCold = rep.ColdStartMs
		ds.status.LastError = ""
		metrics.ColdStarts.WithLabelValues(d.Key()).Observe(rep.ColdStartMs / 1000)
		s.log.Info("runner activated", "runner", id, "deployment", d.Key(), "cold_start_ms", rep.ColdStartMs)
	})
}

func (s *Scaler) deactivate(ctx context.Context, id string) {
	s.mu.Lock()
	if rs, ok := s.runners[id]; ok {
		rs.hb.State, rs.idleSince = wire.StateIdle, time.Now()
	}
	s.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.cfg.NATS.RequestWithContext(rctx, wire.DeactivateSubject(id), nil); err != nil && ctx.Err() == nil {
		s.log.Warn("deactivation not confirmed", "runner", id, "err", err)
	}
}

// retireIdle stops driver-started runners that have been idle for IdleTimeout: an idle
// runner holds no model, but its process still holds memory.
func (s *Scaler) retireIdle(now time.Time) {
	if s.cfg.Driver == nil {
		return
	}
	s.mu.Lock()
	var idle []string
	for id, rs := range s.runners {
		if rs.hb.State == wire.StateIdle && !rs.idleSince.IsZero() && now.Sub(rs.idleSince) > s.cfg.IdleTimeout {
			idle = append(idle, id)
		}
	}
	s.mu.Unlock()
	for _, id := range idle {
		if s.cfg.Driver.Retire(id) {
			s.mu.Lock()
			delete(s.runners, id)
			s.mu.Unlock()
			s.log.Info("idle runner retired", "runner", id)
		}
	}
}
