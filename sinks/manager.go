package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// ManagerConfig is what a Manager needs.
type ManagerConfig struct {
	// Sinks is the control plane's sinks bucket. Required.
	Sinks *controlplane.Sinks
	// Store resolves streams. Required.
	Store *controlplane.Store
	// Zones, when not nil, checks zone filters against the stream's zones.
	Zones *controlplane.Zones
	// Kafka is the process's client. Required.
	Kafka *kafkaclient.Client
	// Gateway is the base URL events name their snapshots by; "": none.
	Gateway string
	// Getenv reads secrets (--secret-env, --password-env). Default os.Getenv.
	Getenv func(string) string
	// Backoff and MaxBackoff: see Config.
	Backoff, MaxBackoff time.Duration
	// Poll is how often Run reads the sink records and reports its sinks' status. Default 1 s.
	Poll time.Duration
	// Process names this process in the status reports. Default HOSTNAME-PID.
	Process string
	Logger  *slog.Logger
}

// Manager runs the sinks of the control plane (Run) and changes them (Add, Remove, …),
// answering in the API's terms. With several processes running sinks, each sink's
// consumer group shares the work among them.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	mu       sync.Mutex
	running  map[string]*running
	startErr map[string]error // why a recorded sink does not run here
}

type running struct {
	spec   wire.Sink
	sink   *Sink
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager checks cfg and returns a manager.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Sinks == nil || cfg.Store == nil || cfg.Kafka == nil {
		return nil, errors.New("sinks: ManagerConfig needs Sinks, Store and Kafka")
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Process == "" {
		host, _ := os.Hostname()
		cfg.Process = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{cfg: cfg, log: cfg.Logger.With("component", "sinks"), running: map[string]*running{}, startErr: map[string]error{}}, nil
}

// Run runs every recorded sink, starting and stopping them as records come and go, until
// ctx ends; then it stops them all and waits for them.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Poll)
	defer t.Stop()
	defer m.stopAll()
	for {
		if err := m.reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("sinks: reading the records", "err", err)
		}
		m.report(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Manager) reconcile(ctx context.Context) error {
	list, err := m.cfg.Sinks.List(ctx)
	if err != nil {
		return err
	}
	want := map[string]wire.Sink{}
	for _, s := range list {
		want[s.Name] = s
	}
	m.mu.Lock()
	var stop []*running
	for name, r := range m.running {
		if w, ok := want[name]; !ok || !w.Created.Equal(r.spec.Created) {
			stop = append(stop, r)
			delete(m.running, name)
		}
	}
	for name := range m.startErr {
		if _, ok := want[name]; !ok {
			delete(m.startErr, name)
		}
	}
	m.mu.Unlock()
	for _, r := range stop {
		r.cancel()
		<-r.done
		forgetMetrics(r.spec.Name)
	}
	for name, spec := range want {
		m.mu.Lock()
		_, ok := m.running[name]
		m.mu.Unlock()
		if ok {
			continue
		}
		err := m.start(ctx, spec)
		m.mu.Lock()
		if prev := m.startErr[name]; err != nil && (prev == nil || prev.Error() != err.Error()) {
			m.log.Warn("sinks: not started", "sink", name, "err", err)
		}
		if err != nil {
			m.startErr[name] = err
		} else {
			delete(m.startErr, name)
		}
		m.mu.Unlock()
	}
	return nil
}

func (m *Manager) start(ctx context.Context, spec wire.Sink) error {
	st, err := m.cfg.Store.Stream(ctx, spec.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", spec.Stream, err)
	}
	target, err := NewTarget(spec, m.cfg.Getenv)
	if err != nil {
		return err
	}
	s, err := New(Config{Spec: spec, Topic: st.ResultsTopic, Kafka: m.cfg.Kafka, Target: target, Gateway: m.cfg.Gateway,
		Backoff: m.cfg.Backoff, MaxBackoff: m.cfg.MaxBackoff, Logger: m.cfg.Logger})
	if err != nil {
		target.Close()
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	r := &running{spec: spec, sink: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer target.Close()
		for sctx.Err() == nil {
			if err := s.Run(sctx); err != nil {
				s.stats.fail(err, true)
				m.log.Warn("sink stopped; restarting", "sink", spec.Name, "err", err)
				_ = sleep(sctx, 2*time.Second)
			}
		}
	}()
	m.mu.Lock()
	m.running[spec.Name] = r
	m.mu.Unlock()
	return nil
}

// report records the status of every sink this process runs (or failed to start), for
// the gateways that list them.
func (m *Manager) report(ctx context.Context) {
	now := time.Now().UTC()
	var out []wire.SinkStatus
	m.mu.Lock()
	for name, r := range m.running {
		st := r.sink.Status()
		out = append(out, wire.SinkStatus{Sink: name, Process: m.cfg.Process, State: st.State, Delivered: st.Delivered, Failed: st.Failed,
			Retrying: st.Retrying, Dead: st.DeadLettered, LastError: st.LastError, LastErrorAt: st.LastErrorAt, Updated: now})
	}
	for name, err := range m.startErr {
		out = append(out, wire.SinkStatus{Sink: name, Process: m.cfg.Process, State: api.SinkFailed, LastError: err.Error(), LastErrorAt: now, Updated: now})
	}
	m.mu.Unlock()
	for _, st := range out {
		if err := m.cfg.Sinks.PutStatus(ctx, st); err != nil && ctx.Err() == nil {
			m.log.Warn("sinks: reporting status", "sink", st.Sink, "err", err)
		}
	}
}

// merge adds other processes' reports to this one's status of a sink: counters add up;
// the state is the worst of the processes' (failed, retrying, running, starting).
func merge(own api.SinkStatus, ownHere bool, reports []wire.SinkStatus, self string) api.SinkStatus {
	rank := map[string]int{api.SinkStopped: 0, api.SinkStarting: 1, api.SinkRunning: 2, api.SinkRetrying: 3, api.SinkFailed: 4}
	out := own
	for _, r := range reports {
		if r.Process == self && ownHere {
			continue // this process's own status is fresher than its report
		}
		out.Delivered += r.Delivered
		out.Failed += r.Failed
		out.Retrying += r.Retrying
		out.DeadLettered += r.Dead
		if rank[r.State] > rank[out.State] {
			out.State = r.State
		}
		if r.LastErrorAt.After(out.LastErrorAt) {
			out.LastError, out.LastErrorAt = r.LastError, r.LastErrorAt
		}
	}
	return out
}

func (m *Manager) stopAll() {
	m.mu.Lock()
	all := slices.Collect(maps.Values(m.running))
	m.running = map[string]*running{}
	m.mu.Unlock()
	for _, r := range all {
		r.cancel()
	}
	for _, r := range all {
		<-r.done
	}
}

// NewTarget makes the target of spec, reading its secrets with getenv.
func NewTarget(spec wire.Sink, getenv func(string) string) (Target, error) {
	switch {
	case spec.Webhook != nil:
		var secret []byte
		if v := spec.Webhook.SecretEnv; v != "" {
			if secret = []byte(getenv(v)); len(secret) == 0 {
				return nil, fmt.Errorf("sink %s: environment variable %s (its --secret-env) is unset in this process", spec.Name, v)
			}
		}
		return NewWebhook(spec.Name, spec.Webhook.URL, secret, spec.Webhook.Headers, spec.AllowLinkLocal), nil
	case spec.MQTT != nil:
		var password string
		if v := spec.MQTT.PasswordEnv; v != "" {
			if password = getenv(v); password == "" {
				return nil, fmt.Errorf("sink %s: environment variable %s (its --password-env) is unset in this process", spec.Name, v)
			}
		}
		return NewMQTT(spec.Name, spec.MQTT.URL, spec.MQTT.TopicPrefix, spec.MQTT.Username, password)
	}
	return nil, fmt.Errorf("sink %s has no target", spec.Name)
}

var (
	webhookSchemes = map[string]string{"http": "80", "https": "443"}
	mqttSchemes    = map[string]string{"mqtt": "1883", "tcp": "1883", "mqtts": "8883", "ssl": "8883"}
)

// Spec checks a request and returns the sink it records (without its Created time). It
// checks the target's URL (CheckURL), the stream, and the zone and class filters.
func (m *Manager) Spec(ctx context.Context, req api.SinkRequest) (wire.Sink, error) {
	s := wire.Sink{Name: req.Name, Stream: req.Stream, Function: req.Function, Events: req.Events, Classes: req.Classes,
		Cameras: req.Cameras, Zones: req.Zones, MinScore: req.MinScore, MaxAttempts: req.MaxAttempts, AllowLinkLocal: req.AllowLinkLocal}
	if err := wire.ValidName("sink", req.Name); err != nil {
		return s, errorf(ErrInvalid, "%v", err)
	}
	if req.Stream == "" {
		return s, errorf(ErrInvalid, "sink %s: --stream is required", req.Name)
	}
	for _, e := range req.Events {
		if !slices.Contains(kinds, e) {
			return s, errorf(ErrInvalid, "event kind %q: want some of %s", e, strings.Join(kinds, ","))
		}
	}
	if req.MinScore < 0 || req.MinScore > 1 {
		return s, errorf(ErrInvalid, "min score %v: want 0 to 1", req.MinScore)
	}
	if req.MaxAttempts < 0 {
		return s, errorf(ErrInvalid, "max attempts %d: want 1 or more (0: %d)", req.MaxAttempts, DefaultMaxAttempts)
	}
	for _, d := range []struct {
		flag, v string
		to      *wire.Duration
	}{{"cooldown", req.Cooldown, &s.Cooldown}, {"max age", req.MaxAge, &s.MaxAge}} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil || v < 0 {
			return s, errorf(ErrInvalid, "%s %q: want a duration like 5s", d.flag, d.v)
		}
		*d.to = wire.Duration(v)
	}
	for k := range req.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return s, errorf(ErrInvalid, "header %q: want NAME=VALUE with a plain name", k)
		}
	}
	switch {
	case (req.Webhook == "") == (req.MQTT == ""):
		return s, errorf(ErrInvalid, "sink %s: give one target, --webhook URL or --mqtt mqtt://HOST:PORT", req.Name)
	case req.Webhook != "":
		if err := CheckURL(ctx, "webhook url", req.Webhook, webhookSchemes, req.AllowLinkLocal); err != nil {
			return s, err
		}
		s.Webhook = &wire.WebhookTarget{URL: req.Webhook, SecretEnv: req.SecretEnv, Headers: req.Headers}
	default:
		if err := CheckURL(ctx, "mqtt url", req.MQTT, mqttSchemes, req.AllowLinkLocal); err != nil {
			return s, err
		}
		if strings.ContainsAny(req.TopicPrefix, "+#") {
			return s, errorf(ErrInvalid, "topic prefix %q: no MQTT wildcards (+, #)", req.TopicPrefix)
		}
		s.MQTT = &wire.MQTTTarget{URL: req.MQTT, TopicPrefix: req.TopicPrefix, Username: req.Username, PasswordEnv: req.PasswordEnv}
	}
	st, err := m.cfg.Store.Stream(ctx, req.Stream)
	if errors.Is(err, controlplane.ErrNotFound) {
		return s, errorf(ErrNotFound, "stream %q not found; create it with: diplip stream create %s", req.Stream, req.Stream)
	} else if err != nil {
		return s, err
	}
	if req.Function != "" {
		if _, err := m.cfg.Store.Function(ctx, req.Function); errors.Is(err, controlplane.ErrNotFound) {
			return s, errorf(ErrInvalid, "function %q is not registered (see: diplip fn ls)", req.Function)
		} else if err != nil {
			return s, err
		}
	}
	if err := m.checkZones(ctx, req); err != nil {
		return s, err
	}
	return s, m.checkClasses(ctx, st, req.Classes)
}

