package faults

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/testkit/cluster"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

// Plan is a whole run: the topology, the load, the deployment and the schedule.
type Plan struct {
	// Mode is the deployment's --delivery (default at-least-once); it also says how the
	// checker reads the results: read_uncommitted for at-least-once, as any reader may,
	// read_committed for exactly-once, as its readers must.
	Mode     wire.Delivery
	Schedule Schedule
	// Dir holds the cluster's data and logs; Binary is the diplip binary. Required.
	Dir, Binary string
	// Gateways and Runners of the cluster. Defaults 2 and 3.
	Gateways, Runners int
	// Cameras push FPS frames a second each, alternating between the gateways.
	Cameras int
	FPS     float64
	Frame   []byte // a JPEG
	// Partitions of the stream. Default: Cameras.
	Partitions int32
	// Min and Max runners of the deployment. Defaults 2 and 2.
	Min, Max int
	// FunctionDir is the function to deploy (functions/examples/yolox-nano). Required.
	FunctionDir string
	// Drain bounds the wait for the last results after the pushers stop. Default 90s.
	Drain time.Duration
	// Targets are what the run must meet beyond "nothing lost" (Report.Misses).
	Targets Targets
	// Logf receives progress (t.Logf). Default: none.
	Logf func(format string, args ...any)
}

