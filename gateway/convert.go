package gateway

import (
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// The API answers with its own types (package api); these convert the stored records.

func apiStream(st wire.Stream) api.Stream {
	return api.Stream{Name: st.Name, Topic: st.Topic, ResultsTopic: st.ResultsTopic, Partitions: st.Partitions,
		Replication: st.Replication, RetentionMs: st.RetentionMs, RetentionBytes: st.RetentionBytes, Created: st.Created}
}

func apiFunction(f wire.Function) api.Function {
	return api.Function{Name: f.Name, Ref: f.Ref, Digest: f.Digest, Spec: f.Spec, Size: f.Size, Created: f.Created, Quantized: f.Quantized}
}

func apiDeployment(d wire.Deployment) api.Deployment {
	out := api.Deployment{Function: d.Function, Stream: d.Stream, Digest: d.Digest, Min: d.Min, Max: d.Max,
		Batch: d.Batch, Lanes: d.Lanes, Track: d.Track != nil, Device: string(d.Device), Policy: string(d.Policy), Updated: d.Updated, Generation: d.Generation,
		Quantized: d.Quantized}
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
	if out.Replay = d.ReplayName(); d.After != nil {
		out.After, out.Classes, out.MinSize, out.MaxPerFrame, out.ResultsTopic = d.After.Function, d.After.Classes, d.After.MinSize, d.After.MaxPerFrame, d.ResultsTopic(wire.Stream{})
	}
	return out
}

// apiReplay converts a replay deployment; processed is how many of its frames its group
// has committed.
func apiReplay(d wire.Deployment, processed int64) api.Replay {
	r := api.Replay{Name: d.ReplayName(), Stream: d.Stream, Function: d.Function, After: d.AfterName(), Digest: d.Digest,
		ResultsTopic: d.ResultsTopic(wire.Stream{Name: d.Stream}), Group: d.Group(), Cameras: d.Cameras, Max: d.Max,
		Processed: processed, State: api.ReplayRunning}
	if info := d.Replay; info != nil {
		r.From, r.To, r.Total, r.Created, r.Finished = info.From, info.To, info.Total, info.Created, info.Finished
		if info.Done {
			r.State, r.Processed = api.ReplayDone, info.Total
		}
	}
	return r
}

func apiDiff(d rollout.Diff) api.Diff {
	side := func(s rollout.DiffSide, lat compare.Latency) api.DiffSide {
		return api.DiffSide{Kind: s.Kind, Name: s.Name, Function: s.Function, Digests: s.Digests, Topic: s.Topic,
			Results: s.Results, LatencyP50Ms: lat.P50, LatencyP99Ms: lat.P99}
	}
	rep := d.Report
	out := api.Diff{Stream: d.Stream, IoU: d.IoU, Frames: rep.Frames, OnlyPrimary: rep.OnlyPrimary, OnlyCandidate: rep.OnlyCandidate,
		Primary: side(d.Primary, rep.Primary), Candidate: side(d.Candidate, rep.Candidate),
		Classes: []api.DiffClass{}, Overall: apiDiffClass(rep.Overall)}
	for _, c := range rep.Classes {
		out.Classes = append(out.Classes, apiDiffClass(c))
	}
	return out
}

func apiDiffClass(c compare.ClassStats) api.DiffClass {
	return api.DiffClass{ClassID: c.Class, Label: c.Label, Primary: c.Primary, Candidate: c.Candidate, Matched: c.Matched,
		Precision: c.Precision, Recall: c.Recall, F1: c.F1, MeanIoU: c.MeanIoU, CountDelta: c.CountDelta}
}

func apiCamera(c wire.Camera) api.Camera {
	return api.Camera{ID: c.ID, Stream: c.Stream, URL: c.URL, FPS: c.FPS, Loop: c.Loop, Created: c.Created}
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
