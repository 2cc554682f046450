package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

// lanesConfig is one way to run the function standalone: lanes × threads per lane.
type lanesConfig struct{ lanes, threads int }

func (c lanesConfig) String() string { return fmt.Sprintf("%d×%d", c.lanes, c.threads) }

// loopResult is what a standalone loop measured.
type loopResult struct {
	cfg         lanesConfig
	fps         float64
	lat         []float64              // per Run call (one frame), ms
	cpuPerFrame float64                // this process's CPU seconds per frame
	stages      functions.BatchTimings // summed over the frames: decode, lay out, infer, outputs
}

// stagesNote is the loop's mean time per frame in each step, as "decode 4.1, lay out 1.2,
// infer 12.0, outputs 0.3 ms per frame (wall, per lane)".
func (r loopResult) stagesNote() string {
	n := time.Duration(max(len(r.lat), 1))
	t := r.stages
	return fmt.Sprintf("decode %.1f, lay out %.1f, infer %.1f, outputs %.1f ms per frame (wall, per lane)",
		ms(t.Decode/n), ms(t.Preprocess/n), ms(t.Infer/n), ms(t.Postprocess/n))
}

// runLoop runs the function in-process with cfg.lanes goroutines, each calling Run on one
// frame at a time: decode, letterbox, infer, boxes and NMS, the same code a runner runs,
// with no bus. The node in this process is idle meanwhile.
func runLoop(ctx context.Context, d time.Duration, env *Env, cfg lanesConfig) (loopResult, error) {
	fn, err := pipeline.Load(env.FunctionDir, pipeline.Options{Lanes: cfg.lanes, IntraOpThreads: cfg.threads})
	if err != nil {
		return loopResult{}, err
	}
	defer fn.Close()
	// Warm up each lane once: the first runs allocate the session's buffers.
	for range cfg.lanes {
		if _, _, err := fn.Run([][]byte{env.Frames[0]}); err != nil {
			return loopResult{}, err
		}
	}
	var mu sync.Mutex
	var lat []float64
	var stages functions.BatchTimings
	var next atomic.Int64
	var firstErr error
	cpu0, _ := sampleProc(os.Getpid())
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.lanes {
		wg.Go(func() {
			for time.Since(start) < d && ctx.Err() == nil {
				i := next.Add(1)
				t0 := time.Now()
				_, tm, err := fn.Run([][]byte{env.Frames[int(i)%len(env.Frames)]})
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				mu.Lock()
				lat = append(lat, ms(time.Since(t0)))
				stages.Decode += tm.Decode
				stages.Preprocess += tm.Preprocess
				stages.Infer += tm.Infer
				stages.Postprocess += tm.Postprocess
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	cpu1, _ := sampleProc(os.Getpid())
	if firstErr != nil {
		return loopResult{}, firstErr
	}
	r := loopResult{cfg: cfg, fps: float64(len(lat)) / el, lat: lat, stages: stages}
	if len(lat) > 0 {
		r.cpuPerFrame = (cpu1.cpu - cpu0.cpu).Seconds() / float64(len(lat))
	}
	return r, nil
}

// runLimit measures the standalone loop as one lane with every CPU's thread (today's
// direct loop) and as one lane per CPU with one thread each, and returns the `limit` row
// (the best: the denominator of every throughput ratio), the `direct` row (one lane), and
// the model's CPU seconds per frame in the best configuration.
func runLimit(ctx context.Context, d time.Duration, env *Env) (limit, direct Row, cpuPerFrame float64, err error) {
	cpus := runtime.NumCPU()
	configs := []lanesConfig{{1, cpus}}
	if cpus > 1 {
		configs = append(configs, lanesConfig{cpus, 1})
	}
	var results []loopResult
	for _, c := range configs {
		env.say("standalone loop: %s (lanes × intra-op threads) for %v", c, d)
		r, err := runLoop(ctx, d, env, c)
		if err != nil {
			return limit, direct, 0, err
		}
		results = append(results, r)
	}
	best := results[0]
	var note string
	for _, r := range results {
		note += fmt.Sprintf("%s: %.1f fps; ", r.cfg, r.fps)
		if r.fps > best.fps {
			best = r
		}
	}
	one := results[0]
	limit = Row{Scenario: "limit", Runners: best.cfg.lanes, FPS: best.fps, P50: Percentile(best.lat, 0.5),
		P95: Percentile(best.lat, 0.95), P99: Percentile(best.lat, 0.99), Ratio: 1,
		Note: fmt.Sprintf("best standalone loop, lanes × threads %s; %sCPU %.1f ms per frame; %s", best.cfg, note, best.cpuPerFrame*1000, best.stagesNote())}
	direct = Row{Scenario: "direct", Runners: 1, FPS: one.fps, P50: Percentile(one.lat, 0.5), P95: Percentile(one.lat, 0.95),
		P99: Percentile(one.lat, 0.99), Ratio: one.fps / best.fps,
		Note: fmt.Sprintf("one lane × %d threads (the loop before lanes); ratio: fps / limit", one.cfg.threads)}
	return limit, direct, best.cpuPerFrame, nil
}

// runDrain puts a backlog of n frames into a fresh stream's topic first, then deploys the
// function with the replay policy (min 0, max 1) and measures how fast one runner turns
// the backlog into ok results, from its first result to its last, with the given delivery.
func runDrain(ctx context.Context, env *Env, n, partitions int, lanes int, limit Row, delivery wire.Delivery) (Row, error) {
	cl, err := apiclient.New(env.Node.URL(), "")
	if err != nil {
		return Row{}, err
	}
	stream, now, err := produceBacklog(ctx, env, "bench-drain", n, partitions)
	if err != nil {
		return Row{}, err
	}
	defer undeploy(env, stream)
	tap, err := tapResults(env, stream.Name)
	if err != nil {
		return Row{}, err
	}
	defer tap.close()
	tap.window(now.Add(-time.Second))
	var procs *procWatch
	if _, err := cl.Deploy(ctx, api.DeployRequest{Ref: env.Ref, Stream: stream.Name, Max: 1, Policy: "replay", Lanes: lanes,
		Delivery: string(delivery)}); err != nil {
		return Row{}, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	var at []time.Time
	for {
		tap.mu.Lock()
		done, ok := len(tap.at), tap.n.Load()
		at = append(at[:0], tap.at...)
		tap.mu.Unlock()
		if done > 0 && procs == nil { // from the first result: CPU of each process while draining
			procs = watchProcs(env.processes())
		}
		if ok >= int64(n) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return Row{}, fmt.Errorf("%d of %d backlog frames done in 3 minutes", ok, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fps, burst := steadyRate(at)
	usage := procs.summary()
	tap.mu.Lock()
	other := fmt.Sprint(tap.other)
	tap.mu.Unlock()
	lanesNote := "the runner's default lanes"
	if lanes > 0 {
		lanesNote = fmt.Sprintf("%d lanes", lanes)
	}
	return Row{Scenario: scenario("drain", delivery), Runners: 1, FPS: fps, Ratio: fps / limit.FPS,
		Note: fmt.Sprintf("%d frames already in Kafka, replay policy, %s; fps from the end of the first delivery (%d results together) to the last ok result / limit; not ok: %s; %s",
			n, lanesNote, burst, other, usage)}, nil
}

// burstGap is how soon after the first result the others of the first delivery arrive:
// the results of one batch, or of one transaction, reach the tap together.
const burstGap = 50 * time.Millisecond

// steadyRate is the rate of the results that arrived at at (in order) after the first
// delivery: the first batch (at-least-once) or transaction (exactly-once, which holds a
// second of frames while a backlog drains) arrives at once after work the clock did not
// see, so counting its results from its arrival would favour the larger first delivery.
// burst is how many results that first delivery held.
func steadyRate(at []time.Time) (fps float64, burst int) {
	if len(at) == 0 {
		return 0, 0
	}
	burst = 1
	for burst < len(at) && at[burst].Sub(at[0]) < burstGap {
		burst++
	}
	if burst == len(at) {
		return 0, burst
	}
	return float64(len(at)-burst) / at[len(at)-1].Sub(at[burst-1]).Seconds(), burst
}

// produceBacklog creates a fresh stream of the given partitions and produces n frames
// into its topic (env.Frames in turn, camera cam-P on partition P's key), all captured
// now, which it returns.
func produceBacklog(ctx context.Context, env *Env, prefix string, n, partitions int) (wire.Stream, time.Time, error) {
	cl, err := apiclient.New(env.Node.URL(), "")
	if err != nil {
		return wire.Stream{}, time.Time{}, err
	}
	name := fmt.Sprintf("%s-%x", prefix, time.Now().UnixNano()&0xffffff)
	st, err := cl.CreateStream(ctx, api.StreamRequest{Name: name, Partitions: int32(partitions)})
	if err != nil {
		return wire.Stream{}, time.Time{}, err
	}
	stream := wire.Stream{Name: st.Name, Topic: st.Topic, ResultsTopic: st.ResultsTopic, Partitions: st.Partitions}
	kc := kafkaclient.New(env.Node.Brokers(), "diplip-bench-drain")
	defer kc.Close()
	p, err := kc.SyncProducer()
	if err != nil {
		return stream, time.Time{}, err
	}
	defer p.Close()
	now := time.Now()
	msgs := make([]*sarama.ProducerMessage, 0, n)
	for i := range n {
		f := wire.Frame{Camera: fmt.Sprintf("cam-%d", i%partitions), Seq: uint64(i/partitions + 1), CaptureTime: now, IngestTime: now,
			ContentType: wire.ContentJPEG, Data: env.Frames[i%len(env.Frames)]}
		msgs = append(msgs, kafkaclient.FrameMessage(&f, st.Topic))
	}
	for i := 0; i < len(msgs); i += 100 {
		if err := p.SendMessages(msgs[i:min(i+100, len(msgs))]); err != nil {
			return stream, now, fmt.Errorf("producing the backlog: %w", err)
		}
	}
	return stream, now, nil
}

// freshRunnerMemory starts a runner process that registers and is never activated, and
// reports its resident memory once it announced itself idle.
func freshRunnerMemory(ctx context.Context, env *Env) (Row, error) {
	exe, err := os.Executable()
	if err != nil {
		return Row{}, err
	}
	id := fmt.Sprintf("bench-fresh-%d", os.Getpid())
	cmd := exec.CommandContext(ctx, exe, "runner", "--nats", env.Node.NATSURL(), "--id", id, "--cache", os.TempDir(), "--log-level", "error")
	if err := cmd.Start(); err != nil {
		return Row{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range env.resources().Runners {
			if r.ID == id && r.State == string(wire.StateIdle) {
				time.Sleep(2 * time.Second) // settled: a few heartbeats in
				s, err := sampleProc(cmd.Process.Pid)
				if err != nil {
					return Row{}, err
				}
				return Row{Scenario: "idle-runner-rss-fresh", P50: float64(s.rss) / (1 << 20),
					Note: "MB resident, registered and never activated (ONNX Runtime not loaded); target < 40 MB; by mapping (MB): " +
						rssByMapping(cmd.Process.Pid)}, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return Row{}, fmt.Errorf("runner %s did not register within 30 s", id)
}

// runModels measures the other example functions beside env.FunctionDir (NanoDet-m,
// person re-id: one per model family shipped), so a user sees each family's cost on
// this machine: per function a `limit NAME` row (the best standalone loop over the same
// frames, as the `limit` row: one lane with every CPU's thread, or one lane per CPU) and a `drain NAME` row (n frames already in
// Kafka, one runner, the runner's default lanes). An embedder's frames are whole camera
// frames stretched to its input: the cost of one crop.
func runModels(ctx context.Context, env *Env, d time.Duration, n, partitions int) ([]Row, error) {
	root := filepath.Dir(env.FunctionDir)
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	registryHost, _, ok := strings.Cut(env.Ref, "/")
	if !ok {
		return nil, fmt.Errorf("function reference %q has no registry host", env.Ref)
	}
	var rows []Row
	for _, e := range ents {
		dir := filepath.Join(root, e.Name())
		if !e.IsDir() || dir == filepath.Clean(env.FunctionDir) {
			continue
		}
		img, spec, err := registry.Build(dir, nil)
		if err != nil {
			env.say("model %s: skipped: %v", e.Name(), err)
			continue
		}
		ref, err := registry.ParseReference(registryHost+"/fn/"+spec.Name+":bench", false)
		if err != nil {
			return rows, err
		}
		if _, err := registry.Push(ctx, img, ref, nil); err != nil {
			return rows, fmt.Errorf("pushing %s: %w", ref, err)
		}
		m := *env
		m.Ref, m.FunctionDir = ref.String(), dir
		configs := []lanesConfig{{1, runtime.NumCPU()}}
		if c := runtime.NumCPU(); c > 1 {
			configs = append(configs, lanesConfig{c, 1})
		}
		var r loopResult
		var note string
		for _, c := range configs {
			env.say("model %s (decoder %s): standalone loop %s (lanes × intra-op threads) for %v", spec.Name, spec.Output.Decoder, c, d)
			lr, err := runLoop(ctx, d, &m, c)
			if err != nil {
				return rows, fmt.Errorf("model %s: %w", spec.Name, err)
			}
			note += fmt.Sprintf("%s: %.1f fps; ", c, lr.fps)
			if lr.fps > r.fps {
				r = lr
			}
		}
		limit := Row{Scenario: "limit " + spec.Name, Runners: r.cfg.lanes, FPS: r.fps, P50: Percentile(r.lat, 0.5), P95: Percentile(r.lat, 0.95),
			P99: Percentile(r.lat, 0.99), Ratio: 1,
			Note: fmt.Sprintf("decoder %s, input %dx%d; best standalone loop, lanes × threads %s; %sCPU %.1f ms per frame",
				spec.Output.Decoder, spec.Input.Width, spec.Input.Height, r.cfg, note, r.cpuPerFrame*1000)}
		env.say("model %s: drain, %d frames", spec.Name, n)
		dr, err := runDrain(ctx, &m, n, partitions, 0, limit, wire.AtLeastOnce)
		if err != nil {
			return rows, fmt.Errorf("model %s: drain: %w", spec.Name, err)
		}
		dr.Scenario = "drain " + spec.Name
		dr.Note = "ratio: fps / limit " + spec.Name + "; " + dr.Note
		rows = append(rows, limit, dr)
	}
	return rows, nil
}
