package gateway

import (
	"fmt"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/ingest"
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

func apiCameraHealth(h ingest.CameraHealth) api.CameraHealth {
	return api.CameraHealth{Connected: h.Connected, FPS: h.FPS, Frames: h.Frames, Dropped: h.Dropped,
		Reconnects: h.Reconnects, LastFrame: h.LastFrame, LastError: h.LastError, Ended: h.Ended}
}

func apiDeploymentStatus(s scaler.DeploymentStatus) api.DeploymentStatus {
	return api.DeploymentStatus{Key: s.Key, Lag: s.Lag, Runners: s.Runners, Desired: s.Desired, RateFPS: s.RateFPS,
		ColdStarts: s.ColdStarts, LastCold: s.LastCold, LastError: s.LastError, Unhealthy: s.Unhealthy, Updated: s.Updated}
}