func (m *Manager) checkZones(ctx context.Context, req api.SinkRequest) error {
	if len(req.Zones) == 0 || m.cfg.Zones == nil {
		return nil
	}
	zs, err := m.cfg.Zones.List(ctx, req.Stream)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, z := range zs {
		if len(req.Cameras) == 0 || slices.Contains(req.Cameras, z.Camera) {
			known[z.Name] = true
		}
	}
	for _, z := range req.Zones {
		if !known[z] {
			return errorf(ErrInvalid, "zone %q is not a zone of stream %s (see: diplip zone ls %s)", z, req.Stream, req.Stream)
		}
	}
	return nil
}

// checkClasses checks class filters against the classes in the stream's recent results
// (labels or class ids); a stream with no results yet cannot be checked.
func (m *Manager) checkClasses(ctx context.Context, st wire.Stream, classes []string) error {
	if len(classes) == 0 {
		return nil
	}
	recent, err := m.cfg.Kafka.LastResults(ctx, st.ResultsTopic, 500)
	if err != nil {
		return errorf(ErrUpstream, "kafka: %v", err)
	}
	seen := map[string]bool{}
	for _, b := range recent {
		var r wire.Result
		if json.Unmarshal(b, &r) != nil {
			continue
		}
		for _, d := range r.Detections {
			seen[label(d.ClassID, d.Label)], seen[strconv.Itoa(d.ClassID)] = true, true
		}
		for _, c := range r.Counts {
			seen[label(c.ClassID, c.Label)], seen[strconv.Itoa(c.ClassID)] = true, true
		}
	}
	if len(seen) == 0 {
		return nil
	}
	for _, c := range classes {
		if !seen[c] {
			names := slices.Sorted(maps.Keys(seen))
			return errorf(ErrInvalid, "class %q is in none of stream %s's recent results (seen: %s)", c, st.Name, strings.Join(names, ", "))
		}
	}
	return nil
}

