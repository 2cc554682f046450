package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/bench"
	"github.com/diplip/diplip/node"

	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

const (
	demoStream = "demo"
	demoCamera = "vtest"
	demoFPS    = 10
)

// runDemo is the paper's scenario on the sample video: a stream, the YOLOX-Nano function
// built and pushed to the embedded registry, deployed with min 0 (so the first frame wakes
// a runner), and a camera pushing the video at 10 fps. It prints one status line a second
// until ctx ends.
func runDemo(ctx context.Context, w io.Writer, n *node.Node, token string) error {
	cl, err := apiclient.New(n.URL(), token)
	if err != nil {
		return err
	}
	if _, err := cl.CreateStream(ctx, api.StreamRequest{Name: demoStream, Partitions: 2}); err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("demo: creating stream: %w", err)
	}
	dir, err := assets.Example("yolox-nano")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	img, spec, err := registry.Build(dir, checkWithONNXRuntime)
	if err != nil {
		return fmt.Errorf("demo: building the function: %w", err)
	}
	ref, err := registry.ParseReference(n.Addr()+"/fn/"+spec.Name+":demo", false)
	if err != nil {
		return err
	}
	var opts []remote.Option
	if token != "" {
		opts = append(opts, registry.WithToken(token))
	}
	pinned, err := registry.Push(ctx, img, ref, nil, opts...)
	if err != nil {
		return fmt.Errorf("demo: pushing the function: %w", err)
	}
	d, err := cl.Deploy(ctx, api.DeployRequest{Ref: ref.String(), Stream: demoStream, Min: 0, Max: 1, MaxAge: "3s"})
	if err != nil {
		return fmt.Errorf("demo: deploying: %w", err)
	}
	fmt.Fprintf(w, "demo: stream %q, function %s\n      (%s) deployed with min 0, max 1\n", demoStream, spec.Name, pinned.DigestStr()[:19])

	st := &demoStats{started: time.Now()} // the camera starts below: its first frame starts the cold start
	nc, err := n.ConnectNATS("diplip-demo")
	if err != nil {
		return err
	}
	defer nc.Close()
	sub, err := nc.Subscribe(wire.ResultSubject(demoStream, "*"), func(m *nats.Msg) {
		var r wire.Result
		if json.Unmarshal(m.Data, &r) == nil {
			st.result(r)
		}
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()

	video, err := assets.Media("vtest_h264.mp4")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	_, err = cl.AddCamera(ctx, api.CameraRequest{ID: demoCamera, Stream: demoStream, URL: video, FPS: demoFPS, Loop: true})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("demo: adding the camera: %w", err)
	}
	fmt.Fprintf(w, "demo: camera %q plays the sample video in a loop at %d fps (diplip camera ls)\n", demoCamera, demoFPS)
	fmt.Fprintf(w, "demo: watch it at %s/ (live view), or: diplip results %s --follow --gateway %s\n\n", n.URL(), demoStream, n.URL())

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			inFPS := 0.0
			if cams, err := cl.Cameras(ctx); err == nil {
				for _, c := range cams {
					if c.ID == demoCamera {
						inFPS = c.Health.FPS
					}
				}
			}
			fmt.Fprintln(w, st.line(cl, ctx, d, inFPS))
		}
	}
}

// demoStats keeps the last seconds of the demo for its status line.
type demoStats struct {
	mu        sync.Mutex
	out       int       // results in the current second
	latencies []float64 // end-to-end ms, last 10 s
	at        []time.Time
	latest    wire.Result
	coldStart time.Duration // first frame to first result, once known
	started   time.Time     // when the camera started
}

func (s *demoStats) result(r wire.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.coldStart == 0 {
		s.coldStart = now.Sub(s.started)
	}
	s.out++
	if r.Status == wire.StatusOK {
		s.latencies = append(s.latencies, r.Timings.EndToEnd)
		s.at = append(s.at, now)
		s.latest = r
	}
}

func (s *demoStats) line(cl *apiclient.Client, ctx context.Context, d api.Deployment, inFPS float64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := time.Now().Add(-10 * time.Second)
	i := 0
	for i < len(s.at) && s.at[i].Before(cut) {
		i++
	}
	s.at, s.latencies = s.at[i:], s.latencies[i:]
	p50, p99 := 0.0, 0.0 // until the first result
	if len(s.latencies) > 0 {
		p50, p99 = bench.Percentile(s.latencies, 0.5), bench.Percentile(s.latencies, 0.99)
	}
	runners, lag := 0, int64(0)
	res, _ := cl.Resources(ctx)
	for _, ds := range res.Deployments {
		if ds.Key == d.Key() {
			runners, lag = len(ds.Runners), ds.Lag
		}
	}
	what := "waiting for the first result (a runner is starting)"
	if s.latest.ID != "" {
		what = wire.Summarize(s.latest.Detections)
	}
	line := fmt.Sprintf("in %4.1f fps  out %2d fps  e2e p50 %5.0f ms  p99 %5.0f ms  runners %d  lag %3d  latest: %s",
		inFPS, s.out, p50, p99, runners, lag, what)
	if s.coldStart > 0 {
		line += fmt.Sprintf("  [cold start %.1fs]", s.coldStart.Seconds())
		s.coldStart = -1 // print once
	}
	s.out = 0
	return line
}
