package bench

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

// The chain rows (issue #24): env's function (YOLOX-Nano) as the first stage and the
// person re-id embedder after it on the people at least 60 px high, deployed as
// `diplip fn deploy person-reid --after yolox-nano --classes person --min-size 60` does.
const (
	chainFirst   = "yolox-nano"  // env's function
	chainSecond  = "person-reid" // an example function beside env's
	chainClass   = "person"
	chainMinSize = 60
)

// runExtra measures the rows of issues #24 and #26 the sweep asks for, against the run's
// limit and best drain: 1080p frames, INT8, the chain.
func runExtra(ctx context.Context, sw *Sweep, env *Env, limit, drain Row) ([]Row, error) {
	var rows []Row
	if sw.Frames1080p {
		rs, err := run1080p(ctx, sw, env, limit)
		rows = append(rows, rs...)
		if err != nil {
			return rows, fmt.Errorf("1080p: %w", err)
		}
	}
	if sw.INT8 {
		rs, err := runINT8(ctx, sw, env, limit, drain)
		rows = append(rows, rs...)
		if err != nil {
			return rows, fmt.Errorf("int8: %w", err)
		}
	}
	if len(sw.Chain) > 0 {
		rs, err := runChain(ctx, sw, env, limit)
		rows = append(rows, rs...)
		if err != nil {
			return rows, fmt.Errorf("chain: %w", err)
		}
	}
	return rows, nil
}

// pushFunction builds the function in dir and pushes it to the node's registry as
// fn/NAME:tag, returning its reference.
func pushFunction(ctx context.Context, env *Env, dir, tag string) (string, *functions.Spec, error) {
	host, _, ok := strings.Cut(env.Ref, "/")
	if !ok {
		return "", nil, fmt.Errorf("function reference %q has no registry host", env.Ref)
	}
	img, spec, err := registry.Build(dir, nil)
	if err != nil {
		return "", nil, err
	}
	ref, err := registry.ParseReference(host+"/fn/"+spec.Name+":"+tag, false)
	if err != nil {
		return "", nil, err
	}
	if _, err := registry.Push(ctx, img, ref, nil); err != nil {
		return "", nil, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return ref.String(), spec, nil
}

// chain is one chain deployed on a fresh stream.
type chain struct {
	stream        wire.Stream
	first, second string // function names
	firstTap      *resultTap
	tap           *resultTap // the enriched results
}

// deployChain deploys the first stage (env's function) and the second (ref) after it on
// stream, with the policy and replicas given, and taps both stages' live results.
func deployChain(ctx context.Context, env *Env, st wire.Stream, first, ref string, min int, policy string) (*chain, error) {
	cl, err := apiclient.New(env.Node.URL(), "")
	if err != nil {
		return nil, err
	}
	c := &chain{stream: st, first: first, second: chainSecond}
	if c.firstTap, err = tapResults(env, st.Name); err != nil {
		return nil, err
	}
	after := wire.Deployment{Role: wire.RoleAfter, Function: c.second, Stream: st.Name, After: &wire.AfterInfo{Function: first}}
	if c.tap, err = tapSubject(env, after.ResultSubject("*")); err != nil {
		c.close()
		return nil, err
	}
	if _, err := cl.Deploy(ctx, api.DeployRequest{Ref: env.Ref, Stream: st.Name, Min: min, Max: 1, Policy: policy}); err != nil {
		c.close()
		return nil, fmt.Errorf("first stage: %w", err)
	}
	if _, err := cl.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: st.Name, Min: min, Max: 1, Policy: policy,
		After: first, Classes: []string{chainClass}, MinSize: chainMinSize}); err != nil {
		c.close()
		return nil, fmt.Errorf("second stage: %w", err)
	}
	return c, nil
}

func (c *chain) close() {
	if c.firstTap != nil {
		c.firstTap.close()
	}
	if c.tap != nil {
		c.tap.close()
	}
}

// The names of the stages' runners in procWatch summaries.
func stageName(stage int, function string) string {
	return fmt.Sprintf("stage %d runner (%s)", stage, function)
}

