package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/node"
	"github.com/diplip/diplip/runner"
)

// Env is what a run measures: a running single-machine diplip, the function and frames.
type Env struct {
	Node *node.Node
	// Ref is the function image, already pushed to the node's registry.
	Ref string
	// FunctionDir holds the same function, for the direct loop.
	FunctionDir string
	// Frames are the sample JPEGs every scenario uses.
	Frames [][]byte
	// Media is the sample MJPEG file Frames came from, in the media cache: the 1080p rows
	// make their frames from it, beside it.
	Media string
	// KafkaLib is the Kafka jars directory, for ProducerPerformance.
	KafkaLib string
	// Progress receives one line per phase.
	Progress io.Writer
}

// processes names the processes of the platform: this one (gateway, registry, NATS),
// the Kafka broker when managed, and the runner processes the local driver started.
func (e *Env) processes() map[string]int {
	procs := map[string]int{"gateway": os.Getpid()}
	if pid := e.Node.KafkaPID(); pid != 0 {
		procs["kafka"] = pid
	}
	for id, pid := range e.Node.RunnerPIDs() {
		procs["runner "+id] = pid
	}
	return procs
}

// resources asks the gateway for its runners and deployments (empty on error).
func (e *Env) resources() api.Resources {
	cl, err := apiclient.New(e.Node.URL(), "")
	if err != nil {
		return api.Resources{}
	}
	res, _ := cl.Resources(context.Background())
	return res
}

func (e *Env) say(format string, args ...any) {
	if e.Progress != nil {
		fmt.Fprintf(e.Progress, "bench: "+format+"\n", args...)
	}
}

