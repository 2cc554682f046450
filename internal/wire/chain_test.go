package wire_test

import (
	"testing"

	"github.com/diplip/diplip/internal/wire"
)

// A second stage's key, group and topics are its own: they never collide with the
// stream's primary, shadow or replays of the same function; its runners consume the first
// stage's results (the stream's results topic) and read frames from the stream's topic.
func TestSecondStageNames(t *testing.T) {
	st := wire.Stream{Name: "lobby", Topic: "diplip.frames.lobby", ResultsTopic: "diplip.results.lobby", Partitions: 4}
	d := wire.Deployment{Function: "reid", Stream: "lobby", Role: wire.RoleAfter, After: &wire.AfterInfo{Function: "yolox"}}
	if d.Key() != "reid.lobby.after.yolox" || d.Group() != "diplip.reid.lobby.after.yolox" {
		t.Fatalf("key %s, group %s", d.Key(), d.Group())
	}
	if got := d.ResultsTopic(st); got != "diplip.results.lobby.after.yolox.reid" {
		t.Fatalf("results topic %s", got)
	}
	if got := d.InputTopic(st); got != st.ResultsTopic {
		t.Fatalf("input topic %s, want the first stage's results %s", got, st.ResultsTopic)
	}
	rs := d.ForRunner(st)
	if rs.Topic != st.ResultsTopic || rs.FramesTopic != st.Topic || rs.ResultsTopic != d.ResultsTopic(st) || rs.Partitions != 4 {
		t.Fatalf("the stream as its runner sees it: %+v", rs)
	}
	if d.InputTopic(rs) != st.ResultsTopic {
		t.Fatalf("input topic as the runner sees it: %s", d.InputTopic(rs))
	}
	for _, other := range []wire.Deployment{
		{Function: "reid", Stream: "lobby"},
		{Function: "reid", Stream: "lobby", Role: wire.RoleShadow},
		{Function: "reid", Stream: "lobby", Role: wire.RoleReplay, Replay: &wire.ReplayInfo{Name: "after"}},
	} {
		if other.Key() == d.Key() || other.ResultsTopic(st) == d.ResultsTopic(st) {
			t.Fatalf("%s collides with %s", other.Key(), d.Key())
		}
	}
	if err := d.Validate(); err == nil {
		t.Fatal("Validate passed a deployment with no batch") // sanity: it validates the rest too
	}
	d.Max, d.Batch, d.Device, d.Policy = 1, 1, "cpu", wire.PolicyLive
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	d.After.Function = "reid"
	if err := d.Validate(); err == nil {
		t.Fatal("Validate passed a function after itself")
	}
}

// A second stage's shadow and a second stage's replay are second stages (After set) in
// the role of a shadow or a replay: they consume the first stage's results and read the
// frames like the live one, and their keys, groups, topics and subjects are their own.
func TestSecondStageShadowAndReplayNames(t *testing.T) {
	st := wire.Stream{Name: "lobby", Topic: "diplip.frames.lobby", ResultsTopic: "diplip.results.lobby", Partitions: 4}
	after := &wire.AfterInfo{Function: "yolox", Classes: []string{"person"}}
	live := wire.Deployment{Function: "reid", Stream: "lobby", Role: wire.RoleAfter, After: after}
	sh := wire.Deployment{Function: "reid", Stream: "lobby", Role: wire.RoleShadow, After: after}
	rp := wire.Deployment{Function: "reid", Stream: "lobby", Role: wire.RoleReplay, After: after, Replay: &wire.ReplayInfo{Name: "r1"}}
	if sh.Key() != "reid.lobby.after.yolox.shadow" || sh.Group() != "diplip.reid.lobby.after.yolox.shadow" ||
		sh.ResultsTopic(st) != "diplip.results.lobby.after.yolox.reid.shadow" || sh.ResultSubject("c1") != "diplip.shadow.lobby.after.yolox.reid.c1" {
		t.Fatalf("shadow: key %s, group %s, topic %s, subject %s", sh.Key(), sh.Group(), sh.ResultsTopic(st), sh.ResultSubject("c1"))
	}
	if rp.Key() != "reid.lobby.replay.r1" || rp.ResultsTopic(st) != "diplip.results.lobby.replay.r1" || rp.ResultSubject("c1") != "diplip.replay.lobby.r1.c1" {
		t.Fatalf("replay: key %s, topic %s, subject %s", rp.Key(), rp.ResultsTopic(st), rp.ResultSubject("c1"))
	}
	for _, d := range []wire.Deployment{live, sh, rp} {
		if !d.SecondStage() || d.InputTopic(st) != st.ResultsTopic {
			t.Fatalf("%s: second stage %v, input %s", d.Key(), d.SecondStage(), d.InputTopic(st))
		}
		rs := d.ForRunner(st)
		if rs.Topic != st.ResultsTopic || rs.FramesTopic != st.Topic || rs.ResultsTopic != d.ResultsTopic(st) || d.InputTopic(rs) != st.ResultsTopic {
			t.Fatalf("%s as its runner sees it: %+v", d.Key(), rs)
		}
	}
	keys, topics := map[string]bool{}, map[string]bool{}
	for _, d := range []wire.Deployment{live, sh, rp, {Function: "reid", Stream: "lobby"}, {Function: "reid", Stream: "lobby", Role: wire.RoleShadow}} {
		if keys[d.Key()] || topics[d.ResultsTopic(st)] {
			t.Fatalf("%s or %s collides", d.Key(), d.ResultsTopic(st))
		}
		keys[d.Key()], topics[d.ResultsTopic(st)] = true, true
	}
	if plain := (wire.Deployment{Function: "reid", Stream: "lobby", Role: wire.RoleShadow}); plain.SecondStage() || plain.InputTopic(st) != st.Topic {
		t.Fatal("a stream's shadow is not a second stage")
	}
	for _, d := range []*wire.Deployment{&sh, &rp} {
		d.Max, d.Batch, d.Device, d.Policy = 1, 1, "cpu", wire.PolicyReplay
		if err := d.Validate(); err != nil {
			t.Fatalf("%s: %v", d.Key(), err)
		}
	}
	bad := rp
	bad.After = &wire.AfterInfo{Function: "reid"}
	if err := bad.Validate(); err == nil {
		t.Fatal("Validate passed a replay of a function after itself")
	}
	bad = wire.Deployment{Function: "reid", Stream: "lobby", After: after, Max: 1, Batch: 1, Device: "cpu", Policy: wire.PolicyLive}
	if err := bad.Validate(); err == nil {
		t.Fatal("Validate passed a primary with an after record")
	}
}
