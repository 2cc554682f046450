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
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// Stream is a Kafka topic that cameras write frames to.
type Stream struct {
	Name           string    `json:"name"`
	Topic          string    `json:"topic"`
	ResultsTopic   string    `json:"results_topic"`
	Partitions     int32     `json:"partitions"`
	Replication    int16     `json:"replication"`
	RetentionMs    int64     `json:"retention_ms,omitempty"`
	RetentionBytes int64     `json:"retention_bytes,omitempty"`
	Created        time.Time `json:"created"`
}

// Function is a function image known to the platform, pinned by digest.
type Function struct {
	Name    string          `json:"name"`
	Ref     string          `json:"ref"`    // as given, e.g. 127.0.0.1:8080/fn/yolox-nano:v1
	Digest  string          `json:"digest"` // repo@sha256:... that runners pull
	Spec    json.RawMessage `json:"spec"`
	Size    int64           `json:"size"` // bytes of config and layers
	Created time.Time       `json:"created"`
}

// Camera is a pulled camera: the gateway reads URL and writes its frames to Stream.
type Camera struct {
	ID      string    `json:"id"`
	Stream  string    `json:"stream"`
	URL     string    `json:"url"`
	FPS     float64   `json:"fps,omitempty"`  // sample down to this rate; 0 keeps every frame
	Loop    bool      `json:"loop,omitempty"` // files: start again at the end
	Created time.Time `json:"created"`
}

// Deployment runs a function on a stream. Its key is "FUNCTION.STREAM": one deployment
// per (function, stream); deploying a new digest to the pair is a rolling update.
type Deployment struct {
	Function string    `json:"function"`
	Stream   string    `json:"stream"`
	Digest   string    `json:"digest"`
	Min      int       `json:"min"`
	Max      int       `json:"max"`
	Batch    int       `json:"batch"`
	Device   string    `json:"device"` // cpu, cuda:N or any
	Policy   string    `json:"policy"` // live or replay
	MaxAge   Duration  `json:"max_age,omitempty"`
	Updated  time.Time `json:"updated"`
	// Generation counts updates of this deployment (1 when created).
	Generation int `json:"generation"`
}

// Key is the deployment's key in its bucket.
func (d Deployment) Key() string { return DeploymentKey(d.Function, d.Stream) }

// DeploymentKey is the key of the deployment of function on stream.
func DeploymentKey(function, stream string) string { return function + "." + stream }

// Group is the Kafka consumer group of the deployment's runners.
func (d Deployment) Group() string { return "diplip." + d.Function + "." + d.Stream }

// Duration is a time.Duration written as "2s" in JSON.
type Duration time.Duration

