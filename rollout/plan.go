package rollout

import (
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/wire"
)

// DefaultMaxAge is a live deployment's max age when it names none: frames older than this
// when their batch starts get a "skipped" result, so latency stays bounded under overload.
const DefaultMaxAge = 5 * time.Second

// Request is what a deployment asks for: a deploy or a shadow as given, a replay as
// StartReplay makes it from a ReplayRequest. Zero fields take the function spec's values
// or the platform's defaults (see Plan).
type Request struct {
	// Ref is the function image; its tag is resolved to a digest. Insecure allows plain
	// HTTP to a registry that is not on loopback.
	Ref      string
	Insecure bool
	Stream   string
	// Role is primary (empty), shadow or replay.
	Role wire.Role
	// Replay names a replay (Role replay only).
	Replay string
	// Min and Max bound the runners: Max defaults to max(1, Min).
	Min, Max int
	// Batch defaults to the spec's batch.max, Lanes to its resources.lanes (0: the
	// runner's own).
	Batch, Lanes int
	// Device defaults to the spec's resources.device, gpu meaning cuda:0.
	Device string
	// Policy is live (the default) or replay; a replay's is always replay.
	Policy string
	// MaxAge is a duration like "2s"; a live deployment's default is DefaultMaxAge.
	MaxAge string
	// Delivery is at-least-once (the default, stored as nothing) or exactly-once.
	Delivery string
	// From, an RFC 3339 time, starts a new deployment with the replay policy at the first
	// frame stored then. A replay's window is StartReplay's, not Plan's.
	From string
	// Track turns on the tracker stage with the default parameters; a spec with `track:`
	// tracks without it, with its own. A replay never tracks.
	Track bool
	// After makes the deployment a second stage on the results of the primary deployment
	// of function After on the stream: role after (the live one) for a primary, or the
	// shadow or replay of a second stage; Classes, MinSize (box height in pixels) and
	// MaxPerFrame select the detections it runs on (zero: all).
	After       string
	Classes     []string
	MinSize     int
	MaxPerFrame int
}

// Plan turns a request for function fn (whose spec is spec) into the deployment to store,
// every default filled: deploy, shadow and replay get their settings here and nowhere
// else. It reads nothing but its arguments, and leaves Updated and the replay window to
// its caller. from is where a new replay-policy deployment starts (zero: at the earliest
// retained frame). Each refusal is Invalid and names the field that is wrong.
func Plan(req Request, fn wire.Function, spec functions.Spec) (d wire.Deployment, from time.Time, err error) {
	d = wire.Deployment{
		Function: fn.Name, Stream: req.Stream, Digest: fn.Digest, Min: req.Min, Max: req.Max, Batch: req.Batch,
		Lanes: req.Lanes, Device: wire.Device(req.Device), Policy: wire.Policy(req.Policy), Role: req.Role,
		Quantized: fn.Quantized,
	}
	if d.Max == 0 {
		d.Max = max(1, d.Min)
	}
	if d.Batch == 0 {
		d.Batch = spec.Batch.Max
	}
	if d.Lanes == 0 {
		d.Lanes = spec.Resources.Lanes
	}
	if d.Role == wire.RoleReplay {
		d.Policy, d.Replay = wire.PolicyReplay, &wire.ReplayInfo{Name: req.Replay}
	}
	if req.After != "" {
		if spec.Output.Decoder == "raw" {
			return d, from, errorf(Invalid, "after: function %s's decoder is raw: its tensors mean nothing per crop (use a detector, classify or embed function)", fn.Name)
		}
		if d.Role == wire.RolePrimary { // the live second stage; a shadow or a replay of one keeps its role
			d.Role = wire.RoleAfter
		}
		d.After = &wire.AfterInfo{Function: req.After, Classes: req.Classes, MinSize: req.MinSize, MaxPerFrame: req.MaxPerFrame}
	} else if len(req.Classes) > 0 || req.MinSize != 0 || req.MaxPerFrame != 0 {
		return d, from, errorf(Invalid, "classes, min_size, max_per_frame: they select a first stage's detections; add after FUNCTION")
	}
	switch t := spec.Track; {
	case d.Role == wire.RoleReplay: // a window of the past, compared frame by frame: no tracks
	case d.SecondStage(): // the first stage's track ids are carried through
	case t != nil:
		d.Track = &wire.TrackParams{HighThresh: t.HighThresh, LowThresh: t.LowThresh, MatchIoU: t.MatchIoU,
			MaxLost: t.MaxLost, ClassAgnostic: t.ClassAgnostic, IdleTimeout: wire.Duration(t.IdleTimeout)}
	case req.Track:
		d.Track = &wire.TrackParams{}
	}
	if d.Policy == "" {
		d.Policy = wire.PolicyLive
	}
	if d.Delivery, err = wire.ParseDelivery(req.Delivery); err != nil {
		return d, from, errorf(Invalid, "%w", err)
	}
	if d.Delivery == wire.AtLeastOnce {
		d.Delivery = "" // the default is stored as nothing, as before the option existed
	}
	switch {
	case d.Device == "" && spec.Resources.Device == "gpu":
		d.Device = wire.CUDA(0)
	case d.Device == "":
		d.Device = wire.Device(spec.Resources.Device)
	case spec.Resources.Device == "cpu" && d.Device != "cpu" && d.Device != "any":
		return d, from, errorf(Invalid, "device %s: function %s declares resources.device: cpu", d.Device, fn.Name)
	case spec.Resources.Device == "gpu" && d.Device == "cpu":
		return d, from, errorf(Invalid, "device cpu: function %s declares resources.device: gpu", fn.Name)
	}
	if req.MaxAge != "" {
		v, err := time.ParseDuration(req.MaxAge)
		if err != nil {
			return d, from, errorf(Invalid, "max_age %q: want a duration like 2s", req.MaxAge)
		}
		d.MaxAge = wire.Duration(v)
	} else if d.Policy == wire.PolicyLive {
		d.MaxAge = wire.Duration(DefaultMaxAge)
	}
	if req.From != "" {
		if from, err = time.Parse(time.RFC3339, req.From); err != nil {
			return d, from, errorf(Invalid, "from %q: want an RFC 3339 time like 2026-11-26T10:00:00Z", req.From)
		}
		if d.Policy != wire.PolicyReplay {
			return d, from, errorf(Invalid, "from: only a replay deployment starts at a time (add policy replay)")
		}
	}
	if err := d.Validate(); err != nil {
		return d, from, errorf(Invalid, "%w", err)
	}
	return d, from, nil
}