// Run measures every scenario the sweep asks for, in order, and returns the rows.
// Throughput ratios are against the `limit` row of the same run.
func Run(ctx context.Context, sw *Sweep, env *Env) ([]Row, error) {
	var rows []Row
	var limit, direct Row
	var modelCPU float64 // CPU seconds per frame of the model alone
	if sw.Direct {
		var err error
		if limit, direct, modelCPU, err = runLimit(ctx, time.Duration(sw.Duration), env); err != nil {
			return rows, fmt.Errorf("standalone loop: %w", err)
		}
		rows = append(rows, limit, direct)
	}
	var drain Row           // the best at-least-once drain
	eosLanes := sw.Lanes[0] // the lanes of that drain
	if sw.Drain > 0 && limit.FPS > 0 {
		for _, lanes := range sw.Lanes {
			env.say("drain: %d frames already in Kafka, one runner, lanes %s", sw.Drain, lanesName(lanes))
			r, err := runDrain(ctx, env, sw.Drain, sw.Cameras, lanes, limit, wire.AtLeastOnce)
			if err != nil {
				return rows, fmt.Errorf("drain: %w", err)
			}
			rows = append(rows, r)
			if r.FPS > drain.FPS {
				drain, eosLanes = r, lanes
			}
		}
		if sw.ExactlyOnce {
			env.say("drain: %d frames already in Kafka, one runner, lanes %s, exactly-once", sw.Drain, lanesName(eosLanes))
			r, err := runDrain(ctx, env, sw.Drain, sw.Cameras, eosLanes, limit, wire.ExactlyOnce)
			if err != nil {
				return rows, fmt.Errorf("drain, exactly-once: %w", err)
			}
			r.Ratio = r.FPS / drain.FPS
			r.Note = "ratio: fps / the at-least-once drain at the same lanes; " + r.Note
			rows = append(rows, r)
		}
	}
	for _, load := range sw.Pipeline {
		for _, lanes := range sw.Lanes {
			env.say("pipeline at %.2f × limit (%.1f fps offered by %d cameras), lanes %s", load, load*limit.FPS, sw.Cameras, lanesName(lanes))
			r, cpu, err := runPipeline(ctx, sw, env, load, limit, lanes, modelCPU, wire.AtLeastOnce)
			if err != nil {
				return rows, fmt.Errorf("pipeline at %.2f: %w", load, err)
			}
			rows = append(rows, r)
			if load >= 1 && cpu.Scenario != "" {
				rows = append(rows, cpu)
			}
		}
		if sw.ExactlyOnce && load < 1 { // latency with transactions, beside the rows above
			env.say("pipeline at %.2f × limit, lanes %s, exactly-once", load, lanesName(eosLanes))
			r, _, err := runPipeline(ctx, sw, env, load, limit, eosLanes, modelCPU, wire.ExactlyOnce)
			if err != nil {
				return rows, fmt.Errorf("pipeline at %.2f, exactly-once: %w", load, err)
			}
			rows = append(rows, r)
		}
	}
	if sw.Direct && sw.Drain > 0 && limit.FPS > 0 {
		// One limit and one drain row per other example function (model family).
		rs, err := runModels(ctx, env, time.Duration(sw.Duration), min(sw.Drain, 300), sw.Cameras)
		rows = append(rows, rs...)
		if err != nil {
			return rows, fmt.Errorf("models: %w", err)
		}
	}
	if limit.FPS > 0 && sw.Drain > 0 {
		// Chains, 1080p frames and INT8 (issues #24, #26): against limit and the best drain.
		rs, err := runExtra(ctx, sw, env, limit, drain)
		rows = append(rows, rs...)
		if err != nil {
			return rows, err
		}
	}
	if sw.ScaleUp && limit.FPS > 0 {
		env.say("scale-up: 0 → 2 runners at 1.5 × limit")
		r, err := runScaleUp(ctx, sw, env, limit)
		if err != nil {
			return rows, fmt.Errorf("scale-up: %w", err)
		}
		rows = append(rows, r)
	}
	if sw.ColdStart {
		env.say("cold start")
		r, err := runColdStart(ctx, env)
		if err != nil {
			return rows, fmt.Errorf("cold start: %w", err)
		}
		rows = append(rows, r)
		env.say("idle runner memory")
		if r, ok := idleRunnerMemory(env); ok {
			rows = append(rows, r)
		}
		if r, err := freshRunnerMemory(ctx, env); err == nil {
			rows = append(rows, r)
		} else {
			env.say("idle runner memory (never activated): %v", err)
		}
	}
	var one float64
	for _, k := range sw.Simulated {
		env.say("simulated accelerator: %d runners, %d partitions", k, sw.SimPartitions)
		r, err := runSimulated(ctx, sw, env, k)
		if err != nil {
			return rows, fmt.Errorf("simulated %d: %w", k, err)
		}
		if k == 1 {
			one = r.FPS
		}
		if one > 0 {
			r.Ratio = r.FPS / (float64(k) * one)
			r.Note = "efficiency: fps / (k × one runner)"
		}
		rows = append(rows, r)
	}
	if sw.Tracker {
		for _, n := range []int{10, 50} {
			env.say("tracker: %d detections per frame", n)
			r, err := runTracker(n, 2000)
			if err != nil {
				return rows, fmt.Errorf("tracker: %w", err)
			}
			rows = append(rows, r)
		}
	}
	if sw.Ingest {
		env.say("ingest: HTTP push vs Kafka's ProducerPerformance, %d records", sw.IngestRecords)
		rs, err := runIngest(ctx, sw, env)
		if err != nil {
			return rows, fmt.Errorf("ingest: %w", err)
		}
		rows = append(rows, rs...)
	}
	return rows, nil
}

