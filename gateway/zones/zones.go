// Package zones is what /v1/zones does, in the API's terms: the counting zones (lines and
// areas) of tracking deployments, checked (name, geometry, a camera of the stream) and kept
// in the control plane's zones bucket. It has no HTTP in it: the gateway routes and decodes,
// and turns its errors (rollout's kinds) into statuses in statusOf like every other.
package zones

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions/track"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// Service adds, lists and removes zones. Every field is required.
type Service struct {
	Zones   *controlplane.Zones
	Store   *controlplane.Store // the cameras recorded on a stream
	Kafka   *kafkaclient.Client // the cameras that pushed to a stream
	Rollout *rollout.Service    // the streams
}

func kindErr(k rollout.Kind, format string, args ...any) error {
	return &rollout.Error{Kind: k, Err: fmt.Errorf(format, args...)}
}

// Add checks req and records its zone: Invalid for a bad name, camera or geometry,
// NotFound for a stream or camera that is not there, Conflict for a name the camera has.
func (s *Service) Add(ctx context.Context, req api.ZoneRequest) (api.Zone, error) {
	if err := wire.ValidCamera(req.Camera); err != nil {
		return api.Zone{}, kindErr(rollout.Invalid, "%v", err)
	}
	if err := wire.ValidName("zone", req.Name); err != nil {
		return api.Zone{}, kindErr(rollout.Invalid, "%v", err)
	}
	tz := track.Zone{Name: req.Name}
	for _, p := range req.Line {
		tz.Line = append(tz.Line, track.Point{X: p.X, Y: p.Y})
	}
	for _, p := range req.Polygon {
		tz.Polygon = append(tz.Polygon, track.Point{X: p.X, Y: p.Y})
	}
	if len(req.Line) == 0 && len(req.Polygon) == 0 {
		return api.Zone{}, kindErr(rollout.Invalid, "zone %q: give a line (2 points) or a polygon (3 or more)", req.Name)
	}
	if err := tz.Validate(); err != nil {
		return api.Zone{}, kindErr(rollout.Invalid, "%v", err)
	}
	st, err := s.Rollout.Stream(ctx, req.Stream)
	if err != nil {
		return api.Zone{}, err
	}
	if err := ingest.CameraOnStream(ctx, s.Store, s.Kafka, st, req.Camera); err != nil {
		return api.Zone{}, err
	}
	z := wire.Zone{Stream: req.Stream, Camera: req.Camera, Name: req.Name, Created: time.Now().UTC()}
	for _, p := range req.Line {
		z.Line = append(z.Line, wire.Point(p))
	}
	for _, p := range req.Polygon {
		z.Polygon = append(z.Polygon, wire.Point(p))
	}
	if err := s.Zones.Create(ctx, z); errors.Is(err, controlplane.ErrExists) {
		return api.Zone{}, kindErr(rollout.Conflict, "camera %s of stream %s has a zone %q; remove it first with: diplip zone rm %s --camera %s --name %s",
			z.Camera, z.Stream, z.Name, z.Stream, z.Camera, z.Name)
	} else if err != nil {
		return api.Zone{}, err
	}
	return apiZone(z), nil
}

// List returns the zones of stream, or of every stream when it is empty.
func (s *Service) List(ctx context.Context, stream string) ([]api.Zone, error) {
	list, err := s.Zones.List(ctx, stream)
	if err != nil {
		return nil, err
	}
	out := make([]api.Zone, len(list))
	for i, z := range list {
		out[i] = apiZone(z)
	}
	return out, nil
}

// Remove deletes a camera's zone: NotFound when it has none of that name.
func (s *Service) Remove(ctx context.Context, stream, camera, name string) error {
	if err := s.Zones.Delete(ctx, stream, camera, name); errors.Is(err, controlplane.ErrNotFound) {
		return kindErr(rollout.NotFound, "no zone %q on camera %s of stream %s (see: diplip zone ls %s)", name, camera, stream, stream)
	} else if err != nil {
		return err
	}
	return nil
}

func apiZone(z wire.Zone) api.Zone {
	out := api.Zone{Stream: z.Stream, Camera: z.Camera, Name: z.Name, Created: z.Created}
	for _, p := range z.Line {
		out.Line = append(out.Line, api.Point(p))
	}
	for _, p := range z.Polygon {
		out.Polygon = append(out.Polygon, api.Point(p))
	}
	return out
}
