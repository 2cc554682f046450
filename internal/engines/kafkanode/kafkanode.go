// Package kafkanode runs real Apache Kafka brokers on this machine: one combined
// broker+controller in KRaft mode for `diplip up` and the tests, or three for fault tests.
//
// The broker is the JVM from Maven Central's jars (see scripts/kafka/pom.xml), started as
// `java -cp 'lib/*' kafka.Kafka server.properties` on loopback ports. A started broker is
// owned by the Go process that started it: if that process dies in any way (panic,
// SIGKILL, a test timeout) the kernel kills the JVM too (PR_SET_PDEATHSIG), so no `java`
// process is ever left behind.
//
// It does not create topics or hold clients; see internal/kafkaclient for that.
package kafkanode

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/kafkaclient"
)

// Marker is a JVM system property every broker started here carries, so that its
// processes can be found (`pgrep -f diplip.kafka.node`) and told apart from other Java.
const Marker = "diplip.kafka.node"

// Config describes the brokers to run. The zero value plus Dir is a usable single node.
type Config struct {
	// Dir holds each node's data, config and log (Dir/node-N). Starting again on the same
	// Dir reuses the cluster id, the ports and the data. Required.
	Dir string
	// Nodes is the number of combined broker+controller nodes: 1 (default) or 3.
	Nodes int
	// HeapMB is each JVM's heap. Default 512.
	HeapMB int
	// FastStart adds -Xshare:auto (class data sharing) for a JVM that starts sooner. Tests
	// want it. (It used to be what made the JIT C1 only; every broker is now: see jvmArgs.)
	// Default false.
	FastStart bool
	// LibDir holds the broker's jars. Default: assets.KafkaLibDir().
	LibDir string
	// Java is the java binary. Default: $JAVA_HOME/bin/java, else java on PATH.
	Java string
	// StartTimeout bounds how long Start waits for the brokers to serve metadata. Default 2m.
	StartTimeout time.Duration
	// StopTimeout bounds a graceful stop; then the JVM is killed. Default 30s.
	StopTimeout time.Duration
	// Properties are extra server.properties entries, applied after the defaults.
	Properties map[string]string
	// Logger receives life-cycle events. Default: slog.Default().
	Logger *slog.Logger
}

// Cluster is a set of running Kafka nodes. Its methods are safe for concurrent use.
type Cluster struct {
	cfg   Config
	state clusterState
	log   *slog.Logger

	mu    sync.Mutex
	nodes []*process // index = node index; nil when that node is stopped
}

// clusterState is what must survive a restart on the same Dir.
type clusterState struct {
	ClusterID string     `json:"cluster_id"`
	Nodes     []nodeAddr `json:"nodes"`
}

type nodeAddr struct {
	ID             int `json:"id"`
	Port           int `json:"port"`
	ControllerPort int `json:"controller_port"`
}

// process is one running JVM.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the JVM has exited
	err  error         // the exit error, set before done is closed
}

// Start formats (first time only) and starts the nodes, and returns once a Kafka client
// sees every broker in the cluster's metadata. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger}
	if err := c.loadOrCreateState(); err != nil {
		return nil, err
	}
	c.nodes = make([]*process, cfg.Nodes)
	for i := range c.state.Nodes {
		if err := c.prepareNode(ctx, i); err != nil {
			return nil, err
		}
	}
	for i := range c.state.Nodes {
		if err := c.startProcess(i); err != nil {
			_ = c.Stop()
			return nil, err
		}
	}
	if err := c.waitReady(ctx, cfg.Nodes); err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.log.Info("kafka started", "nodes", cfg.Nodes, "bootstrap", strings.Join(c.Addrs(), ","), "dir", cfg.Dir)
	return c, nil
}

