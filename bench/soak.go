package bench

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// The soak's targets, after the warm-up (see SoakWarmup).
//
// RSS: under 5 MB an hour. Descriptors and goroutines are "flat": a steady process holds a
// fixed set and moves by a few as connections cycle, which over the measured window of a
// 30-minute soak (50 samples) is well under 1 an hour; a leak is tied to something that
// repeats (a frame, 40 a second; a heartbeat, about one a second; a camera's loop of the
// sample video, 4 × 45 an hour; an HTTP request), so even the rarest of those leaking one
// descriptor or goroutine each time is above these bounds. A process that ends before the
// soak does misses too.
const (
	SoakRSSTargetMBPerHour             = 5.0
	SoakFDTargetPerHour                = 10.0
	SoakGoroutineTargetPerHour         = 50.0
	soakMaxWarmup                      = 5 * time.Minute
	soakStream                         = "soak"
	soakZoneCamera, soakZoneName       = "cam0", "walkway"
	soakDrainTimeout                   = 3 * time.Minute
	soakStartTimeout                   = 3 * time.Minute
	soakStopTimeout                    = 90 * time.Second
	soakGoroutinesUnknown              = -1
	soakProcUp, soakProcKafka          = "up", "kafka"
	soakRunnerPrefix                   = "runner "
	soakMetricsGoroutines              = "go_goroutines"
	soakMetricsGoHeap                  = "go_memstats_heap_inuse_bytes"
	soakKafkaClientID                  = "diplip-soak"
	soakHTTPTimeout                    = 10 * time.Second
	soakResultsReadTimeout             = 5 * time.Minute
	soakRunnerReadyTimeout             = 3 * time.Minute
	soakPollInterval                   = time.Second
	soakSummaryName, soakCSVName       = "summary.txt", "samples.csv"
	soakUpLogName                      = "up.log"
	soakBytesPerMB                     = 1 << 20
	soakPartitions               int32 = 4
)

// SoakWarmup is how much of a soak of length d its slopes leave out: the first 5 minutes,
// or the first sixth of a shorter run.
func SoakWarmup(d time.Duration) time.Duration {
	return min(soakMaxWarmup, d/6)
}

