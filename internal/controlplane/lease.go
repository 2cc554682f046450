package controlplane

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BucketLeases holds leases: keys whose holder must renew them before their TTL lapses.
const BucketLeases = "diplip_leases"

// Lease is a lock held in a JetStream key-value entry that lapses when its holder stops
// renewing it: one holder at a time across every gateway of a control plane (the
// scaler's, so that two gateways never both activate runners), taken over by another
// within the TTL when the holder dies.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	rev    uint64 // the revision of our entry while we hold it; 0 when we do not
}

// OpenLease opens (creating) the leases bucket, whose entries live for ttl after their
// last write, and returns the lease name for holder. A bucket that exists keeps its
// replicas; OpenLeaseWith sets them.
func OpenLease(ctx context.Context, nc *nats.Conn, name, holder string, ttl time.Duration) (*Lease, error) {
	return OpenLeaseWith(ctx, nc, Options{}, name, holder, ttl)
}

// OpenLeaseWith is OpenLease with the control plane's Options (its replicas).
func OpenLeaseWith(ctx context.Context, nc *nats.Conn, o Options, name, holder string, ttl time.Duration) (*Lease, error) {
	kv, err := openBucket(ctx, nc, o, jetstream.KeyValueConfig{Bucket: BucketLeases, Description: "diplip leases", TTL: ttl})
	if err != nil {
		return nil, err
	}
	return &Lease{kv: kv, key: name, holder: holder}, nil
}

// Hold takes the lease when it is free, renews it when we hold it, and reports whether
// we hold it now. Call it more often than the TTL.
func (l *Lease) Hold(ctx context.Context) (bool, error) {
	if l.rev != 0 {
		rev, err := l.kv.Update(ctx, l.key, []byte(l.holder), l.rev)
		if err == nil {
			l.rev = rev
			return true, nil
		}
		l.rev = 0 // lapsed and taken, or the entry is gone: try to take it below
	}
	rev, err := l.kv.Create(ctx, l.key, []byte(l.holder))
	switch {
	case err == nil:
		l.rev = rev
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil // someone else holds it
	default:
		return false, err
	}
}

// Release gives the lease up at once, if we hold it.
func (l *Lease) Release(ctx context.Context) {
	if l.rev != 0 {
		_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
		l.rev = 0
	}
}