// stageProcs names the processes a chain's phase uses: the gateway, the broker and each
// stage's runner that the gateway lists as working it now.
func (c *chain) stageProcs(env *Env) map[string]int {
	procs := map[string]int{"gateway": env.processes()["gateway"]}
	if pid := env.Node.KafkaPID(); pid != 0 {
		procs["kafka"] = pid
	}
	pids := env.Node.RunnerPIDs()
	stage := map[string]string{
		wire.DeploymentKey(c.first, c.stream.Name):      stageName(1, c.first),
		wire.AfterKey(c.second, c.stream.Name, c.first): stageName(2, c.second),
	}
	for _, r := range env.resources().Runners {
		if name, ok := stage[r.Deployment]; ok && pids[r.ID] != 0 {
			procs[name] = pids[r.ID]
		}
	}
	return procs
}

// only keeps the processes of procs named in names.
func only(procs map[string]int, names ...string) map[string]int {
	out := map[string]int{}
	for _, n := range names {
		if pid, ok := procs[n]; ok {
			out[n] = pid
		}
	}
	return out
}

// cpuOf is the CPU seconds the watched process name used since the watch began; 0 when
// it is not watched.
func (w *procWatch) cpuOf(name string) float64 {
	for i, n := range w.names {
		if n != name {
			continue
		}
		end, err := sampleProc(w.pids[i])
		if err != nil {
			return 0
		}
		return (end.cpu - w.starts[i].cpu).Seconds()
	}
	return 0
}

// cpuNote is the CPU milliseconds per frame of each stage's runner, and per crop of the
// second, as the chain rows say it; "n/a" where a runner was not seen.
func cpuNote(cpu1, cpu2 float64, frames, crops int) string {
	per := func(cpu float64, n int) string {
		if cpu <= 0 || n <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f", cpu*1000/float64(n))
	}
	return fmt.Sprintf("CPU ms per frame: stage 1 runner %s, stage 2 runner %s (%s per crop)", per(cpu1, frames), per(cpu2, frames), per(cpu2, crops))
}

// embedded counts a result's detections that carry an embedding: the crops a second
// stage ran on.
func embedded(r *wire.Result) int {
	n := 0
	for _, d := range r.Detections {
		if len(d.Embedding) > 0 {
			n++
		}
	}
	return n
}

// perSecond is n events over d; 0 for no time.
func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// ratio is a / b; 0 when b is 0 (nothing to compare with).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// chainDrain is what draining a backlog through both stages measured.
type chainDrain struct {
	fps      float64 // enriched results per second, first stage 1 result to the last enriched
	crops    float64 // stage 2's crops per second over the same span
	perFrame float64 // crops per enriched result
	usage    string  // per process, from the first result on
	notOK    string
}