// Slope is the least-squares slope of y over x (0 and false with fewer than two distinct x).
func Slope(xs, ys []float64) (float64, bool) {
	n := min(len(xs), len(ys))
	if n < 2 {
		return 0, false
	}
	var mx, my float64
	for i := range n {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(n)
	my /= float64(n)
	var sxy, sxx float64
	for i := range n {
		dx := xs[i] - mx
		sxy += dx * (ys[i] - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0, false
	}
	return sxy / sxx, true
}

// SoakSample is one process measured at one moment of a soak.
type SoakSample struct {
	At         time.Duration // since the cameras started
	Process    string        // up, kafka, runner ID
	PID        int
	RSS        int64 // bytes
	FDs        int
	Goroutines int // soakGoroutinesUnknown for the JVM or when /metrics did not answer
	// GoHeap is the Go heap in use (bytes), to tell Go's memory from C's (OpenCV, FFmpeg,
	// ONNX Runtime) in RSS; -1 where unknown. A diagnostic, not a target.
	GoHeap int64
	CPU    float64 // seconds of CPU used so far
	Load1  float64 // the machine's 1-minute load average
}

// SoakTrend is one process's figures over a soak.
type SoakTrend struct {
	Process          string
	PID              int
	Samples          int // after the warm-up
	First, Last      time.Duration
	RSSStart, RSSEnd int64   // bytes, first and last sample of the whole run
	RSSSlope         float64 // MB an hour, after the warm-up
	FDStart, FDEnd   int
	FDSlope          float64 // an hour
	GStart, GEnd     int
	GSlope           float64 // an hour; valid only when HasGoroutines
	HeapStart        int64   // Go heap in use, bytes, first and last known sample (-1: none)
	HeapEnd          int64
	HasGoroutines    bool
	CPUCores         float64 // mean cores used over the run
}

// SoakTrends groups samples by process (keeping first-seen order) and fits each series
// after warmup: a least-squares slope per hour of RSS (MB), descriptors and goroutines.
// Goroutine samples that are unknown are left out of that fit.
func SoakTrends(samples []SoakSample, warmup time.Duration) []SoakTrend {
	var order []string
	by := map[string][]SoakSample{}
	for _, s := range samples {
		key := s.Process + "\x00" + strconv.Itoa(s.PID)
		if _, ok := by[key]; !ok {
			order = append(order, key)
		}
		by[key] = append(by[key], s)
	}
	var out []SoakTrend
	for _, key := range order {
		ss := by[key]
		first, last := ss[0], ss[len(ss)-1]
		t := SoakTrend{Process: first.Process, PID: first.PID, First: first.At, Last: last.At,
			RSSStart: first.RSS, RSSEnd: last.RSS, FDStart: first.FDs, FDEnd: last.FDs,
			GStart: soakGoroutinesUnknown, GEnd: soakGoroutinesUnknown, HeapStart: -1, HeapEnd: -1}
		if span := (last.At - first.At).Seconds(); span > 0 {
			t.CPUCores = (last.CPU - first.CPU) / span
		}
		var hx, rss, fds, gx, gs []float64
		for _, s := range ss {
			if s.GoHeap > 0 {
				if t.HeapStart < 0 {
					t.HeapStart = s.GoHeap
				}
				t.HeapEnd = s.GoHeap
			}
			if s.Goroutines != soakGoroutinesUnknown {
				if t.GStart == soakGoroutinesUnknown {
					t.GStart = s.Goroutines
				}
				t.GEnd = s.Goroutines
			}
			if s.At < warmup {
				continue
			}
			h := s.At.Hours()
			hx = append(hx, h)
			rss = append(rss, float64(s.RSS)/soakBytesPerMB)
			fds = append(fds, float64(s.FDs))
			if s.Goroutines != soakGoroutinesUnknown {
				gx = append(gx, h)
				gs = append(gs, float64(s.Goroutines))
			}
		}
		t.Samples = len(hx)
		t.RSSSlope, _ = Slope(hx, rss)
		t.FDSlope, _ = Slope(hx, fds)
		t.GSlope, t.HasGoroutines = Slope(gx, gs)
		out = append(out, t)
	}
	return out
}

// Misses says which targets a trend misses: "up: RSS +7.1 MB/h (target < 5)". end is when
// the last samples were taken: a process whose series stops earlier ended during the soak.
// A series with fewer than 2 samples after the warm-up has no slope and misses.
func (t SoakTrend) Misses(end time.Duration) []string {
	var m []string
	if t.Last < end {
		m = append(m, fmt.Sprintf("%s (pid %d): gone after %s", t.Process, t.PID, t.Last.Round(time.Second)))
	}
	if t.Samples < 2 {
		return append(m, fmt.Sprintf("%s: %d samples after the warm-up, no slope", t.Process, t.Samples))
	}
	if t.RSSSlope >= SoakRSSTargetMBPerHour {
		m = append(m, fmt.Sprintf("%s: RSS %+.1f MB/h (target < %.0f)", t.Process, t.RSSSlope, SoakRSSTargetMBPerHour))
	}
	if math.Abs(t.FDSlope) >= SoakFDTargetPerHour {
		m = append(m, fmt.Sprintf("%s: descriptors %+.1f/h (target |slope| < %.0f)", t.Process, t.FDSlope, SoakFDTargetPerHour))
	}
	if t.HasGoroutines && math.Abs(t.GSlope) >= SoakGoroutineTargetPerHour {
		m = append(m, fmt.Sprintf("%s: goroutines %+.1f/h (target |slope| < %.0f)", t.Process, t.GSlope, SoakGoroutineTargetPerHour))
	}
	return m
}

// SoakCounts are the soak's frames and results.
type SoakCounts struct {
	FramesIn      int64 // the frames topic's end offsets, summed over partitions
	Results       int64 // records on the results topic (read committed)
	Distinct      int64 // of those, distinct frames answered (partition, offset)
	OK            int64
	Skipped       int64
	Errors        int64
	Duplicates    int64 // Results - Distinct (at-least-once redelivery)
	Lost          int64 // frames with no result
	CameraFrames  int64 // what the cameras stored, by their own counters
	CameraDropped int64 // what the cameras dropped before Kafka (their buffer was full)
	Zone          string
}

// Misses says what the counts miss: a frame without a result.
func (c SoakCounts) Misses() []string {
	if c.Lost > 0 {
		return []string{fmt.Sprintf("%d of %d frames have no result", c.Lost, c.FramesIn)}
	}
	return nil
}

// soakResult is what the soak reads of a result record.
type soakResult struct {
	Status string      `json:"status"`
	Source wire.Source `json:"source"`
}

// countResults tallies result records against the frames topic's end offsets: every offset
// below a partition's end must have at least one result whose source is that record.
func countResults(end map[int32]int64, results []soakResult) SoakCounts {
	var c SoakCounts
	for _, e := range end {
		c.FramesIn += e
	}
	seen := map[int32]map[int64]bool{}
	for _, r := range results {
		c.Results++
		switch r.Status {
		case wire.StatusOK:
			c.OK++
		case wire.StatusSkipped:
			c.Skipped++
		default:
			c.Errors++
		}
		p := seen[r.Source.Partition]
		if p == nil {
			p = map[int64]bool{}
			seen[r.Source.Partition] = p
		}
		if !p[r.Source.Offset] {
			p[r.Source.Offset] = true
			c.Distinct++
		}
	}
	c.Duplicates = c.Results - c.Distinct
	for part, e := range end {
		var answered int64
		for off := range seen[part] {
			if off >= 0 && off < e {
				answered++
			}
		}
		c.Lost += e - answered
	}
	return c
}

// SoakConfig is one soak: a `diplip up` started as a child process with a tracking
// deployment of the YOLOX-Nano example and pulled file cameras looping the sample video.
type SoakConfig struct {
	// Exe is the diplip binary; `Exe up` runs the node under test.
	Exe      string
	Duration time.Duration // cameras running, sampled
	Interval time.Duration // between samples
	Cameras  int
	FPS      float64
	// Video is the sample video the cameras loop (its directory is given to up's
	// --camera-files).
	Video string
	// Out is the results directory (samples.csv, summary.txt, up.log).
	Out string
	// Push builds the function and pushes it to the registry at addr (host:port); it
	// returns the reference to deploy.
	Push     func(ctx context.Context, addr string) (string, error)
	Progress io.Writer
}

// SoakReport is what a soak measured.
type SoakReport struct {
	Samples  []SoakSample
	Trends   []SoakTrend
	Counts   SoakCounts
	Warmup   time.Duration
	Elapsed  time.Duration // of the last sample
	Misses   []string
	Summary  string // one line
	Load1Avg float64
}

func (c SoakConfig) say(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "soak: "+format+"\n", args...)
	}
}

