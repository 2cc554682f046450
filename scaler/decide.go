package scaler

import (
	"math"
	"slices"
	"time"

	"github.com/diplip/diplip/internal/wire"
)

// Runner is what a decision needs to know of one runner, from its heartbeats.
type Runner struct {
	ID         string
	State      wire.State
	Deployment string // the deployment key it works (loading or active)
	Digest     string
	Generation int     // of the deployment it works; 0: not known
	RateFPS    float64 // frames per second over its last heartbeat interval
	Devices    []wire.Device
}

// Observation is everything Decide looks at for one deployment, measured by the loop.
type Observation struct {
	Now        time.Time
	Deployment wire.Deployment
	// Partitions of the deployment's stream.
	Partitions int32
	// Lag of the deployment's consumer group, per partition.
	Lag map[int32]int64
	// Runners heard from recently, all of them (Decide picks the ones it may use).
	Runners []Runner
	// LastProgress is the last time the deployment had lag or moved frames; zero: never.
	LastProgress time.Time
	// Capacity is one runner's measured frames per second while it had a backlog (so it
	// was not waiting for frames); 0 while unknown.
	Capacity float64
	// OverSince is when capacity started to exceed need by more than a runner; zero when
	// it does not. Decide returns the new value.
	OverSince time.Time
	// IdleTimeout: no lag and no progress for this long scales to Min; capacity above need
	// for this long removes a runner.
	IdleTimeout time.Duration
	// CanLaunch says whether the driver may be asked for another runner now (the loop backs
	// off launches that did not bring a runner).
	CanLaunch bool
	// Failed is why activating this deployment failed in a way a retry would repeat (the
	// device does not exist, the model does not load); no runner is activated for it or
	// launched until it is deployed again. Empty: not failed.
	Failed string
}

// Decision is what to do for one deployment.
type Decision struct {
	Desired    int
	Activate   []string // idle runners to activate for it
	Deactivate []string // its runners to send back to idle
	Launch     bool     // ask the driver for one more runner
	OverSince  time.Time
	Reason     string
}

// DrainTarget is how fast a backlog should be worked off: enough runners to drain the lag
// in this long at the measured rate.
const DrainTarget = 2 * time.Second

