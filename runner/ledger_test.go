package runner

import (
	"slices"
	"testing"

	"github.com/diplip/diplip/runner/flow"
)

// The at-least-once pending offsets without a broker: an offset is marked only when it and
// every earlier one of the claim are finished, in order; an abandoned record and
// everything after it are released unmarked.
func TestLedgerMarksOnlyAFinishedPrefix(t *testing.T) {
	var marked, released []int64
	l := newLedger(func(it *flow.Item) { marked = append(marked, it.Offset) },
		func(it *flow.Item) { released = append(released, it.Offset) })
	var items []*flow.Item
	for i := range 7 {
		it := &flow.Item{Partition: 3, Offset: int64(10 + i)}
		items = append(items, it)
		l.add(it)
	}
	check := func(step string, wantMarked, wantReleased []int64) {
		t.Helper()
		if !slices.Equal(marked, wantMarked) || !slices.Equal(released, wantReleased) {
			t.Fatalf("%s: marked %v, released %v; want %v, %v", step, marked, released, wantMarked, wantReleased)
		}
	}
	l.settle(items[2], true)
	l.settle(items[1], true)
	check("12 and 11 acknowledged before 10", nil, nil)
	l.settle(items[0], true)
	check("10 acknowledged", []int64{10, 11, 12}, []int64{10, 11, 12})
	l.settle(items[4], true) // a skipped record: nothing to write, done once those before it are
	check("14 before 13", []int64{10, 11, 12}, []int64{10, 11, 12})
	l.abandon(items[3])
	check("13 abandoned", []int64{10, 11, 12}, []int64{10, 11, 12, 13, 14})
	l.settle(items[6], true)
	l.settle(items[5], true)
	check("15 and 16 after an abandoned one", []int64{10, 11, 12}, []int64{10, 11, 12, 13, 14, 15, 16})
}