// Add checks req and records the sink; its group starts at the results topic's end (it
// sends what happens from now on), and its dead-letter topic is made.
func (m *Manager) Add(ctx context.Context, req api.SinkRequest) (api.Sink, error) {
	spec, err := m.Spec(ctx, req)
	if err != nil {
		return api.Sink{}, err
	}
	if _, err := m.cfg.Sinks.Get(ctx, spec.Name); err == nil {
		return api.Sink{}, errorf(ErrConflict, "sink %q exists; remove it first with: diplip sink rm %s", spec.Name, spec.Name)
	}
	st, err := m.cfg.Store.Stream(ctx, spec.Stream)
	if err != nil {
		return api.Sink{}, err
	}
	dead := kafkaclient.TopicSpec{Name: wire.SinkDeadTopic(spec.Name), Partitions: 1, Replication: max(st.Replication, 1)}
	if err := m.cfg.Kafka.CreateTopics([]kafkaclient.TopicSpec{dead}); err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return api.Sink{}, errorf(ErrUpstream, "kafka: %v", err)
	}
	if err := m.cfg.Kafka.StartGroupAtEnd(wire.SinkGroup(spec.Name), st.ResultsTopic); err != nil {
		return api.Sink{}, errorf(ErrUpstream, "kafka: %v", err)
	}
	spec.Created = time.Now().UTC()
	if err := m.cfg.Sinks.Create(ctx, spec); errors.Is(err, controlplane.ErrExists) {
		return api.Sink{}, errorf(ErrConflict, "sink %q exists; remove it first with: diplip sink rm %s", spec.Name, spec.Name)
	} else if err != nil {
		return api.Sink{}, err
	}
	return m.view(ctx, spec, st), nil
}

