package runner

import (
	"context"
	"testing"
	"time"

	"github.com/diplip/diplip/runner/flow"
)

// The bytes bound: a record waits for room (never dropped), the first one always goes,
// a result counts instead of its frame, and a claim that ends stops waiting.
func TestBudgetWaitsForRoom(t *testing.T) {
	b := newBudget(100)
	ctx := context.Background()
	a := &flow.Item{Held: 150, Value: make([]byte, 150)}
	within(t, time.Second, "a record over the bound, alone", func() { b.take(ctx, a.Held) })
	took := make(chan bool, 1)
	go func() { took <- b.take(ctx, 10) }()
	select {
	case <-took:
		t.Fatal("a record was taken over the bound")
	case <-time.After(50 * time.Millisecond):
	}
	a.Payload = make([]byte, 60)
	b.resize(a) // 150 → 60: room for 10
	within(t, time.Second, "the waiting record", func() { <-took })
	if held, high := b.held, b.high; held != 70 || high != 150 || a.Value != nil {
		t.Fatalf("held %d (high %d), want 70 (150), and the frame let go", held, high)
	}
	ended, cancel := context.WithCancel(ctx)
	go func() { took <- b.take(ended, 50) }()
	cancel()
	if <-took {
		t.Fatal("a claim that ended took room")
	}
	b.free(a)
	if b.held != 10 {
		t.Fatalf("held %d after freeing, want 10", b.held)
	}
}
