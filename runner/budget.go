package runner

import (
	"context"
	"sync"

	"github.com/diplip/diplip/runner/flow"
)

// DefaultMaxBytesInFlight is WorkerConfig.MaxBytesInFlight's default.
const DefaultMaxBytesInFlight = 64 << 20

// budget bounds the bytes a worker holds for the records it took and has not finished,
// in both deliveries: a record counts its frame from the moment its claim takes it
// until the sequencer submits it, then its result and checkpoint until it is finished
// (acknowledged, committed, or abandoned). A claim waits for room before it takes a
// record, so that back-pressure reaches the partition that brings the bytes, never the
// pipeline that other partitions (and a revoked claim's last records) go through; nothing
// is dropped. One record bigger than the whole bound still goes, alone.
type budget struct {
	max int64

	mu   sync.Mutex
	held int64
	high int64         // the most held at once
	room chan struct{} // closed (and replaced) when bytes are freed
}

func newBudget(max int64) *budget { return &budget{max: max, room: make(chan struct{})} }

// take waits until n more bytes fit (or nothing is held) and counts them; false, and
// nothing counted, when ctx ends first.
func (b *budget) take(ctx context.Context, n int64) bool {
	for {
		b.mu.Lock()
		if b.held == 0 || b.held+n <= b.max {
			b.add(n)
			b.mu.Unlock()
			return true
		}
		room := b.room
		b.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return false
		}
	}
}

// resize counts an item's result and checkpoint instead of its frame, which it lets go:
// the sequencer calls it for every item it hands to the delivery. It never waits.
func (b *budget) resize(it *flow.Item) {
	n := int64(len(it.Payload) + len(it.State))
	it.Value = nil // inferred: only the result and the checkpoint are written
	b.mu.Lock()
	b.add(n - it.Held)
	b.mu.Unlock()
	it.Held = n
}

// free uncounts a finished item.
func (b *budget) free(it *flow.Item) {
	b.mu.Lock()
	b.add(-it.Held)
	b.mu.Unlock()
	it.Held = 0
}

// add counts n bytes more (fewer when negative); b.mu is held.
func (b *budget) add(n int64) {
	b.held += n
	b.high = max(b.high, b.held)
	if n < 0 {
		close(b.room)
		b.room = make(chan struct{})
	}
}

// BytesInFlight returns the bytes the worker holds now for records taken and not yet
// finished (frames in the pipeline, results and checkpoints waiting for Kafka), and the
// most it held at once.
func (w *Worker) BytesInFlight() (now, high int64) {
	w.budget.mu.Lock()
	defer w.budget.mu.Unlock()
	return w.budget.held, w.budget.high
}
