package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

// Store is the control plane as rollout uses it; *controlplane.Store is one. Lookups
// return controlplane.ErrNotFound for what does not exist, creations ErrExists for what
// does.
type Store interface {
	Stream(ctx context.Context, name string) (wire.Stream, error)
	CreateStream(ctx context.Context, st wire.Stream) error
	DeleteStream(ctx context.Context, name string) error
	Cameras(ctx context.Context) ([]wire.Camera, error)

	Function(ctx context.Context, name string) (wire.Function, error)
	PutFunction(ctx context.Context, fn wire.Function) error
	DeleteFunction(ctx context.Context, name string) error

	Deployments(ctx context.Context) ([]wire.Deployment, error)
	Deployment(ctx context.Context, function, stream string) (wire.Deployment, error)
	DeploymentByKey(ctx context.Context, key string) (wire.Deployment, error)
	Shadow(ctx context.Context, stream string) (wire.Deployment, error)
	Replay(ctx context.Context, name string) (wire.Deployment, error)
	// PutDeployment stores d, counting its generation, and returns what it stored.
	PutDeployment(ctx context.Context, d wire.Deployment) (wire.Deployment, error)
	DeleteDeployment(ctx context.Context, function, stream string) error
	DeleteDeploymentKey(ctx context.Context, key string) error
}

// Kafka is the cluster as rollout uses it: topics, where consumer groups start, and what a
// topic holds. *kafkaclient.Client is one.
type Kafka interface {
	BrokerCount() (int, error)
	CheckTransactions() error
	CreateTopics(topics []kafkaclient.TopicSpec) error
	DeleteTopics(names ...string) error
	TopicExists(topic string) (bool, error)

	StartGroupAtEnd(group, topic string) error
	StartGroupAt(group, topic string, t time.Time) error
	CommitGroupAt(group, topic string, offsets map[int32]int64) error
	Committed(group, topic string) (map[int32]int64, error)
	DeleteGroup(group string) error

	RetentionWindow(ctx context.Context, topic string) (kafkaclient.Window, error)
	Offsets(topic string) (start, end map[int32]int64, err error)
	OffsetsAt(topic string, t time.Time) (map[int32]int64, error)
	// ReadRange reads committed records of one partition at offsets in [from, end).
	ReadRange(ctx context.Context, topic string, partition int32, from, end int64, fn func(*sarama.ConsumerMessage) error) error
}

// Producer writes one record and returns once Kafka has it; ingest.Producer is one.
type Producer interface {
	SendMessage(m *sarama.ProducerMessage) (partition int32, offset int64, err error)
}

// Config is what a Service works on.
type Config struct {
	// Store holds the records. Required.
	Store Store
	// Kafka is the cluster the streams are on. Required.
	Kafka Kafka
	// Producer writes tombstones into tracker-state topics. Required.
	Producer Producer
	// RegistryOptions are used to read function images from their registries.
	RegistryOptions []remote.Option
	Logger          *slog.Logger
}

// Service carries out the changes of a deployment's life, each checked whole before
// anything is made and undone when a step fails. It holds no goroutine; ShadowGauges is
// the one loop of this package.
type Service struct {
	cfg   Config
	log   *slog.Logger
	diffs shadowDiffs // the shadows' incremental diffs (diff.go)
}

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Kafka == nil || cfg.Producer == nil {
		return nil, errors.New("rollout: Config needs Store, Kafka and Producer")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "rollout")}, nil
}

// Stream is the stream called name; NotFound names the command that creates it.
func (s *Service) Stream(ctx context.Context, name string) (wire.Stream, error) {
	st, err := s.cfg.Store.Stream(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return st, errorf(NotFound, "stream %q not found; create it with: diplip stream create %s", name, name)
	}
	return st, err
}

// Function is the function record called name.
func (s *Service) Function(ctx context.Context, name string) (wire.Function, error) {
	fn, err := s.cfg.Store.Function(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return fn, errorf(NotFound, "function %q not found; deploy an image with: diplip fn deploy REF --stream S", name)
	}
	return fn, err
}

// Replay is the replay called name.
func (s *Service) Replay(ctx context.Context, name string) (wire.Deployment, error) {
	d, err := s.cfg.Store.Replay(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return d, errorf(NotFound, "replay %q not found (see: diplip replay ls)", name)
	}
	return d, err
}

// RegisterFunction resolves a function image and records it.
func (s *Service) RegisterFunction(ctx context.Context, ref string, insecure bool) (wire.Function, error) {
	fn, err := s.resolve(ctx, ref, insecure)
	if err != nil {
		return fn, err
	}
	return fn, s.cfg.Store.PutFunction(ctx, fn)
}

// DeleteFunction removes a function record that no deployment uses.
func (s *Service) DeleteFunction(ctx context.Context, name string) error {
	fn, err := s.Function(ctx, name)
	if err != nil {
		return err
	}
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return err
	}
	for _, d := range deps {
		if d.Function == fn.Name {
			return errorf(Conflict, "function %q is deployed on stream %q; remove that first with: diplip fn undeploy %s --stream %s",
				fn.Name, d.Stream, fn.Name, d.Stream)
		}
	}
	return s.cfg.Store.DeleteFunction(ctx, fn.Name)
}

// The registry answers that resolve tells apart (rollout speaks no HTTP of its own).
const (
	registryUnauthorized = 401
	registryForbidden    = 403
	registryNotFound     = 404
)

// resolve reads a function image's manifest and config from its registry (no layer
// download) and returns the record pinned to its digest.
func (s *Service) resolve(ctx context.Context, refStr string, insecure bool) (wire.Function, error) {
	var fn wire.Function
	ref, err := registry.ParseReference(refStr, insecure)
	if err != nil {
		return fn, errorf(Invalid, "%w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := registry.Inspect(ctx, ref, s.cfg.RegistryOptions...)
	var te *transport.Error
	switch {
	case errors.Is(err, registry.ErrNotFunction):
		return fn, errorf(Invalid, "%w", err)
	case errors.As(err, &te) && te.StatusCode == registryNotFound:
		return fn, errorf(NotFound, "function image %s not found in its registry; push it first with: diplip fn push %s", ref, ref)
	case errors.As(err, &te) && (te.StatusCode == registryUnauthorized || te.StatusCode == registryForbidden):
		return fn, errorf(Upstream, "the registry of %s refused the gateway's credentials (%w); log the gateway's host in to it (docker config)", ref, err)
	case err != nil:
		return fn, errorf(Upstream, "%w", err)
	}
	specJSON, _ := json.Marshal(info.Spec)
	return wire.Function{
		Name: info.Spec.Name, Ref: ref.String(), Digest: info.Digest.String(),
		Spec: specJSON, Size: info.Size, Created: time.Now().UTC(), Quantized: info.Quantized,
	}, nil
}

// plan is Plan for fn's stored spec, stamped now.
func plan(req Request, fn wire.Function) (wire.Deployment, time.Time, error) {
	var spec functions.Spec
	if err := json.Unmarshal(fn.Spec, &spec); err != nil {
		return wire.Deployment{}, time.Time{}, err
	}
	d, from, err := Plan(req, fn, spec)
	d.Updated = time.Now().UTC()
	return d, from, err
}