// upProcess is the `diplip up` under test.
type upProcess struct {
	cmd     *exec.Cmd
	url     string
	brokers []string
	done    chan error
}

// startUp starts `exe up` on a free port with its own state directory and waits for it
// to print its addresses.
func startUp(ctx context.Context, cfg SoakConfig, state string, log io.Writer) (*upProcess, error) {
	cmd := exec.Command(cfg.Exe, "up", "--state-dir", state, "--listen", "127.0.0.1:0",
		"--camera-files", filepath.Dir(cfg.Video), "--idle-timeout", "10m")
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // no orphan if the soak dies
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &upProcess{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(log, line)
			f := strings.Fields(line)
			switch {
			case len(f) >= 2 && f[0] == "ui":
				p.url = strings.TrimSuffix(f[1], "/")
			case len(f) >= 2 && f[0] == "kafka":
				list := strings.Trim(strings.Join(f[1:], " "), " ")
				if i := strings.Index(list, "]"); i >= 0 {
					p.brokers = strings.Fields(strings.Trim(list[:i+1], "[]"))
				}
			case strings.HasPrefix(line, "diplip: press Ctrl-C") && !signalled:
				signalled = true
				ready <- nil
			}
		}
		if !signalled {
			ready <- errors.New("diplip up ended before it was up (see " + soakUpLogName + ")")
		}
		p.done <- cmd.Wait()
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	case <-time.After(soakStartTimeout):
		p.stop()
		return nil, fmt.Errorf("diplip up not up after %s", soakStartTimeout)
	}
	if p.url == "" || len(p.brokers) == 0 {
		p.stop()
		return nil, fmt.Errorf("diplip up did not print its gateway and Kafka addresses (url %q, kafka %v)", p.url, p.brokers)
	}
	return p, nil
}

// stop interrupts up (it stops in order) and kills it if it has not ended in time.
func (p *upProcess) stop() error {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		return err
	case <-time.After(soakStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("diplip up did not stop within %s; killed", soakStopTimeout)
	}
}