func (cfg *Config) fill() error {
	if cfg.Dir == "" {
		return errors.New("kafkanode: Config.Dir is required")
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 1
	}
	if cfg.Nodes != 1 && cfg.Nodes != 3 {
		return fmt.Errorf("kafkanode: %d nodes: want 1 or 3", cfg.Nodes)
	}
	if cfg.HeapMB == 0 {
		cfg.HeapMB = 512
	}
	if cfg.HeapMB < 128 {
		return fmt.Errorf("kafkanode: heap %d MB is too small for a broker: want at least 128", cfg.HeapMB)
	}
	if cfg.LibDir == "" {
		d, err := assets.KafkaLibDir()
		if err != nil {
			return fmt.Errorf("kafka broker jars: %w", err)
		}
		cfg.LibDir = d
	}
	if cfg.Java == "" {
		cfg.Java = "java"
		if home := os.Getenv("JAVA_HOME"); home != "" {
			cfg.Java = filepath.Join(home, "bin", "java")
		}
	}
	if _, err := exec.LookPath(cfg.Java); err != nil {
		return fmt.Errorf("kafkanode: java (%s) not found: install Java 17 with: go tool task setup (or apt-get install openjdk-17-jre-headless)", cfg.Java)
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("component", "kafkanode")
	return nil
}

func (c *Cluster) statePath() string { return filepath.Join(c.cfg.Dir, "cluster.json") }

// loadOrCreateState reuses the cluster id and ports of an earlier run on the same Dir, or
// picks a new id and free loopback ports.
func (c *Cluster) loadOrCreateState() error {
	if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("kafkanode: %w", err)
	}
	b, err := os.ReadFile(c.statePath())
	if err == nil {
		if err := json.Unmarshal(b, &c.state); err != nil {
			return fmt.Errorf("kafkanode: %s is corrupt (%v); remove %s to start a new cluster", c.statePath(), err, c.cfg.Dir)
		}
		if len(c.state.Nodes) != c.cfg.Nodes {
			return fmt.Errorf("kafkanode: %s holds a %d-node cluster, asked for %d nodes", c.cfg.Dir, len(c.state.Nodes), c.cfg.Nodes)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kafkanode: %w", err)
	}
	c.state.ClusterID = newClusterID()
	ports, err := FreePorts(2 * c.cfg.Nodes)
	if err != nil {
		return err
	}
	for i := 0; i < c.cfg.Nodes; i++ {
		c.state.Nodes = append(c.state.Nodes, nodeAddr{ID: i + 1, Port: ports[2*i], ControllerPort: ports[2*i+1]})
	}
	b, _ = json.MarshalIndent(c.state, "", "  ")
	return os.WriteFile(c.statePath(), b, 0o644)
}

// newClusterID returns 16 random bytes in unpadded URL-safe base64 that does not start
// with '-' (StorageTool would take it for a flag).
func newClusterID() string {
	for {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		id := base64.RawURLEncoding.EncodeToString(b)
		if id[0] != '-' {
			return id
		}
	}
}

// FreePorts asks the kernel for n distinct free loopback ports. They are released before
// the caller binds them (a broker, or the test cluster's services); a lost race shows up as
// a clear bind error in that process's log.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kafkanode: finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) nodeDir(i int) string {
	return filepath.Join(c.cfg.Dir, fmt.Sprintf("node-%d", c.state.Nodes[i].ID))
}

// LogPath returns the file node i's JVM writes its output to.
func (c *Cluster) LogPath(i int) string { return filepath.Join(c.nodeDir(i), "kafka.log") }

