package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/wire"
)

// StreamView is a local copy of the stream records, kept current by Run from a watch on
// the streams bucket. Ingest resolves every pushed frame's topic through it, so a frame
// costs no NATS round trip; a name the view has not seen yet is read from the store once
// (a stream created a moment ago on another gateway).
type StreamView struct {
	store *Store

	mu      sync.RWMutex
	streams map[string]wire.Stream
}

// NewStreamView returns an empty view of s's streams; Run fills it and keeps it current.
func (s *Store) NewStreamView() *StreamView {
	return &StreamView{store: s, streams: map[string]wire.Stream{}}
}

// Run watches the streams bucket until ctx ends.
func (v *StreamView) Run(ctx context.Context) error {
	w, err := v.store.streams.WatchAll(ctx)
	if err != nil {
		return err
	}
	watch(ctx, w, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			v.Forget(e.Key())
			return
		}
		var st wire.Stream
		if json.Unmarshal(e.Value(), &st) == nil {
			v.Remember(st)
		}
	})
	return nil
}

// watch calls fn with each change w delivers, its initial values included, until ctx
// ends or the watch does, and then stops w.
func watch(ctx context.Context, w jetstream.KeyWatcher, fn func(jetstream.KeyValueEntry)) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil { // nil marks the end of the initial values
				fn(e)
			}
		}
	}
}

// Get returns the stream called name: from the view, else from the store (ErrNotFound
// when it does not exist).
func (v *StreamView) Get(ctx context.Context, name string) (wire.Stream, error) {
	v.mu.RLock()
	st, ok := v.streams[name]
	v.mu.RUnlock()
	if ok {
		return st, nil
	}
	st, err := v.store.Stream(ctx, name)
	if err != nil {
		return st, err
	}
	v.Remember(st)
	return st, nil
}

// Remember puts a stream in the view, so the gateway that created it sees it at once.
func (v *StreamView) Remember(st wire.Stream) {
	v.mu.Lock()
	v.streams[st.Name] = st
	v.mu.Unlock()
}

// Forget drops a stream from the view.
func (v *StreamView) Forget(name string) {
	v.mu.Lock()
	delete(v.streams, name)
	v.mu.Unlock()
}

// FramesTopic resolves a stream to its frames topic; ErrNotFound for an unknown stream.
func (v *StreamView) FramesTopic(ctx context.Context, name string) (string, error) {
	st, err := v.Get(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return "", err
	}
	return st.Topic, err
}