func (m *Manager) get(ctx context.Context, name string) (wire.Sink, wire.Stream, error) {
	spec, err := m.cfg.Sinks.Get(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return spec, wire.Stream{}, errorf(ErrNotFound, "sink %q not found (see: diplip sink ls)", name)
	} else if err != nil {
		return spec, wire.Stream{}, err
	}
	st, err := m.cfg.Store.Stream(ctx, spec.Stream)
	return spec, st, err
}

// List lists the sinks with their state in this process and their lag.
func (m *Manager) List(ctx context.Context) ([]api.Sink, error) {
	list, err := m.cfg.Sinks.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Sink, 0, len(list))
	for _, spec := range list {
		st, _ := m.cfg.Store.Stream(ctx, spec.Stream)
		out = append(out, m.view(ctx, spec, st))
	}
	return out, nil
}

// view is spec as listed: no secret, header values hidden, with the sink's status.
func (m *Manager) view(ctx context.Context, spec wire.Sink, st wire.Stream) api.Sink {
	out := api.Sink{Name: spec.Name, Stream: spec.Stream, Function: spec.Function, Events: spec.Events, Classes: spec.Classes,
		Cameras: spec.Cameras, Zones: spec.Zones, MinScore: spec.MinScore, MaxAttempts: spec.MaxAttempts,
		AllowLinkLocal: spec.AllowLinkLocal, Created: spec.Created, Status: api.SinkStatus{State: api.SinkStopped}}
	if out.MaxAttempts == 0 {
		out.MaxAttempts = DefaultMaxAttempts
	}
	out.MaxAge = DefaultMaxAge.String()
	if spec.MaxAge > 0 {
		out.MaxAge = time.Duration(spec.MaxAge).String()
	}
	if spec.Cooldown > 0 {
		out.Cooldown = time.Duration(spec.Cooldown).String()
	}
	if w := spec.Webhook; w != nil {
		out.Target, out.URL, out.SecretEnv = "webhook", redactURL(w.URL), w.SecretEnv
		out.Headers = slices.Sorted(maps.Keys(w.Headers))
	}
	if q := spec.MQTT; q != nil {
		out.Target, out.URL, out.TopicPrefix, out.Username, out.PasswordEnv = "mqtt", redactURL(q.URL), q.TopicPrefix, q.Username, q.PasswordEnv
		if out.TopicPrefix == "" {
			out.TopicPrefix = DefaultTopicPrefix
		}
	}
	m.mu.Lock()
	r, ok := m.running[spec.Name]
	startErr := m.startErr[spec.Name]
	m.mu.Unlock()
	here := ok && r.spec.Created.Equal(spec.Created)
	if here {
		out.Status = r.sink.Status()
	} else if startErr != nil {
		out.Status.State, out.Status.LastError = api.SinkFailed, startErr.Error()
		here = true
	}
	if reports, err := m.cfg.Sinks.Statuses(ctx, spec.Name); err == nil {
		out.Status = merge(out.Status, here, reports, m.cfg.Process)
	}
	if st.ResultsTopic != "" {
		if lag, err := m.cfg.Kafka.Lag(wire.SinkGroup(spec.Name), st.ResultsTopic); err == nil {
			out.Status.Lag = lag
		}
	}
	return out
}

