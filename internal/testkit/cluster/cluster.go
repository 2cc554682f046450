package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/engines/kafkanode"
	"github.com/diplip/diplip/internal/kafkaclient"
)

// Config describes the topology. The zero value plus Dir and Binary is the issue's:
// 3 brokers, 3 NATS servers, 2 gateways, 3 runners.
type Config struct {
	// Dir holds every part's data and logs (Dir/logs/NAME.log). Required.
	Dir string
	// Binary is the diplip binary the gateways and runners run (see BuildBinary). Required.
	Binary string
	// Gateways and Runners are how many of each to run. Defaults 2 and 3.
	Gateways, Runners int
	// KafkaHeapMB is each broker's heap. Default 384.
	KafkaHeapMB int
	// RunnerLanes and RunnerThreads are each runner's --lanes and --threads. Default 1 and 1:
	// several runners share two cores here.
	RunnerLanes, RunnerThreads int
	// IdleTimeout is the gateways' --idle-timeout. Default 30s.
	IdleTimeout time.Duration
	// StartTimeout bounds each part's start. Default 2m.
	StartTimeout time.Duration
	Logger       *slog.Logger
}

func (cfg *Config) fill() error {
	if cfg.Dir == "" || cfg.Binary == "" {
		return errors.New("cluster: Config.Dir and Config.Binary are required")
	}
	if cfg.Gateways == 0 {
		cfg.Gateways = 2
	}
	if cfg.Runners == 0 {
		cfg.Runners = 3
	}
	if cfg.Gateways < 1 || cfg.Gateways > 8 || cfg.Runners < 0 || cfg.Runners > 16 {
		return fmt.Errorf("cluster: %d gateways and %d runners: want 1..8 and 0..16", cfg.Gateways, cfg.Runners)
	}
	if cfg.KafkaHeapMB == 0 {
		cfg.KafkaHeapMB = 384
	}
	if cfg.RunnerLanes == 0 {
		cfg.RunnerLanes = 1
	}
	if cfg.RunnerThreads == 0 {
		cfg.RunnerThreads = 1
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// Root is the host name of this process's own network namespace: the brokers, the NATS
// servers, the test's pushers and checkers live there.
const Root = "root"

// service is something hosts connect to: where it listens, in which namespace.
type service struct {
	name string
	addr string // 127.0.0.1:port, the same in every namespace
	ns   *NetNS // nil: Root
}

// member is a gateway or runner: a host of its own with one process.
type member struct {
	name string
	ns   *NetNS
	port int // gateways: the API's port
	mu   sync.Mutex
	p    *proc
}

type natsServer struct {
	name              string
	store             string
	port, clusterPort int
	mu                sync.Mutex
	p                 *proc
}

// Cluster is a running topology. Its methods are safe for concurrent use.
type Cluster struct {
	cfg     Config
	log     *slog.Logger
	natsBin string

	kafka    *kafkanode.Cluster
	nats     []*natsServer
	gateways []*member
	runners  []*member
	services []*service

	mu    sync.Mutex
	links map[string][]*Link // by client host
}

// BuildBinary builds cmd/diplip into dir and returns its path. It runs `go build` with
// the module's import path, so it works from any directory inside the module.
func BuildBinary(ctx context.Context, dir string) (string, error) {
	return build(ctx, dir, "diplip", "github.com/diplip/diplip/cmd/diplip")
}

func build(ctx context.Context, dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cluster: go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// Start brings the topology up: brokers, NATS servers, a network namespace per gateway
// and runner with the links to every service, the gateways (ready), then the runners.
// On error everything started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	RemoveStaleNetNS()
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger.With("component", "cluster"), links: map[string][]*Link{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.natsBin, err = build(ctx, cfg.Dir, "natsserver", "github.com/diplip/diplip/internal/testkit/cluster/natsserver"); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if c.kafka, err = kafkanode.Start(ctx, kafkanode.Config{Dir: filepath.Join(cfg.Dir, "kafka"), Nodes: 3,
		HeapMB: cfg.KafkaHeapMB, FastStart: true, StartTimeout: cfg.StartTimeout, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	for i, a := range c.kafka.Addrs() {
		c.services = append(c.services, &service{name: fmt.Sprintf("kafka-%d", i), addr: a})
	}
	c.log.Info("brokers up", "took", time.Since(t0))
	if err := c.startNATS(ctx); err != nil {
		return nil, err
	}
	c.log.Info("nats up", "took", time.Since(t0))

	ports, err := kafkanode.FreePorts(cfg.Gateways)
	if err != nil {
		return nil, err
	}
	for j := range cfg.Gateways {
		m := &member{name: fmt.Sprintf("gateway-%d", j), port: ports[j]}
		if m.ns, err = NewNetNS(m.name); err != nil {
			return nil, err
		}
		c.gateways = append(c.gateways, m)
		c.services = append(c.services, &service{name: m.name, addr: fmt.Sprintf("127.0.0.1:%d", m.port), ns: m.ns})
	}
	for k := range cfg.Runners {
		m := &member{name: fmt.Sprintf("runner-%d", k)}
		if m.ns, err = NewNetNS(m.name); err != nil {
			return nil, err
		}
		c.runners = append(c.runners, m)
	}
	// The wiring: every host reaches every service on another host through a link of
	// its own, so that a fault can cut one host off without touching the others.
	hosts := []*member{{name: Root}}
	hosts = append(append(hosts, c.gateways...), c.runners...)
	for _, h := range hosts {
		for _, s := range c.services {
			if s.ns == h.ns || (h.name == Root && s.ns == nil) {
				continue
			}
			if err := c.link(h, s); err != nil {
				return nil, err
			}
		}
	}
	for j := range c.gateways {
		if err := c.StartGateway(ctx, j); err != nil {
			return nil, err
		}
	}
	c.log.Info("gateways up", "took", time.Since(t0))
	for k := range c.runners {
		if err := c.StartRunner(k); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) link(h *member, s *service) error {
	listen := func() (net.Listener, error) { return net.Listen("tcp", s.addr) }
	if h.ns != nil {
		listen = func() (net.Listener, error) { return h.ns.Listen(s.addr) }
	}
	dial := func() (net.Conn, error) { return net.DialTimeout("tcp", s.addr, dialTimeout) }
	if s.ns != nil {
		dial = func() (net.Conn, error) { return s.ns.Dial(s.addr) }
	}
	l, err := NewLink(h.name, s.name, listen, dial)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.links[h.name] = append(c.links[h.name], l)
	c.mu.Unlock()
	return nil
}

func (c *Cluster) logPath(name string) string { return filepath.Join(c.cfg.Dir, "logs", name+".log") }

// LogPath is the log file of a part: kafka-I (the broker's own), nats-I, gateway-J, runner-K.
func (c *Cluster) LogPath(name string) string {
	if rest, ok := strings.CutPrefix(name, "kafka-"); ok {
		i, _ := strconv.Atoi(rest)
		return c.kafka.LogPath(i)
	}
	return c.logPath(name)
}

// --- NATS ---

func (c *Cluster) startNATS(ctx context.Context) error {
	ports, err := kafkanode.FreePorts(6)
	if err != nil {
		return err
	}
	var routes []string
	for i := range 3 {
		n := &natsServer{name: fmt.Sprintf("nats-%d", i), store: filepath.Join(c.cfg.Dir, fmt.Sprintf("nats-%d", i)),
			port: ports[2*i], clusterPort: ports[2*i+1]}
		c.nats = append(c.nats, n)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.clusterPort))
		c.services = append(c.services, &service{name: n.name, addr: fmt.Sprintf("127.0.0.1:%d", n.port)})
	}
	for i := range c.nats {
		if err := c.runNATS(i, routes); err != nil {
			return err
		}
	}
	return c.waitJetStream(ctx)
}

func (c *Cluster) runNATS(i int, routes []string) error {
	n := c.nats[i]
	cmd := exec.Command(c.natsBin, "-name", n.name, "-store", n.store, "-port", strconv.Itoa(n.port),
		"-cluster-port", strconv.Itoa(n.clusterPort), "-routes", strings.Join(routes, ","))
	p, err := startProc(n.name, cmd, c.logPath(n.name))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.p = p
	n.mu.Unlock()
	return nil
}

func (c *Cluster) routes() []string {
	var r []string
	for _, n := range c.nats {
		r = append(r, fmt.Sprintf("nats-route://127.0.0.1:%d", n.clusterPort))
	}
	return r
}

// waitJetStream waits until the NATS cluster answers JetStream requests (a meta leader
// was elected).
func (c *Cluster) waitJetStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	var last error
	for {
		nc, err := nats.Connect(c.NATSURL(), nats.Timeout(2*time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			actx, acancel := context.WithTimeout(ctx, 3*time.Second)
			_, err = js.AccountInfo(actx)
			acancel()
			nc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: NATS JetStream not ready (last: %v); see %s", last, c.logPath("nats-0"))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// NATSURL lists the NATS servers for clients (comma-separated nats:// URLs).
func (c *Cluster) NATSURL() string {
	var u []string
	for _, n := range c.nats {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(u, ",")
}

// NATSPID is NATS server i's process id, 0 when it is not running.
func (c *Cluster) NATSPID(i int) int {
	n := c.nats[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p == nil || n.p.exited() {
		return 0
	}
	return n.p.pid()
}

// KillNATS SIGKILLs NATS server i.
func (c *Cluster) KillNATS(i int) {
	n := c.nats[i]
	n.mu.Lock()
	p := n.p
	n.p = nil
	n.mu.Unlock()
	if p != nil {
		p.stop(syscall.SIGKILL, 10*time.Second)
	}
}

// RestartNATS starts a stopped NATS server i again on its store and waits until the
// cluster answers JetStream requests.
func (c *Cluster) RestartNATS(ctx context.Context, i int) error {
	if c.NATSPID(i) != 0 {
		return fmt.Errorf("cluster: nats-%d is running", i)
	}
	if err := c.runNATS(i, c.routes()); err != nil {
		return err
	}
	return c.waitJetStream(ctx)
}

// NATSOf returns the index of the NATS server host is connected to now (the one with the
// most open connections through host's links), or -1.
func (c *Cluster) NATSOf(host string) int {
	best, most := -1, 0
	for i := range c.nats {
		n := 0
		for _, l := range c.linksOf(host, fmt.Sprintf("nats-%d", i)) {
			n += l.Open()
		}
		if n > most {
			best, most = i, n
		}
	}
	return best
}

// --- Kafka ---

// Kafka is the broker cluster (KillNode, RestartNode, PID, Addrs).
func (c *Cluster) Kafka() *kafkanode.Cluster { return c.kafka }

// Brokers are the bootstrap addresses, the same on every host.
func (c *Cluster) Brokers() []string { return c.kafka.Addrs() }

// BrokerLeadingMost returns the index of the broker that leads the most partitions of
// topic, with how many it leads.
func (c *Cluster) BrokerLeadingMost(topic string) (int, int, error) {
	cfg := kafkaclient.NewConfig("diplip-faults-probe")
	cfg.Net.DialTimeout = 3 * time.Second
	client, err := sarama.NewClient(c.Brokers(), cfg)
	if err != nil {
		return -1, 0, fmt.Errorf("cluster: kafka: %w", err)
	}
	defer client.Close()
	if err := client.RefreshMetadata(topic); err != nil {
		return -1, 0, fmt.Errorf("cluster: metadata of %s: %w", topic, err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		return -1, 0, err
	}
	count := map[string]int{}
	for _, p := range parts {
		b, err := client.Leader(topic, p)
		if err != nil {
			return -1, 0, fmt.Errorf("cluster: leader of %s/%d: %w", topic, p, err)
		}
		count[b.Addr()]++
	}
	best, most := -1, 0
	for i, a := range c.Brokers() {
		if count[a] > most {
			best, most = i, count[a]
		}
	}
	if best < 0 {
		return -1, 0, fmt.Errorf("cluster: no broker leads a partition of %s", topic)
	}
	return best, most, nil
}

// --- gateways ---

// GatewayURL is gateway j's base URL as the root host (the test) reaches it.
func (c *Cluster) GatewayURL(j int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.gateways[j].port)
}

// Gateways is the number of gateways.
func (c *Cluster) Gateways() int { return len(c.gateways) }

// StartGateway starts gateway j (again, on the same state dir and port) and waits until
// its /readyz answers 200.
func (c *Cluster) StartGateway(ctx context.Context, j int) error {
	m := c.gateways[j]
	m.mu.Lock()
	running := m.p != nil && !m.p.exited()
	m.mu.Unlock()
	if running {
		return fmt.Errorf("cluster: %s is running", m.name)
	}
	cmd := m.ns.Command(c.cfg.Binary, "gateway", "--nats", c.NATSURL(), "--kafka", strings.Join(c.Brokers(), ","),
		"--listen", fmt.Sprintf("127.0.0.1:%d", m.port), "--state-dir", filepath.Join(c.cfg.Dir, m.name),
		"--control-plane-replicas", "3", "--idle-timeout", c.cfg.IdleTimeout.String())
	p, err := startProc(m.name, cmd, c.logPath(m.name))
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.p = p
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.GatewayURL(j)+"/readyz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz %d", resp.StatusCode)
		}
		if p.exited() {
			return fmt.Errorf("cluster: %s exited while starting (%v); see %s", m.name, p.err, c.logPath(m.name))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not ready (%v); see %s", m.name, err, c.logPath(m.name))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StopGateway stops gateway j with SIGTERM (as a service manager would) and waits.
func (c *Cluster) StopGateway(j int) { c.stopMember(c.gateways[j], syscall.SIGTERM, 30*time.Second) }

// KillGateway SIGKILLs gateway j.
func (c *Cluster) KillGateway(j int) { c.stopMember(c.gateways[j], syscall.SIGKILL, 10*time.Second) }

func (c *Cluster) stopMember(m *member, sig syscall.Signal, grace time.Duration) {
	m.mu.Lock()
	p := m.p
	m.p = nil
	m.mu.Unlock()
	if p != nil {
		p.stop(sig, grace)
	}
}

// --- runners ---

// Runners is the number of runners.
func (c *Cluster) Runners() int { return len(c.runners) }

// RunnerID is runner k's id, as its heartbeats name it.
func (c *Cluster) RunnerID(k int) string { return c.runners[k].name }

// RunnerIndex is the index of the runner with that id, or -1.
func (c *Cluster) RunnerIndex(id string) int {
	return slices.IndexFunc(c.runners, func(m *member) bool { return m.name == id })
}

// StartRunner starts runner k (again, with the same id and cache). It returns once the
// process runs; the runner announces itself over NATS.
func (c *Cluster) StartRunner(k int) error {
	m := c.runners[k]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != nil && !m.p.exited() {
		return fmt.Errorf("cluster: %s is running", m.name)
	}
	cmd := m.ns.Command(c.cfg.Binary, "runner", "--nats", c.NATSURL(), "--id", m.name,
		"--cache", filepath.Join(c.cfg.Dir, m.name, "cache"), "--lanes", strconv.Itoa(c.cfg.RunnerLanes),
		"--threads", strconv.Itoa(c.cfg.RunnerThreads), "--metrics-listen", "")
	p, err := startProc(m.name, cmd, c.logPath(m.name))
	if err != nil {
		return err
	}
	m.p = p
	return nil
}

// RunnerPID is runner k's process id, 0 when it is not running.
func (c *Cluster) RunnerPID(k int) int {
	m := c.runners[k]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil || m.p.exited() {
		return 0
	}
	return m.p.pid()
}

// KillRunner SIGKILLs runner k.
func (c *Cluster) KillRunner(k int) { c.stopMember(c.runners[k], syscall.SIGKILL, 10*time.Second) }

// StopRunner stops runner k with SIGTERM and waits (it finishes its batch and commits).
func (c *Cluster) StopRunner(k int) { c.stopMember(c.runners[k], syscall.SIGTERM, 30*time.Second) }

// PauseRunner freezes runner k (SIGSTOP); ResumeRunner wakes it (SIGCONT).
func (c *Cluster) PauseRunner(k int) error { return c.signalMember(c.runners[k], syscall.SIGSTOP) }

// ResumeRunner continues a paused runner k.
func (c *Cluster) ResumeRunner(k int) error { return c.signalMember(c.runners[k], syscall.SIGCONT) }

func (c *Cluster) signalMember(m *member, sig syscall.Signal) error {
	m.mu.Lock()
	p := m.p
	m.mu.Unlock()
	if p == nil {
		return fmt.Errorf("cluster: %s is not running", m.name)
	}
	return p.signal(sig)
}

// --- the network ---

// linksOf returns host's links to the services whose name is service or starts with
// service+"-" ("kafka" names every broker).
func (c *Cluster) linksOf(host, service string) []*Link {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Link
	for _, l := range c.links[host] {
		if l.Service == service || strings.HasPrefix(l.Service, service+"-") {
			out = append(out, l)
		}
	}
	return out
}

// Cut cuts host off from the services named (e.g. Cut("runner-1", "kafka") from every
// broker): its connections are reset and new ones refused, until Heal.
func (c *Cluster) Cut(host string, services ...string) error {
	n := 0
	for _, s := range services {
		for _, l := range c.linksOf(host, s) {
			l.Cut()
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("cluster: host %s has no link to %v", host, services)
	}
	return nil
}

// Heal reconnects host to the services named.
func (c *Cluster) Heal(host string, services ...string) error {
	var errs []error
	for _, s := range services {
		for _, l := range c.linksOf(host, s) {
			errs = append(errs, l.Heal())
		}
	}
	return errors.Join(errs...)
}

// Delay holds the data between host and the services named for d each way (0: none).
func (c *Cluster) Delay(host string, d time.Duration, services ...string) {
	for _, s := range services {
		for _, l := range c.linksOf(host, s) {
			l.SetDelay(d)
		}
	}
}

// Close stops everything: runners and gateways (SIGTERM, in that order), the links, the
// NATS servers, the brokers, and removes the namespaces.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, m := range c.runners {
		wg.Go(func() { c.stopMember(m, syscall.SIGTERM, 20*time.Second) })
	}
	wg.Wait()
	for _, m := range c.gateways {
		wg.Go(func() { c.stopMember(m, syscall.SIGTERM, 20*time.Second) })
	}
	wg.Wait()
	c.mu.Lock()
	links := c.links
	c.links = map[string][]*Link{}
	c.mu.Unlock()
	for _, ls := range links {
		for _, l := range ls {
			l.Close()
		}
	}
	for _, n := range c.nats {
		n.mu.Lock()
		p := n.p
		n.p = nil
		n.mu.Unlock()
		if p != nil {
			wg.Go(func() { p.stop(syscall.SIGTERM, 10*time.Second) })
		}
	}
	wg.Wait()
	if c.kafka != nil {
		_ = c.kafka.Stop()
	}
	for _, m := range append(append([]*member{}, c.gateways...), c.runners...) {
		if m.ns != nil {
			m.ns.Delete()
		}
	}
}
