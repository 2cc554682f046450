package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/runner"
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
	// Close stops every runner this driver started.
	Close()
}

// AutoscalerConfig configures the autoscaler.
type AutoscalerConfig struct {
	Store   *controlplane.Store
	NATS    *nats.Conn
	Brokers []string
	Driver  Driver // nil: only runners registered by hand are used
	// IdleTimeout: a deployment with no lag and no progress for this long scales to its
	// min; a runner the driver started that has been idle this long is retired. Default 30s.
	IdleTimeout time.Duration
	// Interval between decisions. Default 500ms.
	Interval time.Duration
	Logger   *slog.Logger
}

// runnerState is what the autoscaler knows of one runner.
type runnerState struct {
	hb        runner.Heartbeat
	seen      time.Time
	idleSince time.Time
}

// DeploymentStatus is the autoscaler's view of one deployment.
type DeploymentStatus struct {
	Key        string   `json:"key"`
	Lag        int64    `json:"lag"`
	Runners    []string `json:"runners"`
	Desired    int      `json:"desired"`
	RateFPS    float64  `json:"rate_fps"`
	ColdStarts int      `json:"cold_starts"`
	LastCold   float64  `json:"last_cold_start_ms,omitempty"`
	LastError  string   `json:"last_error,omitempty"`
	// Unhealthy carries a runner's reason when the function keeps failing there.
	Unhealthy string    `json:"unhealthy,omitempty"`
	Updated   time.Time `json:"updated"`
}

// Autoscaler keeps each deployment's runners between its min and max, following the
// consumer lag: it activates idle runners (asking the Driver for more when there are
// none), and deactivates runners when a deployment has been idle for IdleTimeout.
type Autoscaler struct {
	cfg AutoscalerConfig
	log *slog.Logger

	mu       sync.Mutex
	runners  map[string]*runnerState
	status   map[string]*DeploymentStatus
	progress map[string]time.Time // deployment key → last time lag was > 0 or frames moved
	launched time.Time            // last Driver.Launch, to avoid launching a crowd
	admin    sarama.ClusterAdmin
	client   sarama.Client
}

// NewAutoscaler subscribes to runner heartbeats. Run makes the decisions.
func NewAutoscaler(cfg AutoscalerConfig) (*Autoscaler, error) {
	if cfg.Store == nil || cfg.NATS == nil || len(cfg.Brokers) == 0 {
		return nil, errors.New("gateway: AutoscalerConfig needs Store, NATS and Brokers")
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
	a := &Autoscaler{cfg: cfg, log: cfg.Logger.With("component", "autoscaler"),
		runners: map[string]*runnerState{}, status: map[string]*DeploymentStatus{}, progress: map[string]time.Time{}}
	if _, err := cfg.NATS.Subscribe(runner.SubjectHeartbeat, a.onHeartbeat); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Autoscaler) onHeartbeat(m *nats.Msg) {
	var hb runner.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.ID == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rs, ok := a.runners[hb.ID]
	if !ok {
		rs = &runnerState{}
		a.runners[hb.ID] = rs
		a.log.Info("runner registered", "runner", hb.ID, "host", hb.Host, "devices", hb.Devices)
	}
	if hb.State == "idle" && (rs.hb.State != "idle" || rs.idleSince.IsZero()) {
		rs.idleSince = time.Now()
	}
	rs.hb, rs.seen = hb, time.Now()
}

// Runners returns the runners heard from recently, by id.
func (a *Autoscaler) Runners() []runner.Heartbeat {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []runner.Heartbeat
	for _, rs := range a.runners {
		out = append(out, rs.hb)
	}
	slices.SortFunc(out, func(x, y runner.Heartbeat) int { return cmpString(x.ID, y.ID) })
	return out
}

// Status returns the autoscaler's view of each deployment.
func (a *Autoscaler) Status() []DeploymentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []DeploymentStatus
	for _, s := range a.status {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(x, y DeploymentStatus) int { return cmpString(x.Key, y.Key) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Run decides every Interval until ctx ends, then deactivates nothing: runners keep
// their work until they are stopped themselves.
func (a *Autoscaler) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	defer a.closeKafka()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.tick(ctx); err != nil {
				a.log.Warn("autoscaler pass failed", "err", err)
			}
		}
	}
}

func (a *Autoscaler) closeKafka() {
	if a.admin != nil {
		a.admin.Close()
	}
	if a.client != nil {
		a.client.Close()
	}
}