// prepareNode writes node i's configuration and formats its storage if it never was.
func (c *Cluster) prepareNode(ctx context.Context, i int) error {
	dir := c.nodeDir(i)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return fmt.Errorf("kafkanode: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.properties"), []byte(c.serverProperties(i)), 0o644); err != nil {
		return fmt.Errorf("kafkanode: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "log4j2.properties"), []byte(log4jProperties), 0o644); err != nil {
		return fmt.Errorf("kafkanode: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "meta.properties")); err == nil {
		return nil // formatted on an earlier run
	}
	args := append(c.jvmArgs(i, 128), "kafka.tools.StorageTool", "format",
		"-t", c.state.ClusterID, "-c", filepath.Join(dir, "server.properties"), "--ignore-formatted")
	cmd := exec.CommandContext(ctx, c.cfg.Java, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kafkanode: formatting node %d storage: %w\n%s", c.state.Nodes[i].ID, err, tail(out.Bytes(), 20))
	}
	return nil
}

func (c *Cluster) serverProperties(i int) string {
	n := c.state.Nodes[i]
	var voters []string
	for _, v := range c.state.Nodes {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", v.ID, v.ControllerPort))
	}
	rf := 1
	if c.cfg.Nodes == 3 {
		rf = 3
	}
	// Fault tests kill nodes: the controller should fence a dead broker (and move its
	// partition leaders) in about 3 s rather than the default 9.
	heartbeat, session := "2000", "9000"
	if c.cfg.Nodes == 3 {
		heartbeat, session = "500", "3000"
	}
	minISR := (rf + 1) / 2 // 1 of 1, 2 of 3
	props := map[string]string{
		"process.roles":                                    "broker,controller",
		"node.id":                                          strconv.Itoa(n.ID),
		"controller.quorum.voters":                         strings.Join(voters, ","),
		"listeners":                                        fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", n.Port, n.ControllerPort),
		"advertised.listeners":                             fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", n.Port),
		"controller.listener.names":                        "CONTROLLER",
		"inter.broker.listener.name":                       "PLAINTEXT",
		"listener.security.protocol.map":                   "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"log.dirs":                                         filepath.Join(c.nodeDir(i), "data"),
		"num.partitions":                                   "1",
		"default.replication.factor":                       strconv.Itoa(rf),
		"min.insync.replicas":                              strconv.Itoa(minISR),
		"offsets.topic.replication.factor":                 strconv.Itoa(rf),
		"offsets.topic.num.partitions":                     "4",
		"transaction.state.log.replication.factor":         strconv.Itoa(rf),
		"transaction.state.log.min.isr":                    strconv.Itoa(minISR),
		"transaction.state.log.num.partitions":             "4",
		"share.coordinator.state.topic.replication.factor": strconv.Itoa(rf),
		"share.coordinator.state.topic.min.isr":            strconv.Itoa(minISR),
		"group.initial.rebalance.delay.ms":                 "0",
		"auto.create.topics.enable":                        "false",
		"log.retention.hours":                              "24",
		// A stopped node should not wait minutes for a controlled shutdown that cannot happen
		// (e.g. the last node of a cluster whose quorum is gone).
		"controlled.shutdown.max.retries": "1",
		"broker.heartbeat.interval.ms":    heartbeat,
		"broker.session.timeout.ms":       session,
	}
	for k, v := range c.cfg.Properties {
		props[k] = v
	}
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("# Written by diplip's internal/engines/kafkanode; rewritten at every start.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	return b.String()
}

// log4jProperties sends warnings to the JVM's stdout (which goes to the node's log file)
// and keeps the one INFO line that says the server started. Kafka at INFO is very chatty.
const log4jProperties = `status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
`

func (c *Cluster) jvmArgs(i, heapMB int) []string {
	args := []string{
		fmt.Sprintf("-Xms%dm", heapMB), fmt.Sprintf("-Xmx%dm", heapMB),
		"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
		"-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
		// C1 only. The broker shares a small machine with the model, and C2 took it: on
		// 2 cores at 150 frames/s, C2 compiled through minutes of traffic (0.18–0.23 cores
		// in the first 10 s, 0.1 after 40 s, 0.03 after 100 s) while the request threads
		// ran interpreted or profiled code. Side by side (issue #26): broker CPU per
		// offered frame 2.0–2.2 → 0.9–1.2 ms in the first 10 s at 1.5× load, 1.15 → 0.83
		// ms over the first 100 s, 6.0–6.3 → 2.6–3.7 ms at 0.5×. The price: C2's finished
		// code is cheaper per request (after 100 s at 1.5×: request threads 0.095 cores
		// with C2, 0.123 with C1, the totals equal while C2 still compiled); over a whole
		// 4-minute window at 1.5× the two brokers took 0.15 (C2) and 0.14 (C1) cores, so
		// a broker under steady load for hours may spend a little less with C2 (the soak
		// would show it).
		"-XX:TieredStopAtLevel=1",
		"-Dlog4j2.configurationFile=" + filepath.Join(c.nodeDir(i), "log4j2.properties"),
		"-D" + Marker + "=" + c.nodeDir(i),
	}
	if c.cfg.FastStart {
		args = append(args, "-Xshare:auto")
	}
	return append(args, "-cp", filepath.Join(c.cfg.LibDir, "*"))
}

// startProcess starts node i's JVM. The JVM gets PR_SET_PDEATHSIG, which the kernel
// delivers when the *thread* that forked it exits; so the fork and the wait happen on one
// goroutine locked to its OS thread for the JVM's whole life.
func (c *Cluster) startProcess(i int) error {
	logf, err := os.OpenFile(c.LogPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("kafkanode: %w", err)
	}
	args := append(c.jvmArgs(i, c.cfg.HeapMB), "kafka.Kafka", filepath.Join(c.nodeDir(i), "server.properties"))
	cmd := exec.Command(c.cfg.Java, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: when this goroutine returns, its thread exits with it, which is
		// only after the JVM has been waited for.
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("kafkanode: starting node %d: %w", c.state.Nodes[i].ID, err)
	}
	c.mu.Lock()
	c.nodes[i] = p
	c.mu.Unlock()
	c.log.Debug("kafka node started", "node", c.state.Nodes[i].ID, "pid", cmd.Process.Pid, "log", c.LogPath(i))
	return nil
}

// waitReady waits until a client sees want brokers, failing early if a JVM exits.
func (c *Cluster) waitReady(ctx context.Context, want int) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	cfg := kafkaclient.NewConfig("diplip-kafkanode")
	cfg.Net.DialTimeout = 2 * time.Second
	cfg.Metadata.Retry.Max = 0
	var last error
	for {
		c.mu.Lock()
		for i, p := range c.nodes {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
				c.mu.Unlock()
				return fmt.Errorf("kafkanode: node %d exited while starting (%v); its log %s ends with:\n%s",
					c.state.Nodes[i].ID, p.err, c.LogPath(i), tailFile(c.LogPath(i), 20))
			default:
			}
		}
		c.mu.Unlock()
		client, err := sarama.NewClient(c.Addrs(), cfg)
		if err == nil {
			n := len(client.Brokers())
			client.Close()
			if n >= want {
				return nil
			}
			err = fmt.Errorf("metadata lists %d of %d brokers", n, want)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkanode: brokers not ready after %v (last: %v); see %s", c.cfg.StartTimeout, last, c.LogPath(0))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Addrs returns the bootstrap addresses of all nodes, running or not.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.state.Nodes {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", n.Port))
	}
	return out
}