// Decide is the scaling policy, a pure function of what was measured:
//
//   - from zero: the first frame of lag asks for one runner;
//   - up: enough runners to drain the lag in DrainTarget at the rate active runners
//     report (loading runners report 0 fps and are not averaged in), never more than the
//     partitions that have lag (a runner without a lagging partition has nothing to do);
//   - down under load: when the measured capacity of one runner fewer still covers the
//     rate with 20% to spare and the lag is under a second of work, for IdleTimeout;
//   - idle: no lag and no progress for IdleTimeout goes to Min;
//   - always within [Min, min(Max, partitions)];
//   - a rolling update (runners on an older digest) sends one runner back to idle at a
//     time, and only while none of the deployment's runners is loading;
//   - a finished replay (wire.Deployment.Finished) goes to zero runners, whatever its Min,
//     and is never given one again.
func Decide(o Observation) Decision {
	d := o.Deployment
	key := d.Key()
	var working, active, stale []string
	var loading bool
	var rate float64
	var rated int
	for _, r := range o.Runners {
		if r.Deployment != key || (r.State != wire.StateActive && r.State != wire.StateLoading) {
			continue
		}
		working = append(working, r.ID)
		if r.State == wire.StateLoading {
			loading = true
			continue
		}
		active = append(active, r.ID)
		if r.Digest != d.Digest || (r.Generation != 0 && r.Generation != d.Generation) {
			stale = append(stale, r.ID) // an older image, or older settings
		}
		if r.RateFPS > 0 {
			rate += r.RateFPS
			rated++
		}
	}
	slices.Sort(working)
	slices.Sort(active)
	slices.Sort(stale)

	var lag int64
	var lagging int
	for _, l := range o.Lag {
		lag += l
		if l > 0 {
			lagging++
		}
	}
	n := len(working)
	limit := min(d.Max, int(o.Partitions))
	out := Decision{Desired: n}
	perRunner := o.Capacity
	if perRunner <= 0 && rated > 0 {
		perRunner = rate / float64(rated)
	}

	switch {
	case lag > 0 && n == 0:
		out.Desired, out.Reason = 1, "scale from zero: frames are waiting"
	case lag > 0 && perRunner > 0:
		need := int(math.Ceil(float64(lag) / (perRunner * DrainTarget.Seconds())))
		if need > n {
			out.Desired = min(need, max(lagging, n))
			out.Reason = "backlog: more runners to drain it"
		}
	case lag == 0 && n > d.Min && (o.LastProgress.IsZero() || o.Now.Sub(o.LastProgress) > o.IdleTimeout):
		out.Desired, out.Reason = d.Min, "idle: no frames for the idle timeout"
	}

	// Scale down under steady load: one runner fewer would still keep up.
	over := n > max(d.Min, 1) && o.Capacity > 0 && rate <= 0.8*o.Capacity*float64(n-1) &&
		float64(lag) <= o.Capacity && out.Desired == n
	switch {
	case !over:
		out.OverSince = time.Time{}
	case o.OverSince.IsZero():
		out.OverSince = o.Now
	default:
		out.OverSince = o.OverSince
		if o.Now.Sub(o.OverSince) >= o.IdleTimeout {
			out.Desired, out.Reason = n-1, "capacity exceeds need: one runner fewer keeps up"
			out.OverSince = time.Time{}
		}
	}
	out.Desired = min(max(out.Desired, d.Min), limit)
	if o.Failed != "" { // keep what runs, start nothing: a retry would fail the same way
		out.Desired, out.Reason = min(out.Desired, n), ""
	}
	if d.Finished() {
		out.Desired, out.OverSince = 0, time.Time{}
		if n > 0 {
			out.Reason = "replay done: its window is processed"
		}
	}

	switch {
	case out.Desired > n:
		want := out.Desired - n
		for _, r := range idleFitting(o.Runners, d.Device) {
			if want == 0 {
				break
			}
			out.Activate = append(out.Activate, r)
			want--
		}
		out.Launch = want > 0 && o.CanLaunch
	case out.Desired < n && len(active) > 0:
		// Stale runners go first; then the last by id, so the choice is stable.
		victim := active[len(active)-1]
		if len(stale) > 0 {
			victim = stale[0]
		}
		out.Deactivate = append(out.Deactivate, victim)
	case len(stale) > 0 && !loading:
		out.Deactivate = append(out.Deactivate, stale[0])
		out.Reason = "rolling update: one runner at a time to the new digest"
	}
	return out
}

// idleFitting lists idle runners that have a device the deployment can use, by id.
func idleFitting(runners []Runner, want wire.Device) []string {
	var ids []string
	for _, r := range runners {
		if r.State == wire.StateIdle && slices.ContainsFunc(r.Devices, want.Fits) {
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// Orphans lists active or loading runners whose deployment no longer exists.
func Orphans(runners []Runner, deployments map[string]bool) []string {
	var ids []string
	for _, r := range runners {
		if (r.State == wire.StateActive || r.State == wire.StateLoading) && !deployments[r.Deployment] {
			ids = append(ids, r.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// Backoff is the launch back-off: a launch that brought no new runner doubles the wait
// before the next one (from Min up to Max); a runner registering resets it.
type Backoff struct {
	Min, Max time.Duration
	last     time.Time
	wait     time.Duration
}

// Allowed reports whether a launch may happen at now.
func (b *Backoff) Allowed(now time.Time) bool {
	return b.last.IsZero() || now.Sub(b.last) >= b.wait
}

// Launched records a launch at now: the next waits twice as long unless Reset.
func (b *Backoff) Launched(now time.Time) {
	switch {
	case b.wait == 0:
		b.wait = b.Min
	default:
		b.wait = min(2*b.wait, b.Max)
	}
	b.last = now
}

// Reset is called when a new runner registered: launching works.
func (b *Backoff) Reset() { b.wait = 0 }
