package runner

import (
	"sync"

	"github.com/diplip/diplip/runner/flow"
)

// ledger holds a claimed partition's pending offsets for at-least-once delivery: its
// records in consumption order that are taken and not yet settled. An offset is marked
// (and so committed with the group's next commit) only when its record and every earlier
// one of the claim are finished; an abandoned record stops the marking for the rest of
// the claim, so the partition's next owner redoes it and everything after it.
type ledger struct {
	mark    func(it *flow.Item) // marks it done: the partition's next offset is the one after it
	release func(it *flow.Item) // it is finished: marked, or never to be

	mu       sync.Mutex
	pending  []*flow.Item        // taken, in offset order, not yet settled
	finished map[*flow.Item]bool // finished but behind an unfinished one; true: acknowledged
	broken   bool                // an item was abandoned: mark nothing more in this claim
}

func newLedger(mark, release func(*flow.Item)) *ledger {
	return &ledger{mark: mark, release: release, finished: map[*flow.Item]bool{}}
}

// add appends a taken record, in offset order.
func (l *ledger) add(it *flow.Item) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, it)
}

// settle records that it is finished (acked: its result is durable, or it needs none)
// and marks the partition's offsets up to the first record still in flight, releasing
// each record it passes.
func (l *ledger) settle(it *flow.Item, acked bool) {
	l.mu.Lock()
	l.finished[it] = acked
	var ready []*flow.Item
	var ok []bool
	for len(l.pending) > 0 {
		a, done := l.finished[l.pending[0]]
		if !done {
			break
		}
		ready, ok = append(ready, l.pending[0]), append(ok, a)
		delete(l.finished, l.pending[0])
		l.pending = l.pending[1:]
	}
	broken := l.broken
	l.mu.Unlock()
	for i, r := range ready {
		if ok[i] && !broken {
			l.mark(r)
		}
		l.release(r)
	}
}

// abandon finishes it without a result: its offset is not marked, and nothing after it
// in the claim is marked (the next owner redoes them).
func (l *ledger) abandon(it *flow.Item) {
	l.mu.Lock()
	l.broken = true
	l.mu.Unlock()
	l.settle(it, false)
}