// RunSoak runs one soak and writes its samples and summary into cfg.Out. Its error is for
// a soak that could not run; missed targets are in the report's Misses.
func RunSoak(ctx context.Context, cfg SoakConfig) (SoakReport, error) {
	rep := SoakReport{Warmup: SoakWarmup(cfg.Duration)}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return rep, err
	}
	state, err := os.MkdirTemp("", "diplip-soak-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(state)
	logf, err := os.Create(filepath.Join(cfg.Out, soakUpLogName))
	if err != nil {
		return rep, err
	}
	defer logf.Close()
	csvf, err := os.Create(filepath.Join(cfg.Out, soakCSVName))
	if err != nil {
		return rep, err
	}
	defer csvf.Close()
	cw := csv.NewWriter(csvf)
	_ = cw.Write([]string{"elapsed_s", "process", "pid", "rss_bytes", "fds", "goroutines", "go_heap_bytes", "cpu_s", "load1"})

	cfg.say("starting %s up (state in %s, log in %s)", cfg.Exe, state, filepath.Join(cfg.Out, soakUpLogName))
	up, err := startUp(ctx, cfg, state, logf)
	if err != nil {
		return rep, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = up.stop()
		}
	}()
	cl, err := apiclient.New(up.url, "")
	if err != nil {
		return rep, err
	}
	kc := kafkaclient.New(up.brokers, soakKafkaClientID)
	defer kc.Close()
	hc := &http.Client{Timeout: soakHTTPTimeout}

	st, dep, err := soakSetUp(ctx, cfg, cl, up)
	if err != nil {
		return rep, err
	}
	cfg.say("%d cameras at %g fps on stream %q (%d partitions), %s deployed with tracking, zone %q on %s; sampling every %s for %s (slopes after %s)",
		cfg.Cameras, cfg.FPS, soakStream, st.Partitions, dep.Function, soakZoneName, soakZoneCamera, cfg.Interval, cfg.Duration, rep.Warmup)

	t0 := time.Now()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var cams []api.CameraStatus
	for {
		at := time.Since(t0)
		batch := sampleSoak(ctx, cl, hc, up.url, up.cmd.Process.Pid, at)
		rep.Samples = append(rep.Samples, batch...)
		for _, s := range batch {
			g, heap := "", ""
			if s.Goroutines != soakGoroutinesUnknown {
				g = strconv.Itoa(s.Goroutines)
			}
			if s.GoHeap >= 0 {
				heap = strconv.FormatInt(s.GoHeap, 10)
			}
			_ = cw.Write([]string{strconv.FormatFloat(at.Seconds(), 'f', 1, 64), s.Process, strconv.Itoa(s.PID),
				strconv.FormatInt(s.RSS, 10), strconv.Itoa(s.FDs), g, heap, strconv.FormatFloat(s.CPU, 'f', 2, 64),
				strconv.FormatFloat(s.Load1, 'f', 2, 64)})
		}
		cw.Flush()
		if c, err := cl.Cameras(ctx); err == nil {
			cams = c
		}
		cfg.say("%s", soakProgress(at, batch, cams, soakLag(ctx, cl, dep)))
		rep.Elapsed = at
		if at >= cfg.Duration-cfg.Interval/4 {
			break
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
		}
	}
	if err := cw.Error(); err != nil {
		return rep, err
	}

	// The end: stop the cameras, let the runner finish what Kafka holds, count.
	for _, c := range cams {
		if c.Stream == soakStream {
			rep.Counts.CameraFrames += c.Health.Frames
			rep.Counts.CameraDropped += c.Health.Dropped
		}
	}
	for i := range cfg.Cameras {
		if err := cl.RemoveCamera(ctx, soakCamera(i)); err != nil {
			return rep, fmt.Errorf("removing camera %s: %w", soakCamera(i), err)
		}
	}
	cfg.say("cameras removed; waiting for the deployment's lag to reach 0")
	if err := soakDrain(ctx, cl, dep); err != nil {
		return rep, err
	}
	counts, err := soakCount(ctx, kc, st)
	if err != nil {
		return rep, err
	}
	counts.CameraFrames, counts.CameraDropped = rep.Counts.CameraFrames, rep.Counts.CameraDropped
	if zs, err := soakZoneCounts(ctx, kc, st); err == nil {
		counts.Zone = zs
	}
	rep.Counts = counts
	stopped = true
	if err := up.stop(); err != nil {
		cfg.say("stopping up: %v", err)
	}

	rep.Trends = SoakTrends(rep.Samples, rep.Warmup)
	var load float64
	var n int
	for _, s := range rep.Samples {
		if s.Process == soakProcUp {
			load += s.Load1
			n++
		}
	}
	if n > 0 {
		rep.Load1Avg = load / float64(n)
	}
	for _, t := range rep.Trends {
		rep.Misses = append(rep.Misses, t.Misses(rep.Elapsed)...)
	}
	rep.Misses = append(rep.Misses, rep.Counts.Misses()...)
	rep.Summary = SoakSummary(rep)
	text := SoakText(rep)
	if err := os.WriteFile(filepath.Join(cfg.Out, soakSummaryName), []byte(text), 0o644); err != nil {
		return rep, err
	}
	return rep, nil
}

