package scaler

import (
	"slices"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/wire"
)

// A replay scales on what is left of its window; once done it goes to zero runners,
// whatever its min, and is never activated again.
func TestDecideReplay(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cpu := []wire.Device{wire.DeviceCPU}
	replay := func(done bool) wire.Deployment {
		return wire.Deployment{Function: "fn", Stream: "s", Digest: "r@sha256:v2", Min: 1, Max: 2, Device: wire.DeviceAny,
			Role: wire.RoleReplay, Replay: &wire.ReplayInfo{Name: "r1", Done: done}, StopAt: map[int32]int64{0: 10, 1: 10}}
	}
	key := replay(false).Key()
	idle := Runner{ID: "i", State: wire.StateIdle, Devices: cpu}
	active := func(id string) Runner {
		return Runner{ID: id, State: wire.StateActive, Deployment: key, Digest: "r@sha256:v2", RateFPS: 5, Devices: cpu}
	}
	for _, tc := range []struct {
		name       string
		d          wire.Deployment
		lag        map[int32]int64
		runners    []Runner
		desired    int
		activate   []string
		deactivate []string
	}{
		{"a running replay with work left gets a runner", replay(false), map[int32]int64{0: 4, 1: 0}, []Runner{idle}, 1, []string{"i"}, nil},
		{"a done replay goes below its min", replay(true), map[int32]int64{0: 0, 1: 0}, []Runner{active("a"), idle}, 0, nil, []string{"a"}},
		{"a done replay is not woken by frames after its window", replay(true), map[int32]int64{0: 50, 1: 50}, []Runner{idle}, 0, nil, nil},
		{"a done replay with no runners stays at zero", replay(true), nil, []Runner{idle}, 0, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec := Decide(Observation{Now: t0, Deployment: tc.d, Partitions: 2, Lag: tc.lag, Runners: tc.runners,
				IdleTimeout: 30 * time.Second, CanLaunch: true})
			if dec.Desired != tc.desired || !slices.Equal(dec.Activate, tc.activate) || !slices.Equal(dec.Deactivate, tc.deactivate) || dec.Launch {
				t.Fatalf("decision %+v; want desired %d, activate %v, deactivate %v", dec, tc.desired, tc.activate, tc.deactivate)
			}
		})
	}
}

func TestReplayRemaining(t *testing.T) {
	for _, tc := range []struct {
		name       string
		next, stop map[int32]int64
		want       map[int32]int64
	}{
		{"before the window's end", map[int32]int64{0: 3, 1: 8}, map[int32]int64{0: 10, 1: 10}, map[int32]int64{0: 7, 1: 2}},
		{"past the end is zero, not negative", map[int32]int64{0: 12, 1: 10}, map[int32]int64{0: 10, 1: 10}, map[int32]int64{0: 0, 1: 0}},
		{"an empty window", map[int32]int64{0: 4}, map[int32]int64{0: 4}, map[int32]int64{0: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ReplayRemaining(tc.next, tc.stop)
			for p, w := range tc.want {
				if got[p] != w {
					t.Fatalf("remaining %v, want %v", got, tc.want)
				}
			}
		})
	}
}
