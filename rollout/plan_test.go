package rollout_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// Plan fills every default from the spec or the platform, the same way for deploy, shadow
// and replay, and refuses a bad value with an Invalid error that names it.
func TestPlan(t *testing.T) {
	fn := wire.Function{Name: "det", Digest: "127.0.0.1:5000/fn/det@sha256:0123"}
	spec := func(edit func(*functions.Spec)) functions.Spec {
		s := functions.Spec{Name: "det", Batch: functions.Batch{Max: 8}, Resources: functions.Resources{Device: "any", Lanes: 2}}
		if edit != nil {
			edit(&s)
		}
		return s
	}
	gpu := func(s *functions.Spec) { s.Resources.Device = "gpu" }
	cpu := func(s *functions.Spec) { s.Resources.Device = "cpu" }
	tracks := func(s *functions.Spec) {
		s.Track = &functions.Track{HighThresh: 0.6, MaxLost: 30, IdleTimeout: functions.Duration(time.Minute)}
	}
	// want is the deployment of a request for "lobby" with every default.
	want := func(edit func(*wire.Deployment)) wire.Deployment {
		d := wire.Deployment{Function: "det", Stream: "lobby", Digest: fn.Digest, Max: 1, Batch: 8, Lanes: 2, Device: "any",
			Policy: wire.PolicyLive, MaxAge: wire.Duration(rollout.DefaultMaxAge)}
		if edit != nil {
			edit(&d)
		}
		return d
	}
	for _, tc := range []struct {
		name     string
		req      rollout.Request
		spec     functions.Spec
		want     wire.Deployment
		wantFrom time.Time
	}{
		{"every default", rollout.Request{}, spec(nil), want(nil), time.Time{}},
		{"max follows min", rollout.Request{Min: 3}, spec(nil), want(func(d *wire.Deployment) { d.Min, d.Max = 3, 3 }), time.Time{}},
		{"the request over the spec", rollout.Request{Max: 4, Batch: 2, Lanes: 1, Device: "cpu", MaxAge: "2s"}, spec(nil),
			want(func(d *wire.Deployment) {
				d.Max, d.Batch, d.Lanes, d.Device, d.MaxAge = 4, 2, 1, "cpu", wire.Duration(2*time.Second)
			}), time.Time{}},
		{"a gpu function runs on the first GPU", rollout.Request{}, spec(gpu), want(func(d *wire.Deployment) { d.Device = wire.CUDA(0) }), time.Time{}},
		{"a cpu function on any device", rollout.Request{Device: "any"}, spec(cpu), want(nil), time.Time{}},
		{"the spec's tracker", rollout.Request{}, spec(tracks), want(func(d *wire.Deployment) {
			d.Track = &wire.TrackParams{HighThresh: 0.6, MaxLost: 30, IdleTimeout: wire.Duration(time.Minute)}
		}), time.Time{}},
		{"track without a spec tracker", rollout.Request{Track: true}, spec(nil), want(func(d *wire.Deployment) { d.Track = &wire.TrackParams{} }), time.Time{}},
		{"exactly-once", rollout.Request{Delivery: "exactly-once"}, spec(nil), want(func(d *wire.Deployment) { d.Delivery = wire.ExactlyOnce }), time.Time{}},
		{"at-least-once is stored as nothing", rollout.Request{Delivery: "at-least-once"}, spec(nil), want(nil), time.Time{}},
		{"replay policy: no max age, from a time", rollout.Request{Policy: "replay", From: "2026-11-26T10:00:00Z"}, spec(nil),
			want(func(d *wire.Deployment) { d.Policy, d.MaxAge = wire.PolicyReplay, 0 }), time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)},
		{"a shadow", rollout.Request{Role: wire.RoleShadow}, spec(nil), want(func(d *wire.Deployment) { d.Role = wire.RoleShadow }), time.Time{}},
		{"a replay: replay policy, no tracker", rollout.Request{Role: wire.RoleReplay, Replay: "first", Track: true}, spec(tracks),
			want(func(d *wire.Deployment) {
				d.Role, d.Policy, d.MaxAge, d.Replay = wire.RoleReplay, wire.PolicyReplay, 0, &wire.ReplayInfo{Name: "first"}
			}), time.Time{}},
		{"a second stage: its selection, no tracker of its own", rollout.Request{After: "yolox", Classes: []string{"person"}, MinSize: 60, MaxPerFrame: 4, Track: true},
			spec(tracks), want(func(d *wire.Deployment) {
				d.Role, d.After = wire.RoleAfter, &wire.AfterInfo{Function: "yolox", Classes: []string{"person"}, MinSize: 60, MaxPerFrame: 4}
			}), time.Time{}},
		{"a second stage's shadow: a shadow with its selection", rollout.Request{After: "yolox", Role: wire.RoleShadow, Classes: []string{"person"}, Track: true},
			spec(tracks), want(func(d *wire.Deployment) {
				d.Role, d.After = wire.RoleShadow, &wire.AfterInfo{Function: "yolox", Classes: []string{"person"}}
			}), time.Time{}},
		{"a second stage's replay: a replay with its selection", rollout.Request{After: "yolox", Role: wire.RoleReplay, Replay: "r1", MinSize: 60},
			spec(nil), want(func(d *wire.Deployment) {
				d.Role, d.Policy, d.MaxAge, d.Replay = wire.RoleReplay, wire.PolicyReplay, 0, &wire.ReplayInfo{Name: "r1"}
				d.After = &wire.AfterInfo{Function: "yolox", MinSize: 60}
			}), time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Stream = "lobby"
			d, from, err := rollout.Plan(tc.req, fn, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d, tc.want) || !from.Equal(tc.wantFrom) {
				t.Fatalf("Plan:\n got %+v from %v\nwant %+v from %v", d, from, tc.want, tc.wantFrom)
			}
		})
	}

	for _, tc := range []struct {
		name string
		req  rollout.Request
		spec functions.Spec
		want string
	}{
		{"an unknown device", rollout.Request{Device: "tpu"}, spec(nil), `device "tpu"`},
		{"a GPU for a cpu function", rollout.Request{Device: "cuda:0"}, spec(cpu), "device cuda:0: function det declares resources.device: cpu"},
		{"the CPU for a gpu function", rollout.Request{Device: "cpu"}, spec(gpu), "device cpu: function det declares resources.device: gpu"},
		{"min over max", rollout.Request{Min: 3, Max: 2}, spec(nil), "min 3, max 2"},
		{"too many runners", rollout.Request{Max: 65}, spec(nil), "max 65"},
		{"a batch the spec does not fill", rollout.Request{}, spec(func(s *functions.Spec) { s.Batch.Max = 0 }), "batch 0: want 1..256"},
		{"too many lanes", rollout.Request{Lanes: 65}, spec(nil), "lanes 65"},
		{"an unknown policy", rollout.Request{Policy: "whenever"}, spec(nil), `policy "whenever"`},
		{"a max age that is no duration", rollout.Request{MaxAge: "soon"}, spec(nil), `max_age "soon": want a duration like 2s`},
		{"a negative max age", rollout.Request{MaxAge: "-1s"}, spec(nil), "max_age must not be negative"},
		{"an unknown delivery", rollout.Request{Delivery: "twice"}, spec(nil), `delivery "twice": want at-least-once or exactly-once`},
		{"a time that is not RFC 3339", rollout.Request{Policy: "replay", From: "yesterday"}, spec(nil), `from "yesterday": want an RFC 3339 time`},
		{"a start time for a live deployment", rollout.Request{From: "2026-11-26T10:00:00Z"}, spec(nil), "from: only a replay deployment starts at a time"},
		{"a bad stream name", rollout.Request{Stream: "Bad Name"}, spec(nil), `stream name "Bad Name"`},
		{"a bad replay name", rollout.Request{Role: wire.RoleReplay, Replay: "Bad.Name"}, spec(nil), `replay name "Bad.Name"`},
		{"a selection without after", rollout.Request{Classes: []string{"person"}}, spec(nil), "classes, min_size, max_per_frame: they select a first stage's detections; add after"},
		{"a raw function on crops", rollout.Request{After: "yolox"}, spec(func(s *functions.Spec) { s.Output.Decoder = "raw" }), "decoder is raw"},
		{"a replay after itself", rollout.Request{After: "det", Role: wire.RoleReplay, Replay: "r1"}, spec(nil), "cannot run after itself"},
		{"a negative min size", rollout.Request{After: "yolox", MinSize: -1}, spec(nil), "min_size -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.Stream == "" {
				tc.req.Stream = "lobby"
			}
			_, _, err := rollout.Plan(tc.req, fn, tc.spec)
			if !errors.Is(err, rollout.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (kind %v); want invalid, mentioning %q", err, rollout.KindOf(err), tc.want)
			}
		})
	}
}
