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

// A second stage's shadow is a shadow (role shadow) with After set: next to the live second
// stage of the same function after the same first stage, in a group of its own on the same
// input (the stream's results topic), writing to a results topic of its own
// (wire.AfterShadowResultsTopic). A stream has one shadow at a time, of a primary or of a
// second stage, so `fn diff S --shadow` and `fn promote S` name it by the stream alone.
// A second stage's results topic, live or shadow, is named by its chain and goes with it
// (undeploy, promote of a shadow, --cascade); a stream's own shadow topic stays until the
// stream goes.

// deployAfterShadow records fn as the shadow of the live second stage of the same function
// after req.After on st. It takes the live stage's selection (classes, min size, max per
// frame) when the request names none, and its policy, max age and delivery unless given,
// so the two see the same detections of the same frames. Nothing of the live stage
// changes, and the function record stays the live one's (Promote moves it).
func (s *Service) deployAfterShadow(ctx context.Context, req Request, st wire.Stream, fn wire.Function) (wire.Deployment, error) {
	live, err := s.cfg.Store.DeploymentByKey(ctx, wire.AfterKey(fn.Name, st.Name, req.After))
	if errors.Is(err, controlplane.ErrNotFound) {
		return wire.Deployment{}, errorf(Invalid, "stream %q has no second stage %s after %s to shadow; deploy one first with: diplip fn deploy REF --stream %s --after %s",
			st.Name, fn.Name, req.After, st.Name, req.After)
	}
	if err != nil {
		return live, err
	}
	if req.From != "" {
		return wire.Deployment{}, errorf(Invalid, "from: a shadow runs next to the live second stage; to run over stored results use: diplip replay %s --fn REF --after %s --from TIME", st.Name, req.After)
	}
	key := wire.AfterShadowKey(fn.Name, st.Name, req.After)
	if other, err := s.cfg.Store.Shadow(ctx, st.Name); err == nil && other.Key() != key {
		return wire.Deployment{}, errorf(Conflict, "stream %q already has a shadow (%s); a stream has one at a time: remove it first with: diplip fn undeploy %s --stream %s --shadow",
			st.Name, other.Key(), other.Function, st.Name)
	}
	if len(req.Classes) == 0 && req.MinSize == 0 && req.MaxPerFrame == 0 {
		req.Classes, req.MinSize, req.MaxPerFrame = live.After.Classes, live.After.MinSize, live.After.MaxPerFrame
	} else {
		first, err := s.cfg.Store.Deployment(ctx, req.After, st.Name)
		if err != nil {
			return wire.Deployment{}, err
		}
		if err := s.checkClasses(ctx, first, req.Classes); err != nil {
			return wire.Deployment{}, err
		}
	}
	return s.putShadow(ctx, req, live, fn, func(d wire.Deployment) (map[int32]int64, error) { return s.startAfterShadow(st, d) })
}

// secondStageHint is what a shadow request without after is told when function runs on
// stream as a second stage: how to shadow that.
func (s *Service) secondStageHint(ctx context.Context, function, stream string) string {
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return ""
	}
	for _, d := range deps {
		if d.Role == wire.RoleAfter && d.Function == function && d.Stream == stream {
			return " (" + function + " runs there as a second stage: to shadow it, add --after " + d.AfterName() + ")"
		}
	}
	return ""
}

// startAfterShadow makes a second stage's shadow's results topic (when missing) and
// commits its group at the end of its input, the stream's results topic. It returns the
// frames topic's end offsets, read after that: every frame from there on has its first
// stage's result after the group's start, so the diff compares the frames from there on.
func (s *Service) startAfterShadow(st wire.Stream, d wire.Deployment) (map[int32]int64, error) {
	topic := d.ResultsTopic(st)
	exists, err := s.cfg.Kafka.TopicExists(topic)
	if err == nil && !exists {
		err = s.cfg.Kafka.CreateTopics([]kafkaclient.TopicSpec{topicSpec(st, topic)})
	}
	var inputEnd, framesEnd map[int32]int64
	if err == nil {
		_, inputEnd, err = s.cfg.Kafka.Offsets(d.InputTopic(st))
	}
	if err == nil {
		err = s.cfg.Kafka.CommitGroupAt(d.Group(), d.InputTopic(st), inputEnd)
	}
	if err == nil {
		_, framesEnd, err = s.cfg.Kafka.Offsets(st.Topic)
	}
	if err != nil {
		return nil, errorf(Upstream, "kafka: starting shadow %s: %w", d.Key(), err)
	}
	return framesEnd, nil
}