// redactURL hides a password written into a URL.
func redactURL(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.IndexByte(raw[i+3:], '@'); j >= 0 && !strings.ContainsAny(raw[i+3:i+3+j], "/?#") {
			return raw[:i+3] + "REDACTED@" + raw[i+3+j+1:]
		}
	}
	return raw
}

// Remove deletes a sink: its record, then (once this process stopped it) its consumer
// group and dead-letter topic.
func (m *Manager) Remove(ctx context.Context, name string) error {
	if err := m.cfg.Sinks.Delete(ctx, name); errors.Is(err, controlplane.ErrNotFound) {
		return errorf(ErrNotFound, "sink %q not found (see: diplip sink ls)", name)
	} else if err != nil {
		return err
	}
	m.mu.Lock()
	r, ok := m.running[name]
	delete(m.running, name)
	m.mu.Unlock()
	if ok {
		r.cancel()
		<-r.done
		forgetMetrics(name)
	}
	// Another process may still hold the group for up to its poll; its offsets go with it.
	if err := m.cfg.Kafka.DeleteGroup(wire.SinkGroup(name)); err != nil {
		m.log.Warn("sinks: consumer group left behind", "sink", name, "err", err)
	}
	if err := m.cfg.Kafka.DeleteTopics(wire.SinkDeadTopic(name)); err != nil {
		m.log.Warn("sinks: dead-letter topic left behind", "sink", name, "err", err)
	}
	return nil
}

