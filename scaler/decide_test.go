package scaler

import (
	"slices"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/wire"
)

func TestDecide(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	dep := wire.Deployment{Function: "fn", Stream: "s", Digest: "r@sha256:new", Min: 0, Max: 4, Device: wire.DeviceAny}
	key := dep.Key()
	cpu := []wire.Device{wire.DeviceCPU}
	idle := func(id string) Runner { return Runner{ID: id, State: wire.StateIdle, Devices: cpu} }
	active := func(id string, fps float64) Runner {
		return Runner{ID: id, State: wire.StateActive, Deployment: key, Digest: dep.Digest, RateFPS: fps, Devices: cpu}
	}
	loading := func(id string) Runner {
		return Runner{ID: id, State: wire.StateLoading, Deployment: key, Digest: dep.Digest, Devices: cpu}
	}
	lag := func(per ...int64) map[int32]int64 {
		m := map[int32]int64{}
		for i, l := range per {
			m[int32(i)] = l
		}
		return m
	}
	for _, tc := range []struct {
		name       string
		obs        Observation
		desired    int
		activate   []string
		deactivate []string
		launch     bool
	}{
		{
			name:    "scale from zero on the first frame",
			obs:     Observation{Lag: lag(1, 0, 0, 0), Runners: []Runner{idle("a"), idle("b")}, CanLaunch: true},
			desired: 1, activate: []string{"a"},
		},
		{
			name:    "from zero with no idle runner asks the driver",
			obs:     Observation{Lag: lag(3, 0, 0, 0), CanLaunch: true},
			desired: 1, launch: true,
		},
		{
			name:    "launch held back while backing off",
			obs:     Observation{Lag: lag(3, 0, 0, 0), CanLaunch: false},
			desired: 1,
		},
		{
			name: "burst with a loading runner reporting 0 fps does not jump to max",
			obs: Observation{Lag: lag(50, 50, 50, 50), Runners: []Runner{active("a", 20), loading("b"), idle("c"), idle("d")},
				CanLaunch: true},
			// 200 frames at 20 fps per runner: 5 runners to drain in 2 s, capped at max 4.
			desired: 4, activate: []string{"c", "d"},
		},
		{
			name: "rate averaged over active runners only",
			obs: Observation{Lag: lag(40, 40, 0, 0), Runners: []Runner{active("a", 20), loading("b"), idle("c")},
				CanLaunch: true},
			// 80 frames at 20 fps: 2 runners; two are already working.
			desired: 2,
		},
		{
			name: "replicas capped at partitions that have lag",
			obs: Observation{Lag: lag(500, 0, 0, 0), Runners: []Runner{active("a", 10), idle("b"), idle("c")},
				CanLaunch: true},
			desired: 1,
		},
		{
			name: "partitions cap max",
			obs: Observation{Partitions: 2, Lag: lag(500, 500), Runners: []Runner{active("a", 10), idle("b"), idle("c")},
				CanLaunch: true},
			desired: 2, activate: []string{"b"},
		},
		{
			name: "idle for the idle timeout goes to min",
			obs: Observation{Lag: lag(0, 0, 0, 0), Runners: []Runner{active("a", 0)},
				LastProgress: t0.Add(-31 * time.Second)},
			desired: 0, deactivate: []string{"a"},
		},
		{
			name:    "idle but not for long keeps its runner",
			obs:     Observation{Lag: lag(0, 0, 0, 0), Runners: []Runner{active("a", 0)}, LastProgress: t0.Add(-5 * time.Second)},
			desired: 1,
		},
		{
			name: "min holds runners even when idle",
			obs: Observation{Deployment: withMin(dep, 2), Lag: lag(0, 0, 0, 0), Runners: []Runner{idle("a"), idle("b")},
				LastProgress: t0.Add(-time.Hour)},
			desired: 2, activate: []string{"a", "b"},
		},
		{
			name: "scale down under load once one runner fewer keeps up for the idle timeout",
			obs: Observation{Lag: lag(1, 0, 1, 0), Runners: []Runner{active("a", 10), active("b", 10), active("c", 10)},
				Capacity: 40, OverSince: t0.Add(-31 * time.Second), LastProgress: t0},
			desired: 2, deactivate: []string{"c"},
		},
		{
			name: "no scale down while the over-capacity has not lasted",
			obs: Observation{Lag: lag(1, 0, 1, 0), Runners: []Runner{active("a", 10), active("b", 10), active("c", 10)},
				Capacity: 40, OverSince: t0.Add(-5 * time.Second), LastProgress: t0},
			desired: 3,
		},
		{
			name: "no scale down when the others could not keep up",
			obs: Observation{Lag: lag(1, 0, 1, 0), Runners: []Runner{active("a", 30), active("b", 30)},
				Capacity: 32, OverSince: t0.Add(-time.Hour), LastProgress: t0},
			desired: 2,
		},
		{
			name: "rolling update moves one runner at a time",
			obs: Observation{Lag: lag(0, 0, 0, 0), LastProgress: t0, Runners: []Runner{
				{ID: "a", State: wire.StateActive, Deployment: key, Digest: "r@sha256:old", RateFPS: 5, Devices: cpu},
				{ID: "b", State: wire.StateActive, Deployment: key, Digest: "r@sha256:old", RateFPS: 5, Devices: cpu}}},
			desired: 2, deactivate: []string{"a"},
		},
		{
			name: "rolling update waits for a loading runner",
			obs: Observation{Lag: lag(0, 0, 0, 0), LastProgress: t0, Runners: []Runner{
				loading("a"),
				{ID: "b", State: wire.StateActive, Deployment: key, Digest: "r@sha256:old", RateFPS: 5, Devices: cpu}}},
			desired: 2,
		},
		{
			name: "a cuda deployment does not take a cpu-only runner",
			obs: Observation{Deployment: withDevice(dep, wire.CUDA(0)), Lag: lag(5, 0, 0, 0), Runners: []Runner{idle("cpu-only"),
				{ID: "gpu", State: wire.StateIdle, Devices: []wire.Device{wire.DeviceCPU, wire.CUDA(0)}}}},
			desired: 1, activate: []string{"gpu"},
		},
		{
			name: "max bounds the drain target",
			obs: Observation{Deployment: withMax(dep, 2), Lag: lag(100, 100, 100, 100), Runners: []Runner{active("a", 1),
				idle("b"), idle("c")}},
			desired: 2, activate: []string{"b"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.obs
			o.Now = t0
			if o.Deployment.Function == "" {
				o.Deployment = dep
			}
			if o.Partitions == 0 {
				o.Partitions = 4
			}
			if o.IdleTimeout == 0 {
				o.IdleTimeout = 30 * time.Second
			}
			got := Decide(o)
			if got.Desired != tc.desired || !slices.Equal(got.Activate, tc.activate) ||
				!slices.Equal(got.Deactivate, tc.deactivate) || got.Launch != tc.launch {
				t.Fatalf("Decide = desired %d, activate %v, deactivate %v, launch %v (%s); want %d, %v, %v, %v",
					got.Desired, got.Activate, got.Deactivate, got.Launch, got.Reason, tc.desired, tc.activate, tc.deactivate, tc.launch)
			}
		})
	}
}