// promoteAfter makes sh, the stream's shadow of a second stage, its live second stage: a
// rolling update of the live one to the shadow's digest, batch, lanes and selection. The
// shadow's record and results topic go.
func (s *Service) promoteAfter(ctx context.Context, st wire.Stream, sh wire.Deployment) (wire.Deployment, error) {
	live, err := s.cfg.Store.DeploymentByKey(ctx, wire.AfterKey(sh.Function, st.Name, sh.AfterName()))
	if errors.Is(err, controlplane.ErrNotFound) {
		return wire.Deployment{}, errorf(Invalid, "stream %q has no second stage %s after %s any more; deploy the shadow's image as one with: diplip fn deploy %s --stream %s --after %s",
			st.Name, sh.Function, sh.AfterName(), sh.Digest, st.Name, sh.AfterName())
	}
	if err != nil {
		return live, err
	}
	sel := *sh.After
	live.Digest, live.Batch, live.Lanes, live.After, live.Updated = sh.Digest, sh.Batch, sh.Lanes, &sel, time.Now().UTC()
	stored, err := s.promoted(ctx, st, sh, live)
	if err != nil {
		return stored, err
	}
	if err := s.cfg.Kafka.DeleteTopics(sh.ResultsTopic(st)); err != nil {
		s.log.Warn("promoted; could not remove the shadow's results topic", "topic", sh.ResultsTopic(st), "err", err)
	}
	return stored, nil
}

// Undeploying is what an undeploy removes besides the primary: After names a second stage
// (remove only it, the deployment of function after After); Cascade removes the second
// stages that run after the function (and their shadows) along with it.
type Undeploying struct {
	After   string
	Cascade bool
}

// UndeployChain removes the second stage function after u.After on stream, with its results
// topic, or (no After) the primary deployment of function, which is refused (Conflict)
// while second stages run after it, unless u.Cascade, which removes them (and their
// results topics) first. A second stage with a shadow is refused like a primary with one.
// A replay of a second stage does not hold its first stage: it reads stored results.
func (s *Service) UndeployChain(ctx context.Context, function, stream string, u Undeploying) error {
	if u.After != "" {
		if sh, err := s.cfg.Store.DeploymentByKey(ctx, wire.AfterShadowKey(function, stream, u.After)); err == nil {
			return errorf(Conflict, "%s after %s has a shadow on stream %q (%s); promote it (diplip fn promote %s) or remove it first (diplip fn undeploy %s --stream %s --shadow)",
				function, u.After, stream, sh.Digest, stream, function, stream)
		}
		d, err := s.cfg.Store.DeploymentByKey(ctx, wire.AfterKey(function, stream, u.After))
		if errors.Is(err, controlplane.ErrNotFound) {
			return errorf(NotFound, "function %q does not run after %s on stream %q (see: diplip fn ls)", function, u.After, stream)
		}
		if err != nil {
			return err
		}
		return s.removeSecondStage(ctx, d)
	}
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return err
	}
	var seconds []wire.Deployment
	for _, d := range deps {
		if d.SecondStage() && d.Role != wire.RoleReplay && d.Stream == stream && d.AfterName() == function {
			seconds = append(seconds, d)
		}
	}
	if len(seconds) > 0 && !u.Cascade {
		how := "--after " + function
		if seconds[0].Role == wire.RoleShadow {
			how = "--shadow"
		}
		return errorf(Conflict, "%s runs after %s on stream %q; remove it first (diplip fn undeploy %s --stream %s %s) or add --cascade",
			seconds[0].Function, function, stream, seconds[0].Function, stream, how)
	}
	_, err = s.cfg.Store.Deployment(ctx, function, stream)
	_, shadowErr := s.cfg.Store.DeploymentByKey(ctx, wire.ShadowKey(function, stream))
	if err != nil || shadowErr == nil {
		return s.Undeploy(ctx, function, stream) // its own answer: not found, a shadow, or the store's error
	}
	for _, d := range seconds {
		if err := s.removeSecondStage(ctx, d); err != nil {
			return err
		}
	}
	return s.Undeploy(ctx, function, stream)
}

// removeSecondStage removes a second stage (live or shadow): its record, then its results
// topic. Its runners leave when the scaler sees the record gone; its group stays (a new
// second stage of the same name starts where its policy says).
func (s *Service) removeSecondStage(ctx context.Context, d wire.Deployment) error {
	if err := s.cfg.Store.DeleteDeploymentKey(ctx, d.Key()); err != nil && !errors.Is(err, controlplane.ErrNotFound) {
		return err
	}
	if d.Role == wire.RoleShadow {
		metrics.ForgetShadow(d.Stream)
	}
	if err := s.cfg.Kafka.DeleteTopics(d.ResultsTopic(wire.Stream{Name: d.Stream})); err != nil {
		return errorf(Upstream, "kafka: %s is undeployed, but its results topic is not removed: %w (remove it with any Kafka tool)", d.Key(), err)
	}
	return nil
}