// Nodes returns the number of nodes in the cluster.
func (c *Cluster) Nodes() int { return len(c.state.Nodes) }

// PID returns the JVM process id of node i, or 0 when it is not running.
func (c *Cluster) PID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.nodes[i]; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// StopNode shuts node i down gracefully (SIGTERM), killing it if it takes longer than
// Config.StopTimeout. Stopping a stopped node does nothing.
func (c *Cluster) StopNode(i int) error { return c.stopNode(i, syscall.SIGTERM, c.cfg.StopTimeout) }

// KillNode kills node i at once (SIGKILL), as a crash or power loss would.
func (c *Cluster) KillNode(i int) error { return c.stopNode(i, syscall.SIGKILL, 10*time.Second) }

func (c *Cluster) stopNode(i int, sig syscall.Signal, grace time.Duration) error {
	c.mu.Lock()
	p := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		c.log.Warn("kafka node did not stop in time; killing it", "node", c.state.Nodes[i].ID, "grace", grace)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// RestartNode starts a stopped node again on its data (no reformatting) and waits until
// the cluster lists all its brokers.
func (c *Cluster) RestartNode(ctx context.Context, i int) error {
	if c.PID(i) != 0 {
		return fmt.Errorf("kafkanode: node %d is running", c.state.Nodes[i].ID)
	}
	if err := c.startProcess(i); err != nil {
		return err
	}
	return c.waitReady(ctx, len(c.state.Nodes))
}

// Stop shuts every node down, all at once so that a cluster's quorum stays up while the
// brokers leave, and waits for the JVMs to exit.
func (c *Cluster) Stop() error {
	var wg sync.WaitGroup
	for i := range c.state.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.StopNode(i)
		}()
	}
	wg.Wait()
	c.log.Info("kafka stopped", "dir", c.cfg.Dir)
	return nil
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(b, lines)
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}

// BrokerPIDs lists the processes on this machine whose command line carries Marker: the
// broker JVMs started by this package, by any process.
func BrokerPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "-D"+Marker+"=") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Supervise watches node i until ctx ends: when its JVM exits without StopNode or
// KillNode having been asked (a crash, an OOM kill, a SIGKILL from outside), it is logged
// and restarted on its data, waiting 1 s, 2 s, 4 s … between tries. After maxTries
// failed restarts in a row Supervise returns an error naming the node's log; a restart
// that comes up resets the count. It returns nil when ctx ends.
func (c *Cluster) Supervise(ctx context.Context, i, maxTries int) error {
	id := c.state.Nodes[i].ID
	for {
		c.mu.Lock()
		p := c.nodes[i]
		c.mu.Unlock()
		if p == nil { // stopped on purpose (or not started): wait for it to come back
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.done:
		}
		c.mu.Lock()
		crashed := c.nodes[i] == p // StopNode clears the slot before it signals
		if crashed {
			c.nodes[i] = nil
		}
		c.mu.Unlock()
		if !crashed {
			continue
		}
		c.log.Error("kafka node exited; restarting it", "node", id, "err", p.err, "log", c.LogPath(i))
		wait := time.Second
		for try := 1; ; try++ {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			err := c.RestartNode(ctx, i)
			if err == nil {
				c.log.Warn("kafka node restarted", "node", id, "try", try, "pid", c.PID(i))
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			_ = c.StopNode(i) // a half-started JVM
			if try >= maxTries {
				return fmt.Errorf("kafkanode: node %d exited and did not come back after %d restarts (last: %v); see %s", id, try, err, c.LogPath(i))
			}
			c.log.Error("kafka node restart failed; trying again", "node", id, "try", try, "err", err)
			wait = min(2*wait, 30*time.Second)
		}
	}
}