func TestDecideOverSinceStarts(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	dep := wire.Deployment{Function: "fn", Stream: "s", Digest: "d", Max: 4, Device: wire.DeviceAny}
	runners := []Runner{
		{ID: "a", State: wire.StateActive, Deployment: dep.Key(), Digest: "d", RateFPS: 5},
		{ID: "b", State: wire.StateActive, Deployment: dep.Key(), Digest: "d", RateFPS: 5},
	}
	got := Decide(Observation{Now: now, Deployment: dep, Partitions: 4, Lag: map[int32]int64{0: 1}, Runners: runners,
		Capacity: 40, LastProgress: now, IdleTimeout: time.Minute})
	if !got.OverSince.Equal(now) || got.Desired != 2 {
		t.Fatalf("first pass over capacity: OverSince %v desired %d, want %v and 2", got.OverSince, got.Desired, now)
	}
}

func TestOrphans(t *testing.T) {
	rs := []Runner{{ID: "x", State: wire.StateActive, Deployment: "gone.s"}, {ID: "y", State: wire.StateActive, Deployment: "fn.s"},
		{ID: "z", State: wire.StateIdle}}
	if got := Orphans(rs, map[string]bool{"fn.s": true}); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("Orphans = %v, want [x]", got)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 5 * time.Second, Max: 20 * time.Second}
	now := time.Unix(0, 0)
	for i, wait := range []time.Duration{5, 10, 20, 20} {
		if !b.Allowed(now) {
			t.Fatalf("launch %d not allowed", i)
		}
		b.Launched(now)
		if b.Allowed(now.Add(wait*time.Second - time.Millisecond)) {
			t.Fatalf("launch %d: allowed again before %ds", i, wait)
		}
		now = now.Add(wait * time.Second)
	}
	b.Reset()
	if !b.Allowed(now) {
		t.Fatal("after a runner registered, a launch must be allowed")
	}
}

func withMin(d wire.Deployment, n int) wire.Deployment            { d.Min = n; return d }
func withMax(d wire.Deployment, n int) wire.Deployment            { d.Max = n; return d }
func withDevice(d wire.Deployment, v wire.Device) wire.Deployment { d.Device = v; return d }

// A deployment whose activation failed permanently (no such GPU, a model that does not
// load) gets no runner activated or launched, so nothing loops trying.
func TestDecideFailedDeploymentStartsNothing(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	dep := wire.Deployment{Function: "fn", Stream: "s", Digest: "d", Max: 2, Device: wire.CUDA(7)}
	got := Decide(Observation{Now: now, Deployment: dep, Partitions: 2, Lag: map[int32]int64{0: 50},
		Runners:   []Runner{{ID: "a", State: wire.StateIdle, Devices: []wire.Device{wire.DeviceCPU, wire.CUDA(7)}}},
		CanLaunch: true, Failed: "device cuda:7 does not exist", IdleTimeout: time.Minute})
	if len(got.Activate) != 0 || got.Launch || got.Desired != 0 {
		t.Fatalf("Decide = %+v; want nothing started for a failed deployment", got)
	}
}

// Redeploying the same image with other settings (tracking, lanes, batch) is a rolling
// update too: a runner on the deployment's older generation goes back to idle, one at a
// time, to be activated with the new settings.
func TestDecideRollsOnANewGeneration(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	dep := wire.Deployment{Function: "fn", Stream: "s", Digest: "d", Max: 2, Device: wire.DeviceAny, Generation: 2}
	runners := []Runner{
		{ID: "a", State: wire.StateActive, Deployment: dep.Key(), Digest: "d", Generation: 1, RateFPS: 5},
		{ID: "b", State: wire.StateActive, Deployment: dep.Key(), Digest: "d", Generation: 2, RateFPS: 5},
	}
	got := Decide(Observation{Now: now, Deployment: dep, Partitions: 2, Lag: map[int32]int64{0: 0}, Runners: runners,
		LastProgress: now, IdleTimeout: time.Minute})
	if !slices.Equal(got.Deactivate, []string{"a"}) {
		t.Fatalf("Decide = %+v; want runner a (generation 1) sent back to idle", got)
	}
}
