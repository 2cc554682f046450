package controlplane

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/wire"
)

// BucketSinks holds the sinks: consumers of results that deliver events to webhooks and
// MQTT brokers.
const BucketSinks = "diplip_sinks"

// BucketSinkStatus holds what each process running a sink reports of it; an entry
// expires SinkStatusTTL after its last report (a process that stopped or died).
const BucketSinkStatus = "diplip_sink_status"

// SinkStatusTTL is how long a process's report of a sink is kept.
const SinkStatusTTL = 30 * time.Second

// Sinks reads and writes sink records; whoever runs sinks lists them and reports on them.
type Sinks struct {
	kv, status jetstream.KeyValue
}

// OpenSinks opens (creating) the sinks bucket with the control plane's Options.
func OpenSinks(ctx context.Context, nc *nats.Conn, o Options) (*Sinks, error) {
	kv, err := openBucket(ctx, nc, o, jetstream.KeyValueConfig{Bucket: BucketSinks, Description: "diplip sinks", History: 5})
	if err != nil {
		return nil, err
	}
	status, err := openBucket(ctx, nc, o, jetstream.KeyValueConfig{Bucket: BucketSinkStatus, Description: "diplip sinks' status by process", TTL: SinkStatusTTL})
	if err != nil {
		return nil, err
	}
	return &Sinks{kv: kv, status: status}, nil
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

// PutStatus records a process's report of a sink.
func (s *Sinks) PutStatus(ctx context.Context, st wire.SinkStatus) error {
	return put(ctx, s.status, statusKey(st.Sink, st.Process), st)
}

// Statuses returns every live report of a sink, by process.
func (s *Sinks) Statuses(ctx context.Context, sink string) ([]wire.SinkStatus, error) {
	all, err := list[wire.SinkStatus](ctx, s.status)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(st wire.SinkStatus) bool { return st.Sink != sink }), nil
}

// statusKey is a report's key: SINK.PROCESS, the process's id made a valid key.
func statusKey(sink, process string) string {
	return sink + "." + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, process)
}
