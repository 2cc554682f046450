package rollout

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

// deployAfter records fn as a second stage after the primary deployment of req.After on
// st: its own consumer group on the stream's results topic (which the first stage writes
// to; it starts at that topic's end when new) and its own results topic, partitioned like
// the stream. A function after itself, or after a function that runs after it, is a
// cycle (Conflict); a first stage that is not deployed on st is NotFound, naming what is.
func (s *Service) deployAfter(ctx context.Context, req Request, st wire.Stream, fn wire.Function) (wire.Deployment, error) {
	if req.From != "" {
		return wire.Deployment{}, errorf(Invalid, "from: a second stage runs on its first stage's results as they come")
	}
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return wire.Deployment{}, err
	}
	for _, x := range deps {
		if x.Stream == st.Name && x.Role == wire.RoleAfter && x.Function == req.After && x.AfterName() == fn.Name {
			return wire.Deployment{}, errorf(Conflict, "after %s: a cycle: %s already runs after %s on stream %q", req.After, req.After, fn.Name, st.Name)
		}
	}
	if fn.Name == req.After {
		return wire.Deployment{}, errorf(Conflict, "after %s: a cycle: a function cannot run after itself", req.After)
	}
	first, err := firstStage(deps, st.Name, req.After)
	if err != nil {
		return wire.Deployment{}, err
	}
	if req.Delivery == "" {
		req.Delivery = string(first.Delivery)
	}
	d, _, err := plan(req, fn)
	if err != nil {
		return d, err
	}
	if err := s.checkClasses(ctx, first, req.Classes); err != nil {
		return d, err
	}
	if err := s.checkDelivery(d); err != nil {
		return d, err
	}
	if _, err := s.cfg.Store.DeploymentByKey(ctx, d.Key()); errors.Is(err, controlplane.ErrNotFound) {
		if err := s.startAfter(st, d); err != nil {
			return d, err
		}
	} else if err != nil {
		return d, err
	}
	if err := s.cfg.Store.PutFunction(ctx, fn); err != nil {
		return d, err
	}
	return s.cfg.Store.PutDeployment(ctx, d)
}

// firstStage is the primary deployment of function first on stream, among deps; NotFound
// names the functions that are deployed there.
func firstStage(deps []wire.Deployment, stream, first string) (wire.Deployment, error) {
	var there []string
	for _, x := range deps {
		if x.Stream != stream || x.Role != wire.RolePrimary {
			continue
		}
		if x.Function == first {
			return x, nil
		}
		there = append(there, x.Function)
	}
	what := "nothing"
	if len(there) > 0 {
		slices.Sort(there)
		what = strings.Join(there, ", ")
	}
	return wire.Deployment{}, errorf(NotFound, "after %s: function %q is not deployed on stream %q (deployed there: %s)", first, first, stream, what)
}

// startAfter makes a new second stage's results topic (when missing) and starts its
// group at the end of its input, the first stage's results.
func (s *Service) startAfter(st wire.Stream, d wire.Deployment) error {
	topic := d.ResultsTopic(st)
	exists, err := s.cfg.Kafka.TopicExists(topic)
	if err == nil && !exists {
		err = s.cfg.Kafka.CreateTopics([]kafkaclient.TopicSpec{topicSpec(st, topic)})
	}
	if err == nil {
		err = s.cfg.Kafka.StartGroupAtEnd(d.Group(), d.InputTopic(st))
	}
	if err != nil {
		return errorf(Upstream, "kafka: starting second stage %s: %w", d.Key(), err)
	}
	return nil
}

// checkClasses refuses classes that the first stage's labels file does not have (read
// from its image, by digest).
func (s *Service) checkClasses(ctx context.Context, first wire.Deployment, classes []string) error {
	if len(classes) == 0 {
		return nil
	}
	fn, err := s.cfg.Store.Function(ctx, first.Function)
	if err != nil {
		return err
	}
	var spec functions.Spec
	if err := json.Unmarshal(fn.Spec, &spec); err != nil {
		return err
	}
	if spec.Labels == "" {
		return errorf(Invalid, "classes: function %s has no labels file (its detections carry class ids only)", first.Function)
	}
	labels, err := s.labelsOf(ctx, first.Digest, spec.Labels)
	if err != nil {
		return errorf(Upstream, "reading the labels file %s of %s: %w", spec.Labels, first.Digest, err)
	}
	for _, c := range classes {
		if !slices.Contains(labels, c) {
			some := strings.Join(labels[:min(len(labels), 12)], ", ")
			if len(labels) > 12 {
				some += ", …"
			}
			return errorf(Invalid, "classes: %q is not a label of %s (its labels file %s has %d: %s)", c, first.Function, spec.Labels, len(labels), some)
		}
	}
	return nil
}

// labelsOf reads the labels file of a function image (its one layer) by digest.
func (s *Service) labelsOf(ctx context.Context, digest, file string) ([]string, error) {
	ref, err := registry.ParseReference(digest, false)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(ref, registry.RemoteOptions(ctx, s.cfg.RegistryOptions...)...)
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			if path.Clean(h.Name) != path.Clean(file) {
				continue
			}
			b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return nil, err
			}
			return functions.ParseLabels(string(b)), nil
		}
	}
	return nil, fmt.Errorf("the image has no %s", file)
}