func (a *Autoscaler) kafka() (sarama.Client, sarama.ClusterAdmin, error) {
	if a.client != nil && !a.client.Closed() {
		return a.client, a.admin, nil
	}
	c, err := sarama.NewClient(a.cfg.Brokers, kafkaclient.NewConfig("diplip-autoscaler"))
	if err != nil {
		return nil, nil, err
	}
	ad, err := sarama.NewClusterAdminFromClient(c)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	a.client, a.admin = c, ad
	return c, ad, nil
}

// Lag is a deployment's consumer lag: for each partition, the end offset minus the next
// offset the group will read, where a partition without a commit reads from its earliest
// retained offset (not 0: retention may have deleted the start), and lag is never
// negative (a commit can run ahead of a stale end offset read).
func Lag(client sarama.Client, admin sarama.ClusterAdmin, group, topic string) (int64, error) {
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, err
	}
	committed, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return 0, err
	}
	var lag int64
	for _, p := range parts {
		start, end, err := retained(client, topic, p)
		if err != nil {
			return 0, err
		}
		next := start
		if b := committed.GetBlock(topic, p); b != nil && b.Offset >= 0 {
			next = max(b.Offset, start)
		}
		lag += max(0, end-next)
	}
	return lag, nil
}

func (a *Autoscaler) tick(ctx context.Context) error {
	deps, err := a.cfg.Store.Deployments(ctx)
	if err != nil {
		return err
	}
	client, admin, err := a.kafka()
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	now := time.Now()
	keys := map[string]controlplane.Deployment{}
	for _, d := range deps {
		keys[d.Key()] = d
	}

	a.mu.Lock()
	for id, rs := range a.runners {
		if now.Sub(rs.seen) > 5*time.Second {
			a.log.Warn("runner lost (no heartbeat for 5s)", "runner", id)
			delete(a.runners, id)
		}
	}
	// Runners working a deployment that is gone, or an older digest of it (a rolling
	// update: one runner at a time goes idle and is reactivated with the new digest).
	var stale []string
	rolled := map[string]bool{}
	for id, rs := range a.runners {
		if rs.hb.State != "active" {
			continue
		}
		d, ok := keys[rs.hb.Deployment]
		if !ok || (d.Digest != rs.hb.Digest && !rolled[d.Key()]) {
			stale = append(stale, id)
			rolled[rs.hb.Deployment] = true
		}
	}
	a.mu.Unlock()
	for _, id := range stale {
		a.deactivate(id)
	}

	for _, d := range deps {
		if err := a.scale(ctx, client, admin, d, now); err != nil {
			a.mu.Lock()
			a.statusOf(d.Key()).LastError = err.Error()
			a.mu.Unlock()
		}
	}
	a.retireIdle(now)
	a.mu.Lock()
	byState := map[string]int{"idle": 0, "loading": 0, "active": 0}
	for _, rs := range a.runners {
		byState[rs.hb.State]++
	}
	a.mu.Unlock()
	for state, n := range byState {
		metrics.Runners.WithLabelValues(state).Set(float64(n))
	}
	return nil
}

func (a *Autoscaler) statusOf(key string) *DeploymentStatus {
	s, ok := a.status[key]
	if !ok {
		s = &DeploymentStatus{Key: key}
		a.status[key] = s
	}
	return s
}

