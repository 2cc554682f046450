// Package controlplane holds diplip's durable control-plane records (streams, functions,
// deployments) and keeps them in NATS JetStream key-value buckets, which survive a
// restart and can be watched. The gateway writes them; runners read and watch them.
//
// It does not talk to Kafka or registries: callers check those before recording.
package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/diplip/diplip/internal/wire"
)

// Buckets, one per record kind.
const (
	BucketStreams     = "diplip_streams"
	BucketFunctions   = "diplip_functions"
	BucketDeployments = "diplip_deployments"
	BucketCameras     = "diplip_cameras"
)

// ErrNotFound is returned for a record that does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when creating a record that already exists.
var ErrExists = errors.New("already exists")

// Store reads and writes the records.
type Store struct {
	streams, functions, deployments, cameras jetstream.KeyValue
}

// Options tune how the buckets are created.
type Options struct {
	// Replicas of each bucket on a NATS cluster (1..5; at most the cluster's servers).
	// 0: a bucket that exists keeps its replicas, a new one gets 1.
	Replicas int
}

// openBucket creates or updates one bucket on file storage with o's replicas; with 0 a
// bucket that exists keeps its own (an update with the server's default, 1, would scale
// an operator's replicated bucket down) and a new one gets 1. Every bucket of the control
// plane goes through it, so none is left at one replica on a replicated control plane.
func openBucket(ctx context.Context, nc *nats.Conn, o Options, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if o.Replicas < 0 || o.Replicas > 5 {
		return nil, fmt.Errorf("control plane: %d replicas: want 1 to 5 (0: keep what the buckets have)", o.Replicas)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	replicas := o.Replicas
	if replicas == 0 {
		replicas = 1
		if kv, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
			if st, err := kv.Status(ctx); err == nil {
				if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo().Config.Replicas > 0 {
					replicas = bs.StreamInfo().Config.Replicas
				}
			}
		}
	}
	cfg.Storage, cfg.Replicas = jetstream.FileStorage, replicas
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("control plane bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// Open creates (or opens) the buckets on nc's JetStream, on file storage. Buckets that
// exist keep their replicas (see OpenWith).
func Open(ctx context.Context, nc *nats.Conn) (*Store, error) {
	return OpenWith(ctx, nc, Options{})
}

// OpenWith is Open with Options: on a NATS cluster, Replicas 3 keeps the control plane
// through the loss of a server. A bucket that exists is updated to the given replicas.
func OpenWith(ctx context.Context, nc *nats.Conn, o Options) (*Store, error) {
	var err error
	bucket := func(name, desc string) (jetstream.KeyValue, error) {
		return openBucket(ctx, nc, o, jetstream.KeyValueConfig{Bucket: name, Description: desc, History: 5})
	}
	s := &Store{}
	if s.streams, err = bucket(BucketStreams, "diplip streams"); err != nil {
		return nil, err
	}
	if s.functions, err = bucket(BucketFunctions, "diplip functions"); err != nil {
		return nil, err
	}
	if s.deployments, err = bucket(BucketDeployments, "diplip deployments"); err != nil {
		return nil, err
	}
	if s.cameras, err = bucket(BucketCameras, "diplip cameras"); err != nil {
		return nil, err
	}
	return s, nil
}

func get[T any](ctx context.Context, kv jetstream.KeyValue, key string) (T, uint64, error) {
	var v T
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, 0, ErrNotFound
	}
	if err != nil {
		return v, 0, err
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, 0, fmt.Errorf("control plane record %s/%s is corrupt: %w", kv.Bucket(), key, err)
	}
	return v, e.Revision(), nil
}

func list[T any](ctx context.Context, kv jetstream.KeyValue) ([]T, error) {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	slices.Sort(names)
	var out []T
	for _, k := range names {
		v, _, err := get[T](ctx, kv, k)
		if errors.Is(err, ErrNotFound) {
			continue // deleted between listing and reading
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func create(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrExists
		}
		return err
	}
	return nil
}

func put(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, key, b)
	return err
}

func del(ctx context.Context, kv jetstream.KeyValue, key string) error {
	if _, err := kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNotFound
	}
	return kv.Delete(ctx, key)
}

// CreateStream records a new stream; ErrExists if one of that name exists.
func (s *Store) CreateStream(ctx context.Context, st wire.Stream) error {
	return create(ctx, s.streams, st.Name, st)
}

// Stream returns the stream called name.
func (s *Store) Stream(ctx context.Context, name string) (wire.Stream, error) {
	v, _, err := get[wire.Stream](ctx, s.streams, name)
	return v, err
}

