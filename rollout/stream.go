package rollout

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// StreamRequest is a stream to create.
type StreamRequest struct {
	Name       string
	Partitions int32
	// Replication defaults to min(3, brokers).
	Replication int16
	// RetentionMs and RetentionBytes, when set, bound what the stream's topics keep.
	RetentionMs, RetentionBytes int64
}

// CreateStream creates the stream's frames and results topics, then records the stream.
// If a step fails, what was created is removed again.
func (s *Service) CreateStream(ctx context.Context, req StreamRequest) (wire.Stream, error) {
	if err := wire.ValidName("stream", req.Name); err != nil {
		return wire.Stream{}, errorf(Invalid, "%w", err)
	}
	if req.Partitions < 1 || req.Partitions > 1024 {
		return wire.Stream{}, errorf(Invalid, "partitions %d: want 1..1024", req.Partitions)
	}
	if req.RetentionMs < 0 || req.RetentionBytes < 0 {
		return wire.Stream{}, errorf(Invalid, "retention must not be negative")
	}
	if _, err := s.cfg.Store.Stream(ctx, req.Name); err == nil {
		return wire.Stream{}, errorf(Conflict, "stream %q already exists", req.Name)
	}
	rf := req.Replication
	if rf == 0 {
		n, err := s.cfg.Kafka.BrokerCount()
		if err != nil {
			return wire.Stream{}, errorf(Unavailable, "kafka: describing the cluster: %w", err)
		}
		rf = int16(min(3, n))
	}
	st := wire.Stream{
		Name: req.Name, Topic: "diplip.frames." + req.Name, ResultsTopic: "diplip.results." + req.Name,
		Partitions: req.Partitions, Replication: rf, RetentionMs: req.RetentionMs, RetentionBytes: req.RetentionBytes,
		Created: time.Now().UTC(),
	}
	if err := s.cfg.Kafka.CreateTopics([]kafkaclient.TopicSpec{topicSpec(st, st.Topic), topicSpec(st, st.ResultsTopic)}); err != nil {
		return wire.Stream{}, errorf(Upstream, "kafka: %w", err)
	}
	if err := s.cfg.Store.CreateStream(ctx, st); err != nil {
		if err := s.cfg.Kafka.DeleteTopics(st.Topic, st.ResultsTopic); err != nil {
			s.log.Warn("could not remove topics after a failed stream create", "stream", st.Name, "err", err)
		}
		if errors.Is(err, controlplane.ErrExists) {
			return wire.Stream{}, errorf(Conflict, "stream %q already exists", req.Name)
		}
		return wire.Stream{}, err
	}
	return st, nil
}

// DeleteStream removes a stream that no deployment or camera uses: its topics (the
// shadow results topic too), then its record.
func (s *Service) DeleteStream(ctx context.Context, name string) error {
	st, err := s.Stream(ctx, name)
	if err != nil {
		return err
	}
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return err
	}
	for _, d := range deps {
		if d.Stream != st.Name {
			continue
		}
		switch d.Role {
		case wire.RoleReplay:
			return errorf(Conflict, "stream %q has deployment %s (a replay); remove it first with: diplip replay rm %s",
				st.Name, d.Key(), d.ReplayName())
		case wire.RoleShadow:
			return errorf(Conflict, "stream %q has deployment %s (a shadow); remove it first with: diplip fn undeploy %s --stream %s --shadow",
				st.Name, d.Key(), d.Function, d.Stream)
		case wire.RoleAfter:
			return errorf(Conflict, "stream %q has deployment %s (a second stage); remove it first with: diplip fn undeploy %s --stream %s --after %s",
				st.Name, d.Key(), d.Function, d.Stream, d.AfterName())
		}
		return errorf(Conflict, "stream %q has deployment %s; remove it first with: diplip fn undeploy %s --stream %s",
			st.Name, d.Key(), d.Function, d.Stream)
	}
	cams, err := s.cfg.Store.Cameras(ctx)
	if err != nil {
		return err
	}
	for _, c := range cams {
		if c.Stream == st.Name {
			return errorf(Conflict, "stream %q has camera %s; remove it first with: diplip camera rm %s", st.Name, c.ID, c.ID)
		}
	}
	// The record goes last: while a topic deletion fails, the stream stays listed and the
	// delete can be retried. A shadow's results topic outlives its shadow (see
	// docs/replay.md); it goes with the stream.
	if err := s.cfg.Kafka.DeleteTopics(st.Topic, st.ResultsTopic, wire.ShadowResultsTopic(st.Name)); err != nil {
		return errorf(Upstream, "kafka: %w", err)
	}
	return s.cfg.Store.DeleteStream(ctx, st.Name)
}

// topicSpec is a topic named name of st's shape: its partitions, replication and
// retention.
func topicSpec(st wire.Stream, name string) kafkaclient.TopicSpec {
	cfg := map[string]*string{}
	if st.RetentionMs > 0 {
		cfg["retention.ms"] = ptr(strconv.FormatInt(st.RetentionMs, 10))
	}
	if st.RetentionBytes > 0 {
		cfg["retention.bytes"] = ptr(strconv.FormatInt(st.RetentionBytes, 10))
	}
	return kafkaclient.TopicSpec{Name: name, Partitions: st.Partitions, Replication: st.Replication, Config: cfg}
}

func ptr[T any](v T) *T { return &v }
