package controlplane

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/wire"
)

// BucketSinks holds the sinks: consumers of results that deliver events to webhooks and
// MQTT brokers.
const BucketSinks = "diplip_sinks"

// Sinks reads and writes sink records; whoever runs sinks lists them.
type Sinks struct {
	kv jetstream.KeyValue
}

// OpenSinks opens (creating) the sinks bucket with the control plane's Options.
func OpenSinks(ctx context.Context, nc *nats.Conn, o Options) (*Sinks, error) {
	kv, err := openBucket(ctx, nc, o, jetstream.KeyValueConfig{Bucket: BucketSinks, Description: "diplip sinks", History: 5})
	if err != nil {
		return nil, err
	}
	return &Sinks{kv: kv}, nil
}

// Create records a new sink; ErrExists if one of that name exists.
func (s *Sinks) Create(ctx context.Context, sink wire.Sink) error {
	return create(ctx, s.kv, sink.Name, sink)
}

// Get returns the sink called name; ErrNotFound if there is none.
func (s *Sinks) Get(ctx context.Context, name string) (wire.Sink, error) {
	v, _, err := get[wire.Sink](ctx, s.kv, name)
	return v, err
}

// List lists every sink by name.
func (s *Sinks) List(ctx context.Context) ([]wire.Sink, error) {
	return list[wire.Sink](ctx, s.kv)
}

// Delete removes a sink's record; ErrNotFound if there is none.
func (s *Sinks) Delete(ctx context.Context, name string) error {
	return del(ctx, s.kv, name)
}