func soakCamera(i int) string { return "cam" + strconv.Itoa(i) }

// soakSetUp creates the stream, pushes and deploys the function with tracking (one
// runner: min = max = 1, so the processes measured stay the same), waits for the runner,
// then adds the cameras and the zone.
func soakSetUp(ctx context.Context, cfg SoakConfig, cl *apiclient.Client, up *upProcess) (api.Stream, api.Deployment, error) {
	st, err := cl.CreateStream(ctx, api.StreamRequest{Name: soakStream, Partitions: soakPartitions})
	if err != nil {
		return st, api.Deployment{}, fmt.Errorf("creating the stream: %w", err)
	}
	ref, err := cfg.Push(ctx, strings.TrimPrefix(up.url, "http://"))
	if err != nil {
		return st, api.Deployment{}, fmt.Errorf("pushing the function: %w", err)
	}
	dep, err := cl.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: soakStream, Min: 1, Max: 1, Track: true})
	if err != nil {
		return st, dep, fmt.Errorf("deploying: %w", err)
	}
	deadline := time.Now().Add(soakRunnerReadyTimeout)
	for {
		res, err := cl.Resources(ctx)
		if err == nil && slices.ContainsFunc(res.Runners, func(r api.Runner) bool {
			return r.Deployment == dep.Key() && r.State == "active"
		}) {
			break
		}
		if time.Now().After(deadline) {
			return st, dep, fmt.Errorf("no active runner for %s after %s", dep.Key(), soakRunnerReadyTimeout)
		}
		select {
		case <-ctx.Done():
			return st, dep, ctx.Err()
		case <-time.After(soakPollInterval):
		}
	}
	for i := range cfg.Cameras {
		if _, err := cl.AddCamera(ctx, api.CameraRequest{ID: soakCamera(i), Stream: soakStream, URL: cfg.Video, FPS: cfg.FPS, Loop: true}); err != nil {
			return st, dep, fmt.Errorf("adding camera %s: %w", soakCamera(i), err)
		}
	}
	// A counting line across the walkway of the sample video (768×576).
	line := []api.Point{{X: 0, Y: 300}, {X: 767, Y: 300}}
	if _, err := cl.AddZone(ctx, api.ZoneRequest{Stream: soakStream, Camera: soakZoneCamera, Name: soakZoneName, Line: line}); err != nil {
		return st, dep, fmt.Errorf("adding the zone: %w", err)
	}
	return st, dep, nil
}

