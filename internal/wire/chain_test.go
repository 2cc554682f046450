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
