package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// deployShadow records fn as the shadow of the primary deployment of the same function on
// st: its own consumer group (starting at the stream's end when it is new) and its own
// results topic. Nothing of the primary changes, and the function record stays the
// primary's (promote moves it).
func (s *Server) deployShadow(w http.ResponseWriter, r *http.Request, req api.DeployRequest, st wire.Stream, fn wire.Function) error {
	ctx := r.Context()
	primary, err := s.cfg.Store.Deployment(ctx, fn.Name, st.Name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return errorf(http.StatusBadRequest, "stream %q has no primary deployment of %s to shadow; deploy one first with: diplip fn deploy REF --stream %s",
			st.Name, fn.Name, st.Name)
	}
	if err != nil {
		return err
	}
	if other, err := s.cfg.Store.Shadow(ctx, st.Name); err == nil && other.Function != fn.Name {
		return errorf(http.StatusConflict, "stream %q already has a shadow of %s; remove it first with: diplip fn undeploy %s --stream %s --shadow",
			st.Name, other.Function, other.Function, st.Name)
	}
	if req.From != "" {
		return errorf(http.StatusBadRequest, "from: a shadow runs next to the live primary; to run over recorded frames use: diplip replay %s --fn REF --from TIME", st.Name)
	}
	// The primary's policy unless the request names one: the two should see the same frames.
	if req.Policy == "" {
		req.Policy = string(primary.Policy)
		if req.MaxAge == "" && primary.MaxAge > 0 {
			req.MaxAge = time.Duration(primary.MaxAge).String()
		}
	}
	if req.Delivery == "" {
		req.Delivery = string(primary.Delivery)
	}
	var spec functions.Spec
	if err := json.Unmarshal(fn.Spec, &spec); err != nil {
		return err
	}
	d, _, err := deploymentFor(req, fn, spec)
	if err != nil {
		return err
	}
	if err := s.checkDelivery(d); err != nil {
		return err
	}
	d.Role = wire.RoleShadow
	old, err := s.cfg.Store.DeploymentByKey(ctx, d.Key())
	fresh := errors.Is(err, controlplane.ErrNotFound)
	switch {
	case err != nil && !fresh:
		return err
	case fresh:
		if d.StartAt, err = s.startShadow(st, d); err != nil {
			return err
		}
	default:
		d.StartAt = old.StartAt // an update of the shadow compares from where it began
	}
	stored, err := s.cfg.Store.PutDeployment(ctx, d)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if stored.Generation > 1 {
		status = http.StatusOK
	}
	writeJSON(w, status, apiDeployment(stored))
	return nil
}

// startShadow makes the shadow's results topic (when missing) and commits its group at the
// stream's end offsets, which it returns.
func (s *Server) startShadow(st wire.Stream, d wire.Deployment) (map[int32]int64, error) {
	topic := d.ResultsTopic(st)
	exists, err := s.cfg.Kafka.TopicExists(topic)
	if err != nil {
		return nil, errorf(http.StatusBadGateway, "kafka: %v", err)
	}
	if !exists {
		if err := s.cfg.Kafka.CreateTopics([]kafkaclient.TopicSpec{resultsTopicSpec(st, topic)}); err != nil {
			return nil, errorf(http.StatusBadGateway, "kafka: %v", err)
		}
	}
	_, end, err := s.cfg.Kafka.Offsets(st.Topic)
	if err == nil {
		err = s.cfg.Kafka.CommitGroupAt(d.Group(), st.Topic, end)
	}
	if err != nil {
		return nil, errorf(http.StatusBadGateway, "kafka: setting where shadow %s starts: %v", d.Key(), err)
	}
	return end, nil
}

// resultsTopicSpec is a results topic of st's shape: its partitions, replication and
// retention.
func resultsTopicSpec(st wire.Stream, name string) kafkaclient.TopicSpec {
	cfg := map[string]*string{}
	if st.RetentionMs > 0 {
		cfg["retention.ms"] = ptr(strconv.FormatInt(st.RetentionMs, 10))
	}
	if st.RetentionBytes > 0 {
		cfg["retention.bytes"] = ptr(strconv.FormatInt(st.RetentionBytes, 10))
	}
	return kafkaclient.TopicSpec{Name: name, Partitions: st.Partitions, Replication: st.Replication, Config: cfg}
}

// promote serves POST /v1/streams/{stream}/promote: the shadow becomes the primary (a
// rolling update of the primary to the shadow's digest) and the shadow deployment goes.
// The old digest's results stay on the stream's results topic; the shadow's stay on its own.
func (s *Server) promote(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	st, err := s.stream(ctx, r.PathValue("stream"))
	if err != nil {
		return err
	}
	sh, err := s.cfg.Store.Shadow(ctx, st.Name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return errorf(http.StatusBadRequest, "stream %q has no shadow to promote; deploy one with: diplip fn deploy REF --stream %s --shadow", st.Name, st.Name)
	}
	if err != nil {
		return err
	}
	primary, err := s.cfg.Store.Deployment(ctx, sh.Function, st.Name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return errorf(http.StatusBadRequest, "stream %q has no primary deployment of %s any more; deploy the shadow's image as the primary with: diplip fn deploy %s --stream %s",
			st.Name, sh.Function, sh.Digest, st.Name)
	}
	if err != nil {
		return err
	}
	primary.Digest, primary.Batch, primary.Lanes, primary.Updated = sh.Digest, sh.Batch, sh.Lanes, time.Now().UTC()
	// The function record follows the primary: read the shadow's image again by digest (its
	// spec and size), or at least move the digest when the registry does not answer.
	fn, err := s.resolveFunction(ctx, sh.Digest, false)
	if err != nil {
		if fn, err = s.cfg.Store.Function(ctx, sh.Function); err != nil && !errors.Is(err, controlplane.ErrNotFound) {
			return err
		}
		fn.Name, fn.Digest, fn.Ref = sh.Function, sh.Digest, sh.Digest
	}
	if err := s.cfg.Store.PutFunction(ctx, fn); err != nil {
		return err
	}
	stored, err := s.cfg.Store.PutDeployment(ctx, primary)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteDeploymentKey(context.WithoutCancel(ctx), sh.Key()); err != nil && !errors.Is(err, controlplane.ErrNotFound) {
		return err
	}
	metrics.ForgetShadow(st.Name)
	writeJSON(w, http.StatusOK, apiDeployment(stored))
	return nil
}
