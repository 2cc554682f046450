package faults

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/wire"
)

// The checker's verdict, on made-up observations: what counts as inferred, and which
// targets a report misses.
func TestReportCountsStatusesAndMisses(t *testing.T) {
	at := time.Unix(1700000000, 0)
	c := &Checker{results: map[FrameKey][]seen{
		{"c", 1}: {{id: "a", status: wire.StatusOK, at: at}},
		{"c", 2}: {{id: "b", status: wire.StatusSkipped, at: at.Add(time.Second)}, {id: "b", status: wire.StatusOK, at: at.Add(2 * time.Second)}},
		{"c", 3}: {{id: "c", status: wire.StatusError, at: at.Add(20 * time.Second)}},
		{"c", 4}: {{id: "d", status: wire.StatusSkipped, at: at.Add(21 * time.Second)}},
	}, ids: map[string]int{"a": 1, "b": 2, "c": 1, "d": 1}, sources: map[wire.Source]int{{Offset: 2}: 2}, status: map[string]int{}}
	pushes := map[FrameKey]Push{{"c", 1}: {Acked: true}, {"c", 2}: {Acked: true}, {"c", 3}: {Acked: true}, {"c", 4}: {Acked: true}, {"c", 5}: {Acked: true}}
	r := c.Report(string(wire.AtLeastOnce), pushes)
	if r.OK != 2 || r.Skipped != 1 || r.Errors != 1 || r.Lost != 1 || r.WithResults != 4 {
		t.Fatalf("ok %d skipped %d errors %d lost %d with results %d; want 2 1 1 1 4", r.OK, r.Skipped, r.Errors, r.Lost, r.WithResults)
	}
	if !slices.Equal(r.NotInferred, []FrameKey{{"c", 3}, {"c", 4}}) {
		t.Fatalf("not inferred %v", r.NotInferred)
	}
	for _, tc := range []struct {
		name    string
		mode    wire.Delivery
		targets Targets
		want    []string // each a part of one miss, in order
	}{
		{"every run's rules", wire.AtLeastOnce, Targets{}, []string{"1 acknowledged frames lost", "1 frames with only error results", "1 frames only skipped"}},
		{"skips allowed", wire.AtLeastOnce, Targets{AllowSkips: true}, []string{"lost", "error results"}},
		{"duplicates and stall", wire.AtLeastOnce, Targets{AllowSkips: true, MaxDuplicateShare: 0.01, MaxStall: 15 * time.Second},
			[]string{"lost", "error results", "duplicates 20.00 % ≥ 1.00 %", "longest stall 18.0 s > 15 s"}},
		{"exactly-once counts runner duplicates", wire.ExactlyOnce, Targets{AllowSkips: true}, []string{"lost", "error results", "1 runner duplicates"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Misses(tc.mode, tc.targets)
			if len(got) != len(tc.want) {
				t.Fatalf("misses %q, want %d like %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Fatalf("miss %d is %q, want it to say %q (all: %q)", i, got[i], tc.want[i], got)
				}
			}
		})
	}
	if clean := (Report{Acknowledged: 10, WithResults: 10, OK: 10}); len(clean.Misses(wire.ExactlyOnce, Targets{MaxDuplicateShare: 0.01, MaxStall: time.Second})) != 0 {
		t.Fatalf("a clean run misses %q", clean.Misses(wire.ExactlyOnce, Targets{}))
	}
}
