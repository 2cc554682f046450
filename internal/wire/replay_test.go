package wire_test

import (
	"strings"
	"testing"

	"github.com/diplip/diplip/internal/wire"
)

// A primary's key, group and results topic stay as they always were; a shadow's and a
// replay's differ from it and from each other.
func TestDeploymentRoles(t *testing.T) {
	st := wire.Stream{Name: "demo", ResultsTopic: "diplip.results.demo"}
	for _, tc := range []struct {
		name                       string
		d                          wire.Deployment
		key, group, topic, subject string
	}{
		{"primary", wire.Deployment{Function: "yolox-nano", Stream: "demo"},
			"yolox-nano.demo", "diplip.yolox-nano.demo", "diplip.results.demo", "diplip.results.demo.cam"},
		{"shadow", wire.Deployment{Function: "yolox-nano", Stream: "demo", Role: wire.RoleShadow},
			"yolox-nano.demo.shadow", "diplip.yolox-nano.demo.shadow", "diplip.results.demo.shadow", "diplip.shadow.demo.cam"},
		{"replay", wire.Deployment{Function: "yolox-nano", Stream: "demo", Role: wire.RoleReplay, Replay: &wire.ReplayInfo{Name: "r1"}},
			"yolox-nano.demo.replay.r1", "diplip.yolox-nano.demo.replay.r1", "diplip.results.demo.replay.r1", "diplip.replay.demo.r1.cam"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d
			if d.Key() != tc.key || d.Group() != tc.group || d.ResultsTopic(st) != tc.topic || d.ResultSubject("cam") != tc.subject {
				t.Fatalf("key %q group %q topic %q subject %q", d.Key(), d.Group(), d.ResultsTopic(st), d.ResultSubject("cam"))
			}
			if got := d.ForRunner(st); got.ResultsTopic != tc.topic || got.Name != "demo" {
				t.Fatalf("ForRunner: %+v", got)
			}
		})
	}
	if (wire.Deployment{Role: wire.RoleReplay, Replay: &wire.ReplayInfo{Name: "r", Done: true}}).Finished() != true ||
		(wire.Deployment{Role: wire.RoleShadow}).Finished() {
		t.Fatal("Finished")
	}
	d := wire.Deployment{Function: "f", Stream: "s", Min: 0, Max: 1, Batch: 1, Device: "any", Policy: "live", Role: "sidecar"}
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), `role "sidecar"`) {
		t.Fatalf("Validate: %v", err)
	}
}