// Test sends one sample event to the sink's target and reports its answer; the target's
// refusal is an answer, not an error.
func (m *Manager) Test(ctx context.Context, name string) (api.SinkTestResult, error) {
	spec, _, err := m.get(ctx, name)
	if err != nil {
		return api.SinkTestResult{}, err
	}
	target, err := NewTarget(spec, m.cfg.Getenv)
	if err != nil {
		return api.SinkTestResult{}, errorf(ErrInvalid, "%v", err)
	}
	defer target.Close()
	now := time.Now().UTC()
	ev := api.SinkEvent{ID: fmt.Sprintf("%s/test/%d", spec.Stream, now.UnixNano()), Kind: KindTest, Sink: spec.Name, Stream: spec.Stream,
		Camera: "test", Function: spec.Function, CaptureTime: now, Zone: "test", Label: "test"}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var answer string
	for {
		answer, err = target.Deliver(ctx, ev)
		if !errors.Is(err, errNotConnected) || sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	res := api.SinkTestResult{Event: ev, OK: err == nil, Answer: answer, Millis: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		res.Answer = err.Error()
	}
	return res, nil
}

// maxDead bounds the dead letters read at once.
const maxDead = 100_000

// Dead lists a sink's dead letters, the last limit of them (limit ≤ 0: all).
func (m *Manager) Dead(ctx context.Context, name string, limit int) ([]api.DeadLetter, error) {
	if _, _, err := m.get(ctx, name); err != nil {
		return nil, err
	}
	var out []api.DeadLetter
	err := m.cfg.Kafka.ReadTopic(ctx, wire.SinkDeadTopic(name), maxDead, func(msg *sarama.ConsumerMessage) error {
		var dl api.DeadLetter
		if json.Unmarshal(msg.Value, &dl) == nil {
			dl.Partition, dl.Offset = msg.Partition, msg.Offset
			out = append(out, dl)
		}
		return nil
	})
	if err != nil {
		return nil, errorf(ErrUpstream, "kafka: %v", err)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// replayGroup keeps how far replay-dead got on the dead-letter topic.
func replayGroup(name string) string { return wire.SinkGroup(name) + ".replay" }

// ReplayDead sends the dead letters not yet replayed to the target again, in order, each
// with up to 3 attempts; one that fails again goes back to the end of the dead-letter
// topic. It stops early, with the rest Remaining, when ctx ends.
func (m *Manager) ReplayDead(ctx context.Context, name string) (api.ReplayDeadResult, error) {
	var res api.ReplayDeadResult
	spec, _, err := m.get(ctx, name)
	if err != nil {
		return res, err
	}
	topic := wire.SinkDeadTopic(name)
	from, err := m.cfg.Kafka.Committed(replayGroup(name), topic)
	if err != nil {
		return res, errorf(ErrUpstream, "kafka: %v", err)
	}
	_, end, err := m.cfg.Kafka.Offsets(topic)
	if err != nil {
		return res, errorf(ErrUpstream, "kafka: %v", err)
	}
	target, err := NewTarget(spec, m.cfg.Getenv)
	if err != nil {
		return res, errorf(ErrInvalid, "%v", err)
	}
	defer target.Close()
	producer, err := m.cfg.Kafka.SyncProducer()
	if err != nil {
		return res, errorf(ErrUpstream, "kafka: %v", err)
	}
	defer producer.Close()
	spec.MaxAttempts, spec.MaxAge = 3, wire.Duration(time.Minute)
	s, err := New(Config{Spec: spec, Topic: topic, Kafka: m.cfg.Kafka, Target: target, Backoff: m.cfg.Backoff, MaxBackoff: 2 * time.Second, Logger: m.cfg.Logger})
	if err != nil {
		return res, err
	}
	var letters []*sarama.ConsumerMessage
	err = m.cfg.Kafka.ReadTopic(ctx, topic, maxDead, func(msg *sarama.ConsumerMessage) error {
		if msg.Offset >= from[msg.Partition] && msg.Offset < end[msg.Partition] {
			letters = append(letters, msg)
		}
		return nil
	})
	if err != nil {
		return res, errorf(ErrUpstream, "kafka: %v", err)
	}
	for i, msg := range letters {
		var dl api.DeadLetter
		if json.Unmarshal(msg.Value, &dl) == nil {
			before := s.stats.dead.Load()
			if err := s.deliver(ctx, producer, dl.Event); err != nil {
				res.Remaining = len(letters) - i
				return res, nil
			}
			if s.stats.dead.Load() > before {
				res.Failed++
			} else {
				res.Replayed++
			}
		}
		if err := m.cfg.Kafka.CommitGroupAt(replayGroup(name), topic, map[int32]int64{msg.Partition: msg.Offset + 1}); err != nil {
			return res, errorf(ErrUpstream, "kafka: %v", err)
		}
	}
	return res, nil
}
