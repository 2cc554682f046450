package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/controlplane"
)

// ControlPlane is a copy of the control-plane buckets, read without writing (no
// controlplane.Open, which would create or update them).
type ControlPlane struct {
	Buckets map[string]map[string][]byte // bucket → key → value
	// Replicas are each bucket's live replicas: its leader and the followers that are
	// current (not the configured count, which a lost server does not change).
	Replicas map[string]int
}

// Watched are the buckets whose records must survive the schedule unchanged.
var Watched = []string{controlplane.BucketStreams, controlplane.BucketFunctions, controlplane.BucketDeployments,
	controlplane.BucketCameras, controlplane.BucketZones}

// Renewed are buckets whose values change by design (leases are renewed every few
// seconds): they must survive with their replicas, their values are not compared.
var Renewed = []string{controlplane.BucketLeases}

// ReadControlPlane reads the watched and renewed buckets through nc.
func ReadControlPlane(ctx context.Context, nc *nats.Conn) (ControlPlane, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return ControlPlane{}, err
	}
	cp := ControlPlane{Buckets: map[string]map[string][]byte{}, Replicas: map[string]int{}}
	for _, b := range slices.Concat(Watched, Renewed) {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			return cp, fmt.Errorf("bucket %s: %w", b, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return cp, fmt.Errorf("bucket %s: %w", b, err)
		}
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
			cp.Replicas[b] = liveReplicas(bs.StreamInfo())
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return cp, fmt.Errorf("bucket %s: %w", b, err)
		}
		m := map[string][]byte{}
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			if err != nil {
				return cp, fmt.Errorf("bucket %s key %s: %w", b, k, err)
			}
			m[k] = e.Value()
		}
		cp.Buckets[b] = m
	}
	return cp, nil
}

// liveReplicas counts a stream's leader and its current, online followers.
func liveReplicas(si *jetstream.StreamInfo) int {
	if si.Cluster == nil || si.Cluster.Leader == "" {
		if si.Config.Replicas <= 1 && si.Cluster == nil {
			return 1 // a single server: no cluster to report
		}
		return 0
	}
	n := 1
	for _, r := range si.Cluster.Replicas {
		if r != nil && r.Current && !r.Offline {
			n++
		}
	}
	return n
}

// Compare says what after lost or changed of before (nil: intact), and whether any
// bucket has fewer than replicas live.
func (before ControlPlane) Compare(after ControlPlane, replicas int) error {
	var errs []error
	for _, b := range Renewed {
		if _, ok := after.Buckets[b]; !ok {
			errs = append(errs, fmt.Errorf("bucket %s is gone", b))
		} else if r := after.Replicas[b]; r < replicas {
			errs = append(errs, fmt.Errorf("bucket %s has %d live replicas, want %d", b, r, replicas))
		}
	}
	for _, b := range Watched {
		var keys []string
		for k := range before.Buckets[b] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v, ok := after.Buckets[b][k]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s/%s is gone", b, k))
			case !bytes.Equal(v, before.Buckets[b][k]):
				errs = append(errs, fmt.Errorf("%s/%s changed: %s → %s", b, k, before.Buckets[b][k], v))
			}
		}
		if r := after.Replicas[b]; r < replicas {
			errs = append(errs, fmt.Errorf("bucket %s has %d live replicas, want %d", b, r, replicas))
		}
	}
	return errors.Join(errs...)
}