func lanesName(l int) string {
	if l == 0 {
		return "default"
	}
	return fmt.Sprint(l)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// stream creates a fresh stream and deploys the function on it.
func deploy(ctx context.Context, env *Env, prefix string, partitions int32, min, max, lanes int) (wire.Stream, error) {
	return deployWith(ctx, env, prefix, partitions, api.DeployRequest{Min: min, Max: max, Policy: "replay", Lanes: lanes})
}

// deployWith creates a fresh stream and deploys the function on it as req says.
func deployWith(ctx context.Context, env *Env, prefix string, partitions int32, req api.DeployRequest) (wire.Stream, error) {
	cl, err := apiclient.New(env.Node.URL(), "")
	if err != nil {
		return wire.Stream{}, err
	}
	name := fmt.Sprintf("%s-%x", prefix, time.Now().UnixNano()&0xffffff)
	st, err := cl.CreateStream(ctx, api.StreamRequest{Name: name, Partitions: partitions})
	if err != nil {
		return wire.Stream{}, err
	}
	req.Ref, req.Stream = env.Ref, name
	_, err = cl.Deploy(ctx, req)
	return wire.Stream{Name: st.Name, Topic: st.Topic, ResultsTopic: st.ResultsTopic, Partitions: st.Partitions}, err
}

func undeploy(env *Env, st wire.Stream) {
	cl, _ := apiclient.New(env.Node.URL(), "")
	ctx := context.Background()
	fns, _ := cl.Deployments(ctx)
	for _, d := range fns {
		if d.Stream == st.Name {
			_ = cl.Undeploy(ctx, d.Function, d.Stream)
		}
	}
}

// results subscribes to a stream's live results and records, for each, the time from
// capture to observation on NATS.
type resultTap struct {
	mu     sync.Mutex
	lat    []float64
	at     []time.Time      // when each ok result was seen
	queue  []float64        // ingest to batch start, ms
	work   []float64        // decode + preprocess + inference per frame, ms
	crops  int              // detections with an embedding (a second stage's crops)
	other  map[string]int64 // results that were not ok, by status
	n      atomic.Int64
	from   time.Time // count only results seen at or after this
	sub    *nats.Subscription
	nc     *nats.Conn
	first  chan struct{}
	firstO sync.Once
}

func tapResults(env *Env, stream string) (*resultTap, error) {
	return tapSubject(env, wire.ResultSubject(stream, "*"))
}

// tapSubject taps the results published on subject (a wildcard over cameras).
func tapSubject(env *Env, subject string) (*resultTap, error) {
	nc, err := env.Node.ConnectNATS("diplip-bench")
	if err != nil {
		return nil, err
	}
	t := &resultTap{nc: nc, first: make(chan struct{}), other: map[string]int64{}}
	t.sub, err = nc.Subscribe(subject, func(m *nats.Msg) {
		now := time.Now()
		var r wire.Result
		if json.Unmarshal(m.Data, &r) != nil {
			return
		}
		if r.Status != wire.StatusOK {
			t.mu.Lock()
			if !t.from.IsZero() {
				t.other[r.Status]++
			}
			t.mu.Unlock()
			return
		}
		t.firstO.Do(func() { close(t.first) })
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.from.IsZero() && !now.Before(t.from) {
			t.lat = append(t.lat, ms(now.Sub(r.CaptureTime)))
			t.at = append(t.at, now)
			t.queue = append(t.queue, r.Timings.Queue)
			t.work = append(t.work, r.Timings.Decode+r.Timings.Preprocess+r.Timings.Infer)
			t.crops += embedded(&r)
			t.n.Add(1)
		}
	})
	return t, err
}

func (t *resultTap) window(from time.Time) {
	t.mu.Lock()
	t.from, t.lat, t.at, t.queue, t.work, t.crops = from, nil, nil, nil, nil, 0
	t.n.Store(0)
	t.mu.Unlock()
}

func (t *resultTap) close() { t.sub.Unsubscribe(); t.nc.Close() }

// runPipeline offers load × the limit rate through the gateway's push, spread over the
// sweep's cameras, to one runner, and measures ok results per second and end-to-end
// latency (capture to the result seen on NATS) over the sweep's duration. It also returns
// the platform-cpu row: CPU seconds of the broker, the gateway and the runner per frame,
// less the model's own (modelCPU, measured by the limit loop).
func runPipeline(ctx context.Context, sw *Sweep, env *Env, load float64, limit Row, lanes int, modelCPU float64, delivery wire.Delivery) (Row, Row, error) {
	// Live cameras get the live policy (the default max age): under overload, frames older
	// than it are skipped and counted beside the ok ones.
	st, err := deployWith(ctx, env, "bench-pipe", int32(sw.Cameras), api.DeployRequest{Min: 1, Max: 1, Lanes: lanes, Delivery: string(delivery)})
	if err != nil {
		return Row{}, Row{}, err
	}
	defer undeploy(env, st)
	tap, err := tapResults(env, st.Name)
	if err != nil {
		return Row{}, Row{}, err
	}
	defer tap.close()

	offered := load * limit.FPS
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var refused atomic.Int64
	startCameras(cctx, sw, env, st.Name, offered, &refused)
	select { // the runner's cold start is not part of this measurement
	case <-tap.first:
	case <-time.After(2 * time.Minute):
		return Row{}, Row{}, fmt.Errorf("no result within 2 minutes")
	}
	time.Sleep(2 * time.Second) // let the backlog of the cold start drain at the offered rate
	from := time.Now()
	tap.window(from)
	procs := watchProcs(env.processes())
	time.Sleep(time.Duration(sw.Duration))
	usage := procs.summary()
	cpu := procs.cpuSeconds()
	el := time.Since(from).Seconds()
	stop()
	tap.mu.Lock()
	lat := append([]float64(nil), tap.lat...)
	queue, work := Percentile(tap.queue, 0.5), Percentile(tap.work, 0.5)
	other := fmt.Sprint(tap.other)
	tap.mu.Unlock()
	r := Row{Scenario: scenario("pipeline-"+sw.Push, delivery), Load: load, Runners: 1, Offered: offered, FPS: float64(len(lat)) / el,
		P50: Percentile(lat, 0.5), P95: Percentile(lat, 0.95), P99: Percentile(lat, 0.99)}
	r.Ratio = r.FPS / limit.FPS
	r.Note = fmt.Sprintf("lanes %s; ok fps / limit; added p50 %.1f ms, p99 %.1f ms over limit's p50; p50 of queue (ingest to batch) %.1f ms, decode+infer %.1f ms",
		lanesName(lanes), r.P50-limit.P50, r.P99-limit.P50, queue, work)
	if n := refused.Load(); n > 0 {
		r.Note += fmt.Sprintf("; %d pushes refused", n)
	}
	r.Note += "; results not ok: " + other + "; " + usage
	var pc Row
	if frames := float64(len(lat)); frames > 0 && modelCPU > 0 {
		per := cpu/frames - modelCPU
		pc = Row{Scenario: "platform-cpu", Load: load, Runners: 1, FPS: r.FPS, P50: per * 1000,
			Note: fmt.Sprintf("lanes %s; CPU ms per ok frame of broker + gateway (with the bench's pushers) + runner, less the model's %.1f ms (limit loop)",
				lanesName(lanes), modelCPU*1000)}
	}
	return r, pc, nil
}

// startCameras starts the sweep's cameras pushing offered frames per second in all to
// stream until ctx ends, counting refused pushes.
func startCameras(ctx context.Context, sw *Sweep, env *Env, stream string, offered float64, refused *atomic.Int64) {
	perCamera := offered / float64(sw.Cameras)
	period := time.Duration(float64(time.Second) / perCamera)
	for i := range sw.Cameras {
		go func() {
			// Real cameras are not in phase: spread their ticks over the period, or the
			// offered load arrives in bursts of one frame per camera.
			select {
			case <-time.After(time.Duration(i) * period / time.Duration(sw.Cameras)):
			case <-ctx.Done():
				return
			}
			cam := fmt.Sprintf("cam-%d", i)
			if sw.Push == "mjpeg" {
				if status, err := ingest.PushMJPEGLoop(ctx, env.Node.URL(), "", stream, cam, env.Frames, perCamera); err != nil || status != http.StatusOK {
					refused.Add(1)
				}
				return
			}
			ingest.PushLoop(ctx, env.Node.URL(), "", stream, cam, env.Frames, perCamera,
				func(status int, err error) {
					if status != http.StatusCreated {
						refused.Add(1)
					}
				})
		}()
	}
}

// scenario names a row of a phase run with delivery: the at-least-once rows keep their
// names; exactly-once ones get "-exactly-once".
func scenario(name string, delivery wire.Delivery) string {
	if delivery.Transactional() {
		return name + "-" + string(delivery)
	}
	return name
}

// runColdStart times the first frame on a stream with no runner to its first result. The
// image is cached by the earlier phases; whether an idle runner process was there to
// activate (versus a process to start) is in the note.
func runColdStart(ctx context.Context, env *Env) (Row, error) {
	// The earlier phases' runners go idle once their deployments are gone: wait for one,
	// so the row measures an activation (a scale from zero onto an idle runner).
	idle := 0
	for deadline := time.Now().Add(15 * time.Second); idle == 0 && time.Now().Before(deadline); {
		for _, r := range env.resources().Runners {
			if r.State == string(wire.StateIdle) {
				idle++
			}
		}
		if idle == 0 {
			time.Sleep(250 * time.Millisecond)
		}
	}
	st, err := deploy(ctx, env, "bench-cold", 1, 0, 1, 0)
	if err != nil {
		return Row{}, err
	}
	defer undeploy(env, st)
	tap, err := tapResults(env, st.Name)
	if err != nil {
		return Row{}, err
	}
	defer tap.close()
	// No timeout of its own (http.DefaultClient): a slow first frame is what this row
	// measures, not a reason to give up; ctx still ends it.
	cl, err := apiclient.New(env.Node.URL(), "", apiclient.WithHTTPClient(http.DefaultClient))
	if err != nil {
		return Row{}, err
	}
	t0 := time.Now()
	if _, err := cl.PushFrame(ctx, st.Name, apiclient.Frame{Camera: "cold", Image: env.Frames[0]}); err != nil {
		return Row{}, fmt.Errorf("pushing the first frame: %w", err)
	}
	select {
	case <-tap.first:
	case <-time.After(2 * time.Minute):
		return Row{}, fmt.Errorf("no result within 2 minutes")
	}
	d := ms(time.Since(t0))
	note := "a runner process was started"
	if idle > 0 {
		note = "an idle runner process was activated"
	}
	return Row{Scenario: "cold-start", P50: d, P95: d, P99: d, Note: note + "; image cached; target ≤ 1000 ms"}, nil
}

// runScaleUp offers 1.5 × the limit rate to a deployment with min 0 and max 2 and times
// the first frame to the moment two runners work the deployment.
func runScaleUp(ctx context.Context, sw *Sweep, env *Env, limit Row) (Row, error) {
	st, err := deploy(ctx, env, "bench-scale", 4, 0, 2, 0)
	if err != nil {
		return Row{}, err
	}
	defer undeploy(env, st)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	t0 := time.Now()
	for i := range sw.Cameras {
		go ingest.PushLoop(cctx, env.Node.URL(), "", st.Name, fmt.Sprintf("cam-%d", i), env.Frames, 1.5*limit.FPS/float64(sw.Cameras), nil)
	}
	spec, err := functions.LoadSpec(env.FunctionDir)
	if err != nil {
		return Row{}, err
	}
	key := wire.DeploymentKey(spec.Name, st.Name)
	var one time.Duration
	for time.Since(t0) < 2*time.Minute {
		for _, d := range env.resources().Deployments {
			if d.Key != key {
				continue
			}
			if len(d.Runners) >= 1 && one == 0 {
				one = time.Since(t0)
			}
			if len(d.Runners) >= 2 {
				el := time.Since(t0)
				return Row{Scenario: "scale-up", Runners: 2, Offered: 1.5 * limit.FPS, P50: ms(el),
					Note: fmt.Sprintf("ms from the first frame to 2 runners (first runner at %.0f ms)", ms(one))}, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return Row{}, fmt.Errorf("no second runner within 2 minutes")
}

// idleRunnerMemory waits (up to 30 s) for a runner to be idle again after its deployment
// went away, and reports its resident memory: DESIGN.md wants an idle runner under 40 MB.
func idleRunnerMemory(env *Env) (Row, bool) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		pids := env.Node.RunnerPIDs()
		for _, r := range env.resources().Runners {
			if pid, ok := pids[r.ID]; ok && r.State == string(wire.StateIdle) {
				time.Sleep(time.Second) // let the deactivation's GC finish
				s, err := sampleProc(pid)
				if err != nil {
					continue
				}
				mb := float64(s.rss) / (1 << 20)
				return Row{Scenario: "idle-runner-rss", P50: mb,
					Note: "MB resident, after a deactivation (no model, no group; ONNX Runtime stays loaded); by mapping (MB): " + rssByMapping(pid)}, true
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return Row{}, false
}

// simulatedModel is an accelerator that takes service + perFrame × frames per batch,
// sleeping, so that many runners scale past the machine's two cores.
type simulatedModel struct{ service, perFrame time.Duration }

func (m simulatedModel) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	d := m.service + time.Duration(len(frames))*m.perFrame
	time.Sleep(d)
	return make([]functions.FrameResult, len(frames)), functions.BatchTimings{Infer: d}, nil
}

// runSimulated starts k runner workers with the simulated accelerator on a fresh stream,
// waits until they hold all partitions, then produces a backlog and measures how fast the
// workers turn it into results, through the same runner code as a real function.
func runSimulated(ctx context.Context, sw *Sweep, env *Env, k int) (Row, error) {
	name := fmt.Sprintf("bench-sim-%x", time.Now().UnixNano()&0xffffff)
	st := wire.Stream{Name: name, Topic: "diplip.frames." + name, ResultsTopic: "diplip.results." + name, Partitions: sw.SimPartitions}
	brokers := env.Node.Brokers()
	admin, err := sarama.NewClusterAdmin(brokers, kafkaclient.NewConfig("diplip-bench"))
	if err != nil {
		return Row{}, err
	}
	defer admin.Close()
	for _, t := range []string{st.Topic, st.ResultsTopic} {
		if err := admin.CreateTopic(t, &sarama.TopicDetail{NumPartitions: st.Partitions, ReplicationFactor: 1}, false); err != nil {
			return Row{}, err
		}
		defer admin.DeleteTopic(t)
	}
	d := wire.Deployment{Function: "sim", Stream: name, Digest: "bench/sim@sha256:0000000000000000", Max: k,
		Batch: sw.SimBatch, Device: wire.DeviceCPU, Policy: wire.PolicyReplay}
	model := simulatedModel{service: time.Duration(sw.SimServiceTime), perFrame: time.Duration(sw.SimPerFrame)}
	var workers []*runner.Worker
	var clients []*kafkaclient.Client
	wctx, stopWorkers := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() { // each simulated runner stops, then its client closes
		stopWorkers()
		running.Wait()
		for _, kc := range clients {
			kc.Close()
		}
	}()
	for i := range k {
		kc := kafkaclient.NewWithConfig(brokers, kafkaclient.RunnerConfig(fmt.Sprintf("bench-sim-%d", i)))
		clients = append(clients, kc)
		w, err := runner.NewWorker(runner.WorkerConfig{Kafka: kc, Deployment: d, Stream: st, Model: model,
			MaxDelay: 5 * time.Millisecond})
		if err != nil {
			return Row{}, err
		}
		running.Go(func() { _ = w.Run(wctx) })
		workers = append(workers, w)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		held, all := 0, true
		for _, w := range workers {
			n := len(w.Partitions())
			held += n
			all = all && n > 0
		}
		if held == int(st.Partitions) && all {
			break
		}
		if time.Now().After(deadline) {
			return Row{}, fmt.Errorf("%d workers hold %d of %d partitions after 2 minutes", k, held, st.Partitions)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Enough frames for about three seconds of ideal work at k runners.
	perRunner := float64(sw.SimBatch) / (time.Duration(sw.SimServiceTime) + time.Duration(sw.SimBatch)*time.Duration(sw.SimPerFrame)).Seconds()
	total := int(3 * perRunner * float64(k))
	prod, err := sarama.NewSyncProducer(brokers, kafkaclient.NewConfig("diplip-bench-sim"))
	if err != nil {
		return Row{}, err
	}
	defer prod.Close()
	now := time.Now()
	start := now
	var batch []*sarama.ProducerMessage
	for i := range total {
		f := wire.Frame{Camera: fmt.Sprintf("sim-%d", i%64), Seq: uint64(i + 1), CaptureTime: now, IngestTime: now,
			ContentType: wire.ContentJPEG, Data: []byte{0xff, 0xd8}}
		batch = append(batch, kafkaclient.FrameMessage(&f, st.Topic))
		if len(batch) == 500 || i == total-1 {
			if err := prod.SendMessages(batch); err != nil {
				return Row{}, err
			}
			batch = batch[:0]
		}
	}
	for {
		var done int64
		for _, w := range workers {
			done += w.Stats.Frames.Load()
		}
		if done >= int64(total) {
			break
		}
		if time.Since(start) > 3*time.Minute {
			return Row{}, fmt.Errorf("%d of %d frames done after 3 minutes", done, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	el := time.Since(start).Seconds()
	return Row{Scenario: "simulated", Runners: k, Offered: perRunner * float64(k), FPS: float64(total) / el}, nil
}

var perfRE = regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec`)

// runIngest pushes IngestRecords frames through the HTTP push endpoint (8 concurrent
// clients, one frame per request, each answered after acks=all), then runs Kafka's own
// ProducerPerformance with the same record size and acks=all, and reports the ratio.
func runIngest(ctx context.Context, sw *Sweep, env *Env) ([]Row, error) {
	st, err := deploy(ctx, env, "bench-ingest", 4, 0, 1, 0)
	if err != nil {
		return nil, err
	}
	undeploy(env, st) // no runner: this measures ingest alone
	frame := env.Frames[0]
	// Kept-alive connections of http.DefaultTransport, 30 s per push: the 8 clients are
	// 8 cameras, each waiting for its frame's acks=all.
	cl, err := apiclient.New(env.Node.URL(), "", apiclient.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}))
	if err != nil {
		return nil, err
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := range 8 {
		wg.Go(func() {
			f := apiclient.Frame{Camera: "ing-" + strconv.Itoa(c), Image: frame}
			for next.Add(1) <= int64(sw.IngestRecords) {
				if _, err := cl.PushFrame(ctx, st.Name, f); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	httpFPS := float64(sw.IngestRecords) / time.Since(start).Seconds()
	rows := []Row{{Scenario: "ingest-http", FPS: httpFPS, Note: fmt.Sprintf("%d-byte frames, 8 clients, %d failed", len(frame), failed.Load())}}

	cmd := exec.CommandContext(ctx, "java", "-Xmx512m", "-cp", filepath.Join(env.KafkaLib, "*"), "org.apache.kafka.tools.ProducerPerformance",
		"--topic", st.Topic, "--num-records", strconv.Itoa(sw.IngestRecords), "--record-size", strconv.Itoa(len(frame)),
		"--throughput", "-1", "--producer-props", "bootstrap.servers="+strings.Join(env.Node.Brokers(), ","), "acks=all")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return rows, fmt.Errorf("ProducerPerformance: %v\n%s", err, out)
	}
	m := perfRE.FindAllStringSubmatch(string(out), -1)
	if len(m) == 0 {
		return rows, fmt.Errorf("ProducerPerformance printed no summary:\n%s", out)
	}
	perf, _ := strconv.ParseFloat(m[len(m)-1][2], 64)
	rows = append(rows, Row{Scenario: "ingest-kafka-perf", FPS: perf, Note: "org.apache.kafka.tools.ProducerPerformance, acks=all"})
	rows[0].Ratio = httpFPS / perf
	rows[0].Note += "; ratio: HTTP push / ProducerPerformance"
	return rows, nil
}
