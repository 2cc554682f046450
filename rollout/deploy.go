package rollout

import (
	"context"
	"errors"
	"time"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// Deploy resolves the image, checks the stream and the request against the function's
// spec, and records the function and then the deployment: a new one (Generation 1), or a
// rolling update when the function already runs on that stream (or has a shadow there,
// for Role shadow). A new deployment's consumer group is set where its policy starts.
func (s *Service) Deploy(ctx context.Context, req Request) (wire.Deployment, error) {
	if req.Ref == "" {
		return wire.Deployment{}, errorf(Invalid, "ref: required (a function image, e.g. 127.0.0.1:8080/fn/yolox-nano:v1)")
	}
	if req.Role == wire.RoleReplay {
		return wire.Deployment{}, errorf(Invalid, "role replay: a replay starts with: diplip replay STREAM --fn REF")
	}
	st, err := s.Stream(ctx, req.Stream)
	if err != nil {
		return wire.Deployment{}, err
	}
	fn, err := s.resolve(ctx, req.Ref, req.Insecure)
	if err != nil {
		return wire.Deployment{}, err
	}
	if req.Role == wire.RoleShadow && req.After != "" {
		return s.deployAfterShadow(ctx, req, st, fn)
	}
	if req.Role == wire.RoleShadow {
		return s.deployShadow(ctx, req, st, fn)
	}
	if req.After != "" {
		return s.deployAfter(ctx, req, st, fn)
	}
	d, from, err := plan(req, fn)
	if err != nil {
		return d, err
	}
	if err := s.checkDelivery(d); err != nil {
		return d, err
	}
	if err := s.cfg.Store.PutFunction(ctx, fn); err != nil {
		return d, err
	}
	stored, err := s.cfg.Store.PutDeployment(ctx, d)
	if err != nil || stored.Generation > 1 {
		return stored, err
	}
	// Where a new deployment starts: live at the stream's end (not its retained past),
	// replay at from or the earliest retained frame. A group that already committed (an
	// earlier deployment of the pair) keeps its place.
	switch {
	case stored.Policy == wire.PolicyLive:
		err = s.cfg.Kafka.StartGroupAtEnd(stored.Group(), st.Topic)
	case !from.IsZero():
		err = s.cfg.Kafka.StartGroupAt(stored.Group(), st.Topic, from)
	}
	if err != nil {
		_ = s.cfg.Store.DeleteDeployment(context.WithoutCancel(ctx), stored.Function, stored.Stream) // nothing half-done
		return stored, errorf(Upstream, "kafka: setting where deployment %s starts: %w", stored.Key(), err)
	}
	return stored, nil
}

// checkDelivery refuses an exactly-once deployment on a cluster that cannot run Kafka
// transactions, before anything is stored.
func (s *Service) checkDelivery(d wire.Deployment) error {
	if !d.Delivery.Transactional() {
		return nil
	}
	err := s.cfg.Kafka.CheckTransactions()
	switch {
	case errors.Is(err, kafkaclient.ErrNoTransactions):
		return errorf(Conflict, "delivery exactly-once: %w", err)
	case err != nil:
		return errorf(Upstream, "delivery exactly-once: asking kafka whether it runs transactions: %w", err)
	}
	return nil
}

// Undeploy removes the primary deployment of function on stream; a shadow of it must go
// (or be promoted) first.
func (s *Service) Undeploy(ctx context.Context, function, stream string) error {
	if sh, err := s.cfg.Store.DeploymentByKey(ctx, wire.ShadowKey(function, stream)); err == nil {
		return errorf(Conflict, "function %q has a shadow on stream %q (%s); promote it (diplip fn promote %s) or remove it first (diplip fn undeploy %s --stream %s --shadow)",
			function, stream, sh.Digest, stream, function, stream)
	}
	err := s.cfg.Store.DeleteDeployment(ctx, function, stream)
	if errors.Is(err, controlplane.ErrNotFound) {
		return errorf(NotFound, "function %q is not deployed on stream %q (see: diplip fn ls)", function, stream)
	}
	return err
}

// UndeployShadow removes the shadow of function on stream. A stream's shadow's results
// topic stays (until the stream goes), and its group is reset when a shadow is deployed
// again. The shadow of a second stage (the stream has one shadow at a time, so function
// and stream name it) goes with its results topic, as a second stage does.
func (s *Service) UndeployShadow(ctx context.Context, function, stream string) error {
	if sh, err := s.cfg.Store.Shadow(ctx, stream); err == nil && sh.Function == function && sh.SecondStage() {
		return s.removeSecondStage(ctx, sh)
	}
	err := s.cfg.Store.DeleteDeploymentKey(ctx, wire.ShadowKey(function, stream))
	if errors.Is(err, controlplane.ErrNotFound) {
		return errorf(NotFound, "function %q has no shadow on stream %q (see: diplip fn ls)", function, stream)
	}
	if err != nil {
		return err
	}
	metrics.ForgetShadow(stream)
	return nil
}

// deployShadow records fn as the shadow of the primary deployment of the same function on
// st: its own consumer group (starting at the stream's end when it is new) and its own
// results topic. Nothing of the primary changes, and the function record stays the
// primary's (Promote moves it).
func (s *Service) deployShadow(ctx context.Context, req Request, st wire.Stream, fn wire.Function) (wire.Deployment, error) {
	primary, err := s.cfg.Store.Deployment(ctx, fn.Name, st.Name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return wire.Deployment{}, errorf(Invalid, "stream %q has no primary deployment of %s to shadow; deploy one first with: diplip fn deploy REF --stream %s%s",
			st.Name, fn.Name, st.Name, s.secondStageHint(ctx, fn.Name, st.Name))
	}
	if err != nil {
		return primary, err
	}
	if other, err := s.cfg.Store.Shadow(ctx, st.Name); err == nil && other.Key() != wire.ShadowKey(fn.Name, st.Name) {
		return wire.Deployment{}, errorf(Conflict, "stream %q already has a shadow of %s (%s); remove it first with: diplip fn undeploy %s --stream %s --shadow",
			st.Name, other.Function, other.Key(), other.Function, st.Name)
	}
	if req.From != "" {
		return wire.Deployment{}, errorf(Invalid, "from: a shadow runs next to the live primary; to run over recorded frames use: diplip replay %s --fn REF --from TIME", st.Name)
	}
	return s.putShadow(ctx, req, primary, fn, func(d wire.Deployment) (map[int32]int64, error) { return s.startShadow(st, d) })
}

// putShadow plans and records a shadow of live (a primary, or a live second stage):
// live's policy, max age and delivery unless the request names them, since the two should
// see the same frames; a new shadow's group starts where start puts it, and an update of
// the shadow keeps comparing from where it began.
func (s *Service) putShadow(ctx context.Context, req Request, live wire.Deployment, fn wire.Function,
	start func(wire.Deployment) (map[int32]int64, error)) (wire.Deployment, error) {
	if req.Policy == "" {
		req.Policy = string(live.Policy)
		if req.MaxAge == "" && live.MaxAge > 0 {
			req.MaxAge = time.Duration(live.MaxAge).String()
		}
	}
	if req.Delivery == "" {
		req.Delivery = string(live.Delivery)
	}
	d, _, err := plan(req, fn)
	if err != nil {
		return d, err
	}
	if err := s.checkDelivery(d); err != nil {
		return d, err
	}
	old, err := s.cfg.Store.DeploymentByKey(ctx, d.Key())
	fresh := errors.Is(err, controlplane.ErrNotFound)
	switch {
	case err != nil && !fresh:
		return d, err
	case fresh:
		if d.StartAt, err = start(d); err != nil {
			return d, err
		}
	default:
		d.StartAt = old.StartAt
	}
	return s.cfg.Store.PutDeployment(ctx, d)
}

// startShadow makes the shadow's results topic (when missing) and commits its group at the
// stream's end offsets, which it returns.
func (s *Service) startShadow(st wire.Stream, d wire.Deployment) (map[int32]int64, error) {
	topic := d.ResultsTopic(st)
	exists, err := s.cfg.Kafka.TopicExists(topic)
	if err != nil {
		return nil, errorf(Upstream, "kafka: %w", err)
	}
	if !exists {
		if err := s.cfg.Kafka.CreateTopics([]kafkaclient.TopicSpec{topicSpec(st, topic)}); err != nil {
			return nil, errorf(Upstream, "kafka: %w", err)
		}
	}
	_, end, err := s.cfg.Kafka.Offsets(st.Topic)
	if err == nil {
		err = s.cfg.Kafka.CommitGroupAt(d.Group(), st.Topic, end)
	}
	if err != nil {
		return nil, errorf(Upstream, "kafka: setting where shadow %s starts: %w", d.Key(), err)
	}
	return end, nil
}

// Promote makes the stream's shadow its primary (a rolling update of the primary to the
// shadow's digest) and removes the shadow deployment. The old digest's results stay on
// the stream's results topic; the shadow's stay on its own. The shadow of a second stage
// becomes the live second stage the same way (promoteAfter).
func (s *Service) Promote(ctx context.Context, stream string) (wire.Deployment, error) {
	st, err := s.Stream(ctx, stream)
	if err != nil {
		return wire.Deployment{}, err
	}
	sh, err := s.cfg.Store.Shadow(ctx, st.Name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return wire.Deployment{}, errorf(Invalid, "stream %q has no shadow to promote; deploy one with: diplip fn deploy REF --stream %s --shadow", st.Name, st.Name)
	}
	if err != nil {
		return sh, err
	}
	if sh.SecondStage() {
		return s.promoteAfter(ctx, st, sh)
	}
	primary, err := s.cfg.Store.Deployment(ctx, sh.Function, st.Name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return wire.Deployment{}, errorf(Invalid, "stream %q has no primary deployment of %s any more; deploy the shadow's image as the primary with: diplip fn deploy %s --stream %s",
			st.Name, sh.Function, sh.Digest, st.Name)
	}
	if err != nil {
		return primary, err
	}
	primary.Digest, primary.Batch, primary.Lanes, primary.Updated = sh.Digest, sh.Batch, sh.Lanes, time.Now().UTC()
	return s.promoted(ctx, st, sh, primary)
}

// promoted stores target, the deployment the shadow sh is promoted to, after moving the
// function record to sh's image, then removes sh's record.
func (s *Service) promoted(ctx context.Context, st wire.Stream, sh, target wire.Deployment) (wire.Deployment, error) {
	// The function record follows the promoted deployment: read the shadow's image again
	// by digest (its spec and size), or at least move the digest when the registry does
	// not answer.
	fn, err := s.resolve(ctx, sh.Digest, false)
	if err != nil {
		if fn, err = s.cfg.Store.Function(ctx, sh.Function); err != nil && !errors.Is(err, controlplane.ErrNotFound) {
			return target, err
		}
		fn.Name, fn.Digest, fn.Ref = sh.Function, sh.Digest, sh.Digest
	}
	if err := s.cfg.Store.PutFunction(ctx, fn); err != nil {
		return target, err
	}
	stored, err := s.cfg.Store.PutDeployment(ctx, target)
	if err != nil {
		return stored, err
	}
	if err := s.cfg.Store.DeleteDeploymentKey(context.WithoutCancel(ctx), sh.Key()); err != nil && !errors.Is(err, controlplane.ErrNotFound) {
		return stored, err
	}
	metrics.ForgetShadow(st.Name)
	return stored, nil
}