// Run starts the cluster, creates the stream, pushes and deploys the function, adds a
// camera record, waits for the runners, then runs the pushers, the checker and the
// schedule together; after Schedule.Length it stops the pushers, waits for every
// acknowledged frame's result (up to Drain), and compares the control plane with its
// state before the schedule. The cluster is stopped before Run returns.
func (p Plan) Run(ctx context.Context) (Report, []Event, error) {
	mode, err := wire.ParseDelivery(string(p.Mode))
	if err != nil {
		return Report{}, nil, fmt.Errorf("faults: mode: %w", err)
	}
	p.Mode = mode
	isolation := sarama.ReadUncommitted
	if mode.Transactional() {
		isolation = sarama.ReadCommitted
	}
	if p.Partitions == 0 {
		p.Partitions = int32(p.Cameras)
	}
	if p.Min == 0 {
		p.Min = 2
	}
	if p.Max == 0 {
		p.Max = max(2, p.Min)
	}
	if p.Drain == 0 {
		p.Drain = 90 * time.Second
	}
	logf := p.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	t0 := time.Now()
	c, err := cluster.Start(ctx, cluster.Config{Dir: p.Dir, Binary: p.Binary, Gateways: p.Gateways, Runners: p.Runners})
	if err != nil {
		return Report{}, nil, err
	}
	defer c.Close()
	logf("cluster up in %.1fs: brokers %v, nats %s, %d gateways, %d runners", time.Since(t0).Seconds(), c.Brokers(), c.NATSURL(), c.Gateways(), c.Runners())

	gw0, _ := client.New(c.GatewayURL(0), "")
	stream := fmt.Sprintf("faults-%x", time.Now().UnixNano()&0xffffff)
	st, err := gw0.CreateStream(ctx, api.StreamRequest{Name: stream, Partitions: p.Partitions})
	if err != nil {
		return Report{}, nil, fmt.Errorf("creating stream: %w", err)
	}
	img, _, err := registry.Build(p.FunctionDir, nil)
	if err != nil {
		return Report{}, nil, err
	}
	ref, err := registry.ParseReference(strings.TrimPrefix(c.GatewayURL(0), "http://")+"/fn/yolox-nano:v1", false)
	if err != nil {
		return Report{}, nil, err
	}
	if _, err := registry.Push(ctx, img, ref, nil); err != nil {
		return Report{}, nil, fmt.Errorf("pushing the function: %w", err)
	}
	dep, err := gw0.Deploy(ctx, api.DeployRequest{Ref: ref.String(), Stream: stream, Min: p.Min, Max: p.Max, Policy: "replay",
		Delivery: string(p.Mode)})
	if err != nil {
		return Report{}, nil, fmt.Errorf("deploying: %w", err)
	}
	depKey := dep.Function + "." + dep.Stream
	// A pulled camera whose source is not there: a camera record to keep, no frames.
	if _, err := gw0.AddCamera(ctx, api.CameraRequest{ID: "door-" + stream, Stream: stream, URL: "rtsp://127.0.0.1:9/none", FPS: 1}); err != nil {
		return Report{}, nil, fmt.Errorf("adding a camera: %w", err)
	}
	// A zone on it, so that the zones bucket has a record to keep; more are written
	// during the schedule.
	zones := &ZoneWriter{Stream: stream, Camera: "door-" + stream}
	if err := zones.Add(ctx, gw0, "before"); err != nil {
		return Report{}, nil, fmt.Errorf("adding a zone: %w", err)
	}
	if err := waitRunners(ctx, gw0, depKey, p.Min); err != nil {
		return Report{}, nil, err
	}
	logf("deployment %s has %d active runners after %.1fs", depKey, p.Min, time.Since(t0).Seconds())

	nc, err := nats.Connect(c.NATSURL(), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		return Report{}, nil, err
	}
	defer nc.Close()
	before, err := ReadControlPlane(ctx, nc)
	if err != nil {
		return Report{}, nil, fmt.Errorf("reading the control plane: %w", err)
	}

	checker := &Checker{Brokers: c.Brokers(), Topic: st.ResultsTopic, Isolation: isolation}
	var gws []string
	for j := range c.Gateways() {
		gws = append(gws, c.GatewayURL(j))
	}
	pusher := &Pusher{Stream: stream, Cameras: p.Cameras, FPS: p.FPS, Gateways: gws, Frame: p.Frame}

	checkCtx, stopCheck := context.WithCancel(ctx)
	pushCtx, stopPush := context.WithTimeout(ctx, p.Schedule.Length)
	defer stopPush()
	var wg, load sync.WaitGroup
	var checkErr error
	wg.Go(func() { checkErr = checker.Run(checkCtx) })
	load.Go(func() { _ = pusher.Run(pushCtx) })
	load.Go(func() { zones.Run(pushCtx, gws) }) // the control plane is written during the faults too
	events, schedErr := p.Schedule.Run(ctx, Target{Cluster: c, FrameTopic: st.Topic, Deployment: depKey})
	<-pushCtx.Done()
	stopPush()
	load.Wait() // every push and write answered or given up: their records are final
	for _, e := range events {
		logf("%s", e)
	}
	logf("pushers stopped: %d frames acknowledged, %d zones written; waiting for their results", pusher.Acked(), len(zones.Written()))
	pushes := pusher.Pushes()
	deadline := time.Now().Add(p.Drain)
	for checker.Missing(pushes) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		sleepUntil(ctx, time.Now().Add(500*time.Millisecond))
	}
	// A restarted NATS server may still be catching up: give the control plane up to 30 s
	// to be whole again before calling it broken.
	var cpErr error
	for range 60 {
		var after ControlPlane
		if after, cpErr = ReadControlPlane(ctx, nc); cpErr != nil {
			cpErr = fmt.Errorf("reading it after the schedule: %w", cpErr)
		} else {
			cpErr = errors.Join(before.Compare(after, 3), zones.Check(after))
		}
		if cpErr == nil {
			break
		}
		sleepUntil(ctx, time.Now().Add(500*time.Millisecond))
	}
	stopCheck()
	wg.Wait()
	r := checker.Report(string(p.Mode), pushes)
	r.ControlPlane = cpErr
	r.Missed = r.Misses(p.Mode, p.Targets)
	return r, events, errors.Join(schedErr, checkErr)
}

// waitRunners waits (up to 3 minutes: the first activation pulls and loads the model)
// until deployment has n active runners.
func waitRunners(ctx context.Context, api *client.Client, deployment string, n int) error {
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		res, err := api.Resources(ctx)
		if err == nil {
			active := 0
			for _, r := range res.Runners {
				if r.Deployment == deployment && r.State == "active" {
					active++
				}
			}
			if active >= n {
				return nil
			}
			last = fmt.Sprintf("%d of %d runners active; runners %+v; deployments %+v", active, n, res.Runners, res.Deployments)
		} else {
			last = err.Error()
		}
		sleepUntil(ctx, time.Now().Add(500*time.Millisecond))
	}
	return fmt.Errorf("faults: deployment %s never had %d active runners: %s", deployment, n, last)
}