// MarshalText writes the duration as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses the duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like 2s", b)
	}
	*d = Duration(v)
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName checks a stream or function name: it becomes part of Kafka topic names, NATS
// subjects and KV keys, so it is kept to lowercase letters, digits and '-'.
func ValidName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s name %q: want 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// Validate checks a deployment's fields, naming each wrong one.
func (d *Deployment) Validate() error {
	var errs []string
	if err := ValidName("function", d.Function); err != nil {
		errs = append(errs, err.Error())
	}
	if err := ValidName("stream", d.Stream); err != nil {
		errs = append(errs, err.Error())
	}
	if d.Min < 0 || d.Max < 1 || d.Min > d.Max || d.Max > 64 {
		errs = append(errs, fmt.Sprintf("min %d, max %d: want 0 ≤ min ≤ max, 1 ≤ max ≤ 64", d.Min, d.Max))
	}
	if d.Batch < 1 || d.Batch > 256 {
		errs = append(errs, fmt.Sprintf("batch %d: want 1..256", d.Batch))
	}
	if !validDevice(d.Device) {
		errs = append(errs, fmt.Sprintf("device %q: want cpu, any or cuda:N", d.Device))
	}
	if !slices.Contains([]string{"live", "replay"}, d.Policy) {
		errs = append(errs, fmt.Sprintf("policy %q: want live or replay", d.Policy))
	}
	if d.MaxAge < 0 {
		errs = append(errs, "max_age must not be negative")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func validDevice(d string) bool {
	if d == "cpu" || d == "any" {
		return true
	}
	n, ok := strings.CutPrefix(d, "cuda:")
	if !ok || n == "" {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Store reads and writes the records.
type Store struct {
	streams, functions, deployments, cameras jetstream.KeyValue
}

// Open creates (or opens) the buckets on nc's JetStream, on file storage.
func Open(ctx context.Context, nc *nats.Conn) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	bucket := func(name, desc string) (jetstream.KeyValue, error) {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: desc, Storage: jetstream.FileStorage, History: 5,
		})
		if err != nil {
			return nil, fmt.Errorf("control plane bucket %s: %w", name, err)
		}
		return kv, nil
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
func (s *Store) CreateStream(ctx context.Context, st Stream) error {
	return create(ctx, s.streams, st.Name, st)
}

// Stream returns the stream called name.
func (s *Store) Stream(ctx context.Context, name string) (Stream, error) {
	v, _, err := get[Stream](ctx, s.streams, name)
	return v, err
}

// Streams lists all streams by name.
func (s *Store) Streams(ctx context.Context) ([]Stream, error) { return list[Stream](ctx, s.streams) }

// DeleteStream removes the stream record.
func (s *Store) DeleteStream(ctx context.Context, name string) error {
	return del(ctx, s.streams, name)
}

// CreateCamera records a new camera; ErrExists if one with that id exists.
func (s *Store) CreateCamera(ctx context.Context, c Camera) error {
	return create(ctx, s.cameras, c.ID, c)
}

// Cameras lists all cameras by id.
func (s *Store) Cameras(ctx context.Context) ([]Camera, error) { return list[Camera](ctx, s.cameras) }

// DeleteCamera removes the camera record.
func (s *Store) DeleteCamera(ctx context.Context, id string) error { return del(ctx, s.cameras, id) }

// PutFunction records (or replaces) a function.
func (s *Store) PutFunction(ctx context.Context, f Function) error {
	return put(ctx, s.functions, f.Name, f)
}

// Function returns the function called name.
func (s *Store) Function(ctx context.Context, name string) (Function, error) {
	v, _, err := get[Function](ctx, s.functions, name)
	return v, err
}

// Functions lists all functions by name.
func (s *Store) Functions(ctx context.Context) ([]Function, error) {
	return list[Function](ctx, s.functions)
}

// DeleteFunction removes the function record.
func (s *Store) DeleteFunction(ctx context.Context, name string) error {
	return del(ctx, s.functions, name)
}

// PutDeployment creates a deployment or updates it in place (a rolling update), with
// compare-and-set so that two concurrent updates cannot both win. It returns the stored
// record, whose Generation tells the one from the other.
func (s *Store) PutDeployment(ctx context.Context, d Deployment) (Deployment, error) {
	for {
		old, rev, err := get[Deployment](ctx, s.deployments, d.Key())
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
func (s *Store) Deployment(ctx context.Context, function, stream string) (Deployment, error) {
	v, _, err := get[Deployment](ctx, s.deployments, DeploymentKey(function, stream))
	return v, err
}

// Deployments lists all deployments by key.
func (s *Store) Deployments(ctx context.Context) ([]Deployment, error) {
	return list[Deployment](ctx, s.deployments)
}

// DeleteDeployment removes the deployment of function on stream.
func (s *Store) DeleteDeployment(ctx context.Context, function, stream string) error {
	return del(ctx, s.deployments, DeploymentKey(function, stream))
}

// WatchDeployments streams every change to deployments, starting with the current ones.
// A deleted deployment arrives with Deleted set. The watch ends when ctx does.
func (s *Store) WatchDeployments(ctx context.Context) (<-chan DeploymentChange, error) {
	w, err := s.deployments.WatchAll(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan DeploymentChange)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // end of the initial values
					continue
				}
				c := DeploymentChange{Key: e.Key()}
				if e.Operation() != jetstream.KeyValuePut {
					c.Deleted = true
				} else if err := json.Unmarshal(e.Value(), &c.Deployment); err != nil {
					continue
				}
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// DeploymentChange is one change seen by WatchDeployments.
type DeploymentChange struct {
	Key        string
	Deleted    bool
	Deployment Deployment
}