// sampleSoak measures up, its broker JVM and the runners the gateway knows.
func sampleSoak(ctx context.Context, cl *apiclient.Client, hc *http.Client, gatewayURL string, upPID int, at time.Duration) []SoakSample {
	load := load1()
	one := func(name string, pid int, metricsURL string) (SoakSample, bool) {
		ps, err := sampleProc(pid)
		if err != nil {
			return SoakSample{}, false
		}
		s := SoakSample{At: at, Process: name, PID: pid, RSS: ps.rss, CPU: ps.cpu.Seconds(), Load1: load,
			FDs: countFDs(pid), Goroutines: soakGoroutinesUnknown, GoHeap: -1}
		if metricsURL != "" {
			if g, heap, err := goMetrics(ctx, hc, metricsURL); err == nil {
				s.Goroutines, s.GoHeap = g, heap
			}
		}
		return s, true
	}
	var out []SoakSample
	if s, ok := one(soakProcUp, upPID, gatewayURL+"/metrics"); ok {
		out = append(out, s)
	}
	for _, pid := range childPIDs(upPID) {
		if comm(pid) == "java" {
			if s, ok := one(soakProcKafka, pid, ""); ok {
				out = append(out, s)
			}
		}
	}
	if res, err := cl.Resources(ctx); err == nil {
		rs := res.Runners
		slices.SortFunc(rs, func(a, b api.Runner) int { return strings.Compare(a.ID, b.ID) })
		for _, r := range rs {
			if r.PID == 0 {
				continue
			}
			if s, ok := one(soakRunnerPrefix+r.ID, r.PID, r.MetricsURL); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func countFDs(pid int) int {
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return -1
	}
	return len(ents)
}

func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// goMetrics reads go_goroutines and the Go heap in use from a Prometheus text endpoint.
func goMetrics(ctx context.Context, hc *http.Client, url string) (int, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseGoMetrics(resp.Body)
}

// parseGoMetrics finds go_goroutines (required) and go_memstats_heap_inuse_bytes (-1
// when absent) in Prometheus text.
func parseGoMetrics(r io.Reader) (goroutines int, heap int64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	goroutines, heap = soakGoroutinesUnknown, -1
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case soakMetricsGoroutines:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0, 0, err
			}
			goroutines = int(v)
		case soakMetricsGoHeap:
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				heap = int64(v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if goroutines == soakGoroutinesUnknown {
		return 0, 0, errors.New("no " + soakMetricsGoroutines + " in the metrics")
	}
	return goroutines, heap, nil
}

func soakLag(ctx context.Context, cl *apiclient.Client, dep api.Deployment) int64 {
	res, err := cl.Resources(ctx)
	if err != nil {
		return -1
	}
	for _, d := range res.Deployments {
		if d.Key == dep.Key() {
			return d.Lag
		}
	}
	return -1
}

// soakDrain waits until the deployment has committed everything the frames topic holds
// (at-least-once commits a frame only once its result is acknowledged).
func soakDrain(ctx context.Context, cl *apiclient.Client, dep api.Deployment) error {
	deadline := time.Now().Add(soakDrainTimeout)
	zeros := 0
	for {
		if soakLag(ctx, cl, dep) == 0 {
			if zeros++; zeros >= 3 { // the lag is measured every few seconds: see it stay 0
				return nil
			}
		} else {
			zeros = 0
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the deployment's lag is still %d after %s", soakLag(ctx, cl, dep), soakDrainTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * soakPollInterval):
		}
	}
}

// soakCount compares the frames topic's end offsets with the results topic, read committed.
func soakCount(ctx context.Context, kc *kafkaclient.Client, st api.Stream) (SoakCounts, error) {
	_, end, err := kc.Offsets(st.Topic)
	if err != nil {
		return SoakCounts{}, fmt.Errorf("the frames topic's offsets: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, soakResultsReadTimeout)
	defer cancel()
	var results []soakResult
	err = kc.ReadTopic(rctx, st.ResultsTopic, 0, func(m *sarama.ConsumerMessage) error {
		var r soakResult
		if err := json.Unmarshal(m.Value, &r); err != nil {
			return fmt.Errorf("result at %d/%d: %w", m.Partition, m.Offset, err)
		}
		results = append(results, r)
		return nil
	})
	if err != nil {
		return SoakCounts{}, fmt.Errorf("reading the results: %w", err)
	}
	return countResults(end, results), nil
}

// soakZoneCounts is the zone's last running counts on the zone's camera, "person in 12 out 9".
func soakZoneCounts(ctx context.Context, kc *kafkaclient.Client, st api.Stream) (string, error) {
	recs, err := kc.LastResults(ctx, st.ResultsTopic, 200)
	if err != nil {
		return "", err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		var r wire.Result
		if json.Unmarshal(recs[i], &r) != nil || r.Camera != soakZoneCamera || len(r.Counts) == 0 {
			continue
		}
		b, _ := json.Marshal(r.Counts)
		return string(b), nil
	}
	return "", errors.New("no counts")
}

func soakProgress(at time.Duration, batch []SoakSample, cams []api.CameraStatus, lag int64) string {
	var parts []string
	for _, s := range batch {
		g := ""
		if s.Goroutines != soakGoroutinesUnknown {
			g = fmt.Sprintf(" %dg", s.Goroutines)
		}
		parts = append(parts, fmt.Sprintf("%s %dMB %dfd%s", shortProc(s.Process), s.RSS/soakBytesPerMB, s.FDs, g))
	}
	var fps float64
	for _, c := range cams {
		if c.Stream == soakStream {
			fps += c.Health.FPS
		}
	}
	load := 0.0
	if len(batch) > 0 {
		load = batch[0].Load1
	}
	return fmt.Sprintf("%6s  %s; cameras %.1f fps, lag %d, load %.2f", at.Round(time.Second), strings.Join(parts, "; "), fps, lag, load)
}

// shortProc is a process's name in the summary: a runner's ID is long only on other hosts.
func shortProc(name string) string {
	if id, ok := strings.CutPrefix(name, soakRunnerPrefix); ok && len(id) > 24 {
		return soakRunnerPrefix + id[:24]
	}
	return name
}

// SoakSummary is the soak's one line: frames, results and each process's slopes.
func SoakSummary(rep SoakReport) string {
	c := rep.Counts
	verdict := "PASS"
	if len(rep.Misses) > 0 {
		verdict = "FAIL"
	}
	var parts []string
	for _, t := range rep.Trends {
		g := ""
		if t.HasGoroutines {
			g = fmt.Sprintf(" g %+.0f/h", t.GSlope)
		}
		parts = append(parts, fmt.Sprintf("%s rss %+.1f MB/h fd %+.1f/h%s", shortProc(t.Process), t.RSSSlope, t.FDSlope, g))
	}
	return fmt.Sprintf("soak %s %s: frames in %d, results %d (ok %d, skipped %d, error %d; duplicates %d), lost %d; %s; load %.2f",
		verdict, rep.Elapsed.Round(time.Second), c.FramesIn, c.Distinct, c.OK, c.Skipped, c.Errors, c.Duplicates, c.Lost,
		strings.Join(parts, "; "), rep.Load1Avg)
}

// SoakText is the summary file: a table per process, the counts, the misses, the line.
func SoakText(rep SoakReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "soak of %s, %d samples a process, slopes over the samples after %s (least squares)\n\n",
		rep.Elapsed.Round(time.Second), len(rep.Samples)/max(1, len(rep.Trends)), rep.Warmup)
	fmt.Fprintf(&b, "| process | pid | RSS start → end (MB) | RSS slope (MB/h) | fds start → end | fds slope (/h) | goroutines start → end | goroutines slope (/h) | Go heap start → end (MB) | CPU (cores) |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|\n")
	for _, t := range rep.Trends {
		g, gs := "n/a", "n/a"
		if t.HasGoroutines {
			g, gs = fmt.Sprintf("%d → %d", t.GStart, t.GEnd), fmt.Sprintf("%+.1f", t.GSlope)
		}
		heap := "n/a"
		if t.HeapStart >= 0 {
			heap = fmt.Sprintf("%.1f → %.1f", float64(t.HeapStart)/soakBytesPerMB, float64(t.HeapEnd)/soakBytesPerMB)
		}
		fmt.Fprintf(&b, "| %s | %d | %.1f → %.1f | %+.2f | %d → %d | %+.1f | %s | %s | %s | %.2f |\n",
			shortProc(t.Process), t.PID, float64(t.RSSStart)/soakBytesPerMB, float64(t.RSSEnd)/soakBytesPerMB, t.RSSSlope,
			t.FDStart, t.FDEnd, t.FDSlope, g, gs, heap, t.CPUCores)
	}
	c := rep.Counts
	fmt.Fprintf(&b, "\nframes in %d (frames topic end offsets; cameras' counters %d, dropped before Kafka %d)\n", c.FramesIn, c.CameraFrames, c.CameraDropped)
	fmt.Fprintf(&b, "results out %d distinct frames (ok %d, skipped %d, error %d), %d records, %d duplicates; lost %d\n",
		c.Distinct, c.OK, c.Skipped, c.Errors, c.Results, c.Duplicates, c.Lost)
	if c.Zone != "" {
		fmt.Fprintf(&b, "zone %s on %s, last counts: %s\n", soakZoneName, soakZoneCamera, c.Zone)
	}
	fmt.Fprintf(&b, "machine load (1-minute average over the samples): %.2f\n", rep.Load1Avg)
	fmt.Fprintf(&b, "targets: RSS slope < %.0f MB/h, |descriptor slope| < %.0f/h, |goroutine slope| < %.0f/h, no frame without a result\n",
		SoakRSSTargetMBPerHour, SoakFDTargetPerHour, SoakGoroutineTargetPerHour)
	for _, m := range rep.Misses {
		fmt.Fprintf(&b, "MISSED: %s\n", m)
	}
	fmt.Fprintf(&b, "\n%s\n", rep.Summary)
	return b.String()
}