// runChainDrain puts n frames into a fresh stream, then deploys the chain on it (replay
// policy, min 0, max 1 each) and measures enriched results per second from the first
// stage's first result to the last enriched one: the second stage's cold start, which the
// first stage does not wait for, stays inside the span.
func runChainDrain(ctx context.Context, env *Env, ref string, n, partitions int) (chainDrain, error) {
	st, now, err := produceBacklog(ctx, env, "bench-chain-drain", n, partitions)
	if err != nil {
		return chainDrain{}, err
	}
	defer undeploy(env, st)
	c, err := deployChain(ctx, env, st, chainFirst, ref, 0, "replay")
	if err != nil {
		return chainDrain{}, err
	}
	defer c.close()
	c.firstTap.window(now.Add(-time.Second))
	c.tap.window(now.Add(-time.Second))
	// Each stage's runner is watched from its first result: stage 1's with the broker and
	// the gateway, stage 2's from the first enriched result, both to the end.
	s1, s2 := stageName(1, c.first), stageName(2, c.second)
	var w1, w2 *procWatch
	deadline := time.Now().Add(5 * time.Minute)
	var first, last time.Time
	for {
		c.firstTap.mu.Lock()
		if len(c.firstTap.at) > 0 {
			first = c.firstTap.at[0]
		}
		c.firstTap.mu.Unlock()
		c.tap.mu.Lock()
		done, notOK := len(c.tap.at), sumCounts(c.tap.other)
		if done > 0 {
			last = c.tap.at[done-1]
		}
		c.tap.mu.Unlock()
		if !first.IsZero() && w1 == nil {
			w1 = watchProcs(only(c.stageProcs(env), s1, "kafka", "gateway"))
		}
		if done > 0 && w2 == nil {
			w2 = watchProcs(only(c.stageProcs(env), s2))
		}
		if int64(done)+notOK >= int64(n) && !first.IsZero() {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return chainDrain{}, fmt.Errorf("%d of %d enriched results in 5 minutes", done, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.tap.mu.Lock()
	defer c.tap.mu.Unlock()
	span := last.Sub(first)
	return chainDrain{fps: perSecond(len(c.tap.at)-1, span), crops: perSecond(c.tap.crops, span),
		perFrame: ratio(float64(c.tap.crops), float64(len(c.tap.at))), notOK: fmt.Sprint(c.tap.other),
		usage: w1.summary() + "; " + w2.summary() + "; " + cpuNote(w1.cpuOf(s1), w2.cpuOf(s2), n, c.tap.crops)}, nil
}

// runChain measures the chain: YOLOX-Nano alone draining the sweep's backlog before and
// after the chain draining the same backlog (the `chain-drain` row: ratio of the chain to
// the mean of the two), then the
// chain under the sweep's cameras at each of sw.Chain × limit (the `chain` row: camera to
// enriched result latency, stage 2's crops per second, CPU per stage).
func runChain(ctx context.Context, sw *Sweep, env *Env, limit Row) ([]Row, error) {
	ref, _, err := pushFunction(ctx, env, filepath.Join(filepath.Dir(env.FunctionDir), chainSecond), "bench")
	if err != nil {
		return nil, err
	}
	n := sw.Drain
	// YOLOX-Nano alone drains the same backlog before and after the chain: on a shared
	// machine the speed drifts within a minute, and the mean of the two brackets it.
	var alone [2]Row
	var cd chainDrain
	for i, phase := range []string{"before", "chain", "after"} {
		if phase == "chain" {
			env.say("chain: %s → %s, %d frames already in Kafka", chainFirst, chainSecond, n)
			if cd, err = runChainDrain(ctx, env, ref, n, sw.Cameras); err != nil {
				return nil, fmt.Errorf("drain: %w", err)
			}
			continue
		}
		env.say("chain: %s alone (%s the chain), %d frames already in Kafka, one runner", chainFirst, phase, n)
		if alone[i/2], err = runDrain(ctx, env, n, sw.Cameras, 0, limit, wire.AtLeastOnce); err != nil {
			return nil, fmt.Errorf("stage 1 alone: %w", err)
		}
	}
	aloneFPS := (alone[0].FPS + alone[1].FPS) / 2
	r := ratio(cd.fps, aloneFPS)
	unsteady := ""
	if d := spread(alone[0].FPS, alone[1].FPS); d > 0.25 {
		unsteady = fmt.Sprintf("UNSTEADY: %s alone drained %.0f %% apart before and after, so the machine's speed moved under the ratio; read the CPU per frame below; ", chainFirst, d*100)
	}
	drainRow := Row{Scenario: "chain-drain", Runners: 2, FPS: cd.fps, Ratio: r,
		Note: unsteady + fmt.Sprintf("%d frames already in Kafka through %s → %s (%s ≥ %d px high), replay policy, one runner per stage, the runner's default lanes; "+
			"ratio: enriched results/s (first stage-1 result to last enriched) / %s alone draining the same number of frames, the mean of just before and just after (%.1f and %.1f fps); "+
			"stage 2 %.1f crops/s (%.2f per frame); not ok: %s; %s",
			n, chainFirst, chainSecond, chainClass, chainMinSize, chainFirst, alone[0].FPS, alone[1].FPS, cd.crops, cd.perFrame, cd.notOK, cd.usage)}
	rows := []Row{drainRow}

	var loads []Row
	for _, l := range sw.Chain {
		env.say("chain at %.2f × limit (%.1f fps offered by %d cameras)", l, l*limit.FPS, sw.Cameras)
		load, err := runChainLoad(ctx, sw, env, ref, l, limit)
		if err != nil {
			return append(loads, rows...), fmt.Errorf("at %.2f × limit: %w", l, err)
		}
		load.Ratio = r
		load.Note = fmt.Sprintf("ratio: chain-drain's (enriched results/s / %s alone, %.1f / %.1f fps); ", chainFirst, cd.fps, aloneFPS) + load.Note
		if load.Offered > cd.fps {
			load.Note = fmt.Sprintf("OVERLOADED: %.1f fps offered is more than the chain drains (%.1f), so the latency is a queue's; ", load.Offered, cd.fps) + load.Note
		}
		loads = append(loads, load)
	}
	return append(loads, rows...), nil
}

// runChainLoad offers load × the limit rate through the gateway's push to a chain
// (live policy, one runner per stage, both started before the cameras) and measures, over
// the sweep's duration, ok enriched results per second, their latency from capture (the
// push) to the enriched result seen on NATS, the first stage's own latency beside it, and
// the second stage's crops per second.
func runChainLoad(ctx context.Context, sw *Sweep, env *Env, ref string, load float64, limit Row) (Row, error) {
	cl, err := apiclient.New(env.Node.URL(), "")
	if err != nil {
		return Row{}, err
	}
	name := fmt.Sprintf("bench-chain-%x", time.Now().UnixNano()&0xffffff)
	s, err := cl.CreateStream(ctx, api.StreamRequest{Name: name, Partitions: int32(sw.Cameras)})
	if err != nil {
		return Row{}, err
	}
	st := wire.Stream{Name: s.Name, Topic: s.Topic, ResultsTopic: s.ResultsTopic, Partitions: s.Partitions}
	defer undeploy(env, st)
	c, err := deployChain(ctx, env, st, chainFirst, ref, 1, "")
	if err != nil {
		return Row{}, err
	}
	defer c.close()
	offered := load * limit.FPS
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var refused atomic.Int64
	startCameras(cctx, sw, env, st.Name, offered, &refused)
	select { // the runners' cold starts are not part of this measurement
	case <-c.tap.first:
	case <-time.After(2 * time.Minute):
		return Row{}, fmt.Errorf("no enriched result within 2 minutes")
	}
	time.Sleep(2 * time.Second)
	from := time.Now()
	c.tap.window(from)
	c.firstTap.window(from)
	procs := watchProcs(c.stageProcs(env))
	time.Sleep(time.Duration(sw.Duration))
	usage := procs.summary()
	cpu1, cpu2 := procs.cpuOf(stageName(1, c.first)), procs.cpuOf(stageName(2, c.second))
	el := time.Since(from)
	stop()
	c.firstTap.mu.Lock()
	p50a, p99a := Percentile(c.firstTap.lat, 0.5), Percentile(c.firstTap.lat, 0.99)
	firstN := len(c.firstTap.lat) + int(sumCounts(c.firstTap.other))
	c.firstTap.mu.Unlock()
	c.tap.mu.Lock()
	defer c.tap.mu.Unlock()
	lat := c.tap.lat
	r := Row{Scenario: "chain", Load: load, Runners: 2, Offered: offered, FPS: perSecond(len(lat), el),
		P50: Percentile(lat, 0.5), P95: Percentile(lat, 0.95), P99: Percentile(lat, 0.99)}
	r.Note = fmt.Sprintf("latency: capture (push) to the enriched result on NATS; stage 1's own results p50 %.1f ms, p99 %.1f ms (stage 2 adds %.1f ms at p50); "+
		"stage 2 %.1f crops/s (%.2f per frame, %s ≥ %d px high); results not ok: %s",
		p50a, p99a, r.P50-p50a, perSecond(c.tap.crops, el), ratio(float64(c.tap.crops), float64(len(lat))), chainClass, chainMinSize, fmt.Sprint(c.tap.other))
	if n := refused.Load(); n > 0 {
		r.Note += fmt.Sprintf("; %d pushes refused", n)
	}
	perFrame := cpuNote(cpu1, cpu2, len(lat), c.tap.crops)
	if firstN > 0 && cpu1 > 0 { // stage 1 answers frames stage 2 has not reached yet
		perFrame = cpuNote(cpu1*float64(len(lat))/float64(firstN), cpu2, len(lat), c.tap.crops)
	}
	r.Note += "; " + usage + "; " + perFrame
	return r, nil
}

// spread is how far apart a and b are, as a fraction of their mean; 0 when both are 0.
func spread(a, b float64) float64 {
	return ratio(math.Abs(a-b), (a+b)/2)
}

// sumCounts adds up a tap's counts of results that were not ok.
func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