// Streams lists all streams by name.
func (s *Store) Streams(ctx context.Context) ([]wire.Stream, error) {
	return list[wire.Stream](ctx, s.streams)
}

// DeleteStream removes the stream record.
func (s *Store) DeleteStream(ctx context.Context, name string) error {
	return del(ctx, s.streams, name)
}

// CreateCamera records a new camera; ErrExists if one with that id exists.
func (s *Store) CreateCamera(ctx context.Context, c wire.Camera) error {
	return create(ctx, s.cameras, c.ID, c)
}

// Camera returns the camera with that id.
func (s *Store) Camera(ctx context.Context, id string) (wire.Camera, error) {
	v, _, err := get[wire.Camera](ctx, s.cameras, id)
	return v, err
}

// Cameras lists all cameras by id.
func (s *Store) Cameras(ctx context.Context) ([]wire.Camera, error) {
	return list[wire.Camera](ctx, s.cameras)
}

// DeleteCamera removes the camera record.
func (s *Store) DeleteCamera(ctx context.Context, id string) error { return del(ctx, s.cameras, id) }

// PutFunction records (or replaces) a function.
func (s *Store) PutFunction(ctx context.Context, f wire.Function) error {
	return put(ctx, s.functions, f.Name, f)
}

// Function returns the function called name.
func (s *Store) Function(ctx context.Context, name string) (wire.Function, error) {
	v, _, err := get[wire.Function](ctx, s.functions, name)
	return v, err
}

// Functions lists all functions by name.
func (s *Store) Functions(ctx context.Context) ([]wire.Function, error) {
	return list[wire.Function](ctx, s.functions)
}

// DeleteFunction removes the function record.
func (s *Store) DeleteFunction(ctx context.Context, name string) error {
	return del(ctx, s.functions, name)
}

// PutDeployment creates a deployment or updates it in place (a rolling update), with
// compare-and-set so that two concurrent updates cannot both win. It returns the stored
// record, whose Generation tells the one from the other.
func (s *Store) PutDeployment(ctx context.Context, d wire.Deployment) (wire.Deployment, error) {
	for {
		old, rev, err := get[wire.Deployment](ctx, s.deployments, d.Key())
		switch {
		case errors.Is(err, ErrNotFound):
			d.Generation = 1
		case err != nil:
			return d, err
		default:
			d.Generation = old.Generation + 1
		}
		b, err := json.Marshal(d)
		if err != nil {
			return d, err
		}
		if rev == 0 {
			_, err = s.deployments.Create(ctx, d.Key(), b)
		} else {
			_, err = s.deployments.Update(ctx, d.Key(), b, rev)
		}
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongRevision(err) {
			return d, err
		}
		// Someone else wrote in between: read again and retry.
	}
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Deployment returns the deployment of function on stream.
func (s *Store) Deployment(ctx context.Context, function, stream string) (wire.Deployment, error) {
	v, _, err := get[wire.Deployment](ctx, s.deployments, wire.DeploymentKey(function, stream))
	return v, err
}

// Deployments lists all deployments by key.
func (s *Store) Deployments(ctx context.Context) ([]wire.Deployment, error) {
	return list[wire.Deployment](ctx, s.deployments)
}

// DeleteDeployment removes the deployment of function on stream.
func (s *Store) DeleteDeployment(ctx context.Context, function, stream string) error {
	return del(ctx, s.deployments, wire.DeploymentKey(function, stream))
}

// WatchDeployments streams every change to deployments, starting with the current ones.
// A deleted deployment arrives with Deleted set. The watch ends when ctx does.
func (s *Store) WatchDeployments(ctx context.Context) (<-chan DeploymentChange, error) {
	w, err := s.deployments.WatchAll(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan DeploymentChange)
	go func() { // ends with ctx: the watch stops and out is closed
		defer close(out)
		watch(ctx, w, func(e jetstream.KeyValueEntry) {
			c := DeploymentChange{Key: e.Key()}
			if e.Operation() != jetstream.KeyValuePut {
				c.Deleted = true
			} else if err := json.Unmarshal(e.Value(), &c.Deployment); err != nil {
				return
			}
			select {
			case out <- c:
			case <-ctx.Done():
			}
		})
	}()
	return out, nil
}

// DeploymentChange is one change seen by WatchDeployments.
type DeploymentChange struct {
	Key        string
	Deleted    bool
	Deployment wire.Deployment
}
