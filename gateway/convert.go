package gateway

import (
	"fmt"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/scaler"
)

// The API answers with its own types (package api); these convert the stored records.

func apiStream(st wire.Stream) api.Stream {
	return api.Stream{Name: st.Name, Topic: st.Topic, ResultsTopic: st.ResultsTopic, Partitions: st.Partitions,
		Replication: st.Replication, RetentionMs: st.RetentionMs, RetentionBytes: st.RetentionBytes, Created: st.Created}
}

func apiFunction(f wire.Function) api.Function {
	return api.Function{Name: f.Name, Ref: f.Ref, Digest: f.Digest, Spec: f.Spec, Size: f.Size, Created: f.Created}
}

func apiDeployment(d wire.Deployment) api.Deployment {
	out := api.Deployment{Function: d.Function, Stream: d.Stream, Digest: d.Digest, Min: d.Min, Max: d.Max,
		Batch: d.Batch, Lanes: d.Lanes, Track: d.Track != nil, Device: string(d.Device), Policy: string(d.Policy), Updated: d.Updated, Generation: d.Generation}
	out.Delivery = string(wire.AtLeastOnce)
	if d.Delivery != "" {
		out.Delivery = string(d.Delivery)
	}
	if d.MaxAge > 0 {
		out.MaxAge = time.Duration(d.MaxAge).String()
	}
	out.Role = string(d.Role)
	if d.Role == wire.RolePrimary {
		out.Role = "primary"
	}
	out.Replay = d.ReplayName()
	return out
}

// apiReplay converts a replay deployment; processed is how many of its frames its group
// has committed (-1: unknown).
func apiReplay(d wire.Deployment, st wire.Stream, processed int64) api.Replay {
	r := api.Replay{Name: d.ReplayName(), Stream: d.Stream, Function: d.Function, Digest: d.Digest,
		ResultsTopic: d.ResultsTopic(st), Group: d.Group(), Cameras: d.Cameras, Max: d.Max, Processed: processed,
		State: api.ReplayRunning}
	if info := d.Replay; info != nil {
		r.From, r.To, r.Total, r.Created, r.Finished = info.From, info.To, info.Total, info.Created, info.Finished
		if info.Done {
			r.State, r.Processed = api.ReplayDone, info.Total
		}
	}
	return r
}

func apiDiffClass(c compare.ClassStats) api.DiffClass {
	label := c.Label
	switch {
	case c.Class < 0:
		label = "all"
	case label == "":
		label = fmt.Sprintf("class %d", c.Class)
	}
	return api.DiffClass{ClassID: c.Class, Label: label, Primary: c.Primary, Candidate: c.Candidate, Matched: c.Matched,
		Precision: c.Precision, Recall: c.Recall, F1: c.F1, MeanIoU: c.MeanIoU, CountDelta: c.CountDelta}
}

func apiCamera(c wire.Camera) api.Camera {
	return api.Camera{ID: c.ID, Stream: c.Stream, URL: c.URL, FPS: c.FPS, Loop: c.Loop, Created: c.Created}
}

func apiDeploymentStatus(s scaler.DeploymentStatus) api.DeploymentStatus {
	return api.DeploymentStatus{Key: s.Key, Lag: s.Lag, Runners: s.Runners, Desired: s.Desired, RateFPS: s.RateFPS,
		ColdStarts: s.ColdStarts, LastCold: s.LastCold, LastError: s.LastError, Unhealthy: s.Unhealthy, Updated: s.Updated}
}

func apiRunner(hb wire.Heartbeat) api.Runner {
	devices := make([]string, len(hb.Devices))
	for i, d := range hb.Devices {
		devices[i] = string(d)
	}
	gpus := make([]api.GPU, len(hb.GPUs))
	for i, g := range hb.GPUs {
		gpus[i] = api.GPU(g)
	}
	return api.Runner{ID: hb.ID, Host: hb.Host, PID: hb.PID, CPUs: hb.CPUs, MemoryMB: hb.MemoryMB,
		Devices: devices, Providers: hb.Providers, GPUs: gpus, State: string(hb.State),
		Deployment: hb.Deployment, Digest: hb.Digest, Generation: hb.Generation, Partitions: hb.Partitions,
		Frames: hb.Frames, RateFPS: hb.RateFPS, Lanes: hb.Lanes, BatchMode: hb.BatchMode,
		MetricsURL: hb.MetricsURL, Unhealthy: hb.Unhealthy, LastError: hb.LastError, Sent: hb.Sent}
}