func (a *Autoscaler) scale(ctx context.Context, client sarama.Client, admin sarama.ClusterAdmin, d controlplane.Deployment, now time.Time) error {
	st, err := a.cfg.Store.Stream(ctx, d.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", d.Stream, err)
	}
	lag, err := Lag(client, admin, d.Group(), st.Topic)
	if err != nil {
		return fmt.Errorf("lag of %s: %w", d.Group(), err)
	}

	a.mu.Lock()
	var active, idle []string
	var rate float64
	var unhealthy string
	for id, rs := range a.runners {
		switch {
		case (rs.hb.State == "active" || rs.hb.State == "loading") && rs.hb.Deployment == d.Key():
			active = append(active, id)
			rate += rs.hb.RateFPS
			if rs.hb.Unhealthy != "" {
				unhealthy = fmt.Sprintf("runner %s: %s", id, rs.hb.Unhealthy)
			}
		case rs.hb.State == "idle" && slices.ContainsFunc(rs.hb.Devices, func(dev string) bool { return deviceFits(d.Device, dev) }):
			idle = append(idle, id)
		}
	}
	slices.Sort(active)
	slices.Sort(idle)
	if lag > 0 || rate > 0 {
		a.progress[d.Key()] = now
	}
	last, seen := a.progress[d.Key()]
	limit := min(d.Max, int(st.Partitions))
	desired := len(active)
	switch {
	case lag > 0 && len(active) == 0:
		desired = 1 // scale from zero on the first frame
	case lag > 0 && rate > 0:
		// Enough runners to drain the lag in about two seconds at the measured rate.
		perRunner := rate / float64(len(active))
		desired = max(len(active), int(math.Ceil(float64(lag)/(perRunner*2))))
	case (!seen || now.Sub(last) > a.cfg.IdleTimeout) && lag == 0:
		desired = d.Min
	}
	desired = min(max(desired, d.Min), limit)
	s := a.statusOf(d.Key())
	s.Lag, s.Runners, s.Desired, s.RateFPS, s.Updated, s.Unhealthy = lag, active, desired, rate, now, unhealthy
	metrics.ConsumerLag.WithLabelValues(d.Key()).Set(float64(lag))
	a.mu.Unlock()

	switch {
	case desired > len(active):
		need := desired - len(active)
		for _, id := range idle[:min(need, len(idle))] {
			a.activate(id, d, st)
		}
		if need > len(idle) && a.cfg.Driver != nil && now.Sub(a.launched) > 5*time.Second {
			a.launched = now
			if err := a.cfg.Driver.Launch(); err != nil {
				return fmt.Errorf("launching a runner: %w", err)
			}
		}
	case desired < len(active):
		a.deactivate(active[len(active)-1])
	}
	return nil
}

func deviceFits(want, have string) bool {
	return want == "any" || want == have || (want == "gpu" && have != "cpu")
}

func (a *Autoscaler) activate(id string, d controlplane.Deployment, st controlplane.Stream) {
	b, _ := json.Marshal(runner.Activation{Deployment: d, Stream: st, Brokers: a.cfg.Brokers})
	// Mark it busy now so the next pass does not pick it again while it loads.
	a.mu.Lock()
	if rs, ok := a.runners[id]; ok {
		rs.hb.State, rs.hb.Deployment, rs.hb.Digest = "active", d.Key(), d.Digest
	}
	a.mu.Unlock()
	go func() {
		var rep runner.Reply
		m, err := a.cfg.NATS.Request(runner.ActivateSubject(id), b, 2*time.Minute)
		if err == nil {
			err = json.Unmarshal(m.Data, &rep)
		}
		if err == nil && !rep.OK {
			err = errors.New(rep.Error)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		s := a.statusOf(d.Key())
		if err != nil {
			s.LastError = fmt.Sprintf("activating runner %s: %v", id, err)
			if rs, ok := a.runners[id]; ok {
				rs.hb.State = "idle"
			}
			a.log.Error("activation failed", "runner", id, "deployment", d.Key(), "err", err)
			return
		}
		s.ColdStarts++
		s.LastCold = rep.ColdStartMs
		metrics.ColdStarts.WithLabelValues(d.Key()).Observe(rep.ColdStartMs / 1000)
		s.LastError = ""
		a.log.Info("runner activated", "runner", id, "deployment", d.Key(), "cold_start_ms", rep.ColdStartMs)
	}()
}

func (a *Autoscaler) deactivate(id string) {
	a.mu.Lock()
	if rs, ok := a.runners[id]; ok {
		rs.hb.State, rs.idleSince = "idle", time.Now()
	}
	a.mu.Unlock()
	if _, err := a.cfg.NATS.Request(runner.DeactivateSubject(id), nil, 30*time.Second); err != nil {
		a.log.Warn("deactivation not confirmed", "runner", id, "err", err)
	}
}

// retireIdle stops driver-started runners that have been idle for IdleTimeout: an idle
// runner holds no model, but its process still holds memory.
func (a *Autoscaler) retireIdle(now time.Time) {
	if a.cfg.Driver == nil {
		return
	}
	a.mu.Lock()
	var idle []string
	for id, rs := range a.runners {
		if rs.hb.State == "idle" && !rs.idleSince.IsZero() && now.Sub(rs.idleSince) > a.cfg.IdleTimeout {
			idle = append(idle, id)
		}
	}
	a.mu.Unlock()
	for _, id := range idle {
		if a.cfg.Driver.Retire(id) {
			a.mu.Lock()
			delete(a.runners, id)
			a.mu.Unlock()
			a.log.Info("idle runner retired", "runner", id)
		}
	}
}
