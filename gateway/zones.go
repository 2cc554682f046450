package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions/track"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/wire"
)

// zoneRoutes serves the zones of tracking deployments: /v1/zones.
func (s *Server) zoneRoutes() {
	guard := func(h func(http.ResponseWriter, *http.Request) error) http.Handler {
		return requireToken(s.cfg.Token, s.handler(h))
	}
	s.mux.Handle("GET /v1/zones", guard(s.listZones))
	s.mux.Handle("POST /v1/zones", guard(s.addZone))
	s.mux.Handle("DELETE /v1/zones/{stream}/{camera}/{name}", guard(s.removeZone))
}

func (s *Server) zones() (*controlplane.Zones, error) {
	if s.cfg.Zones == nil {
		return nil, errorf(http.StatusNotImplemented, "this gateway has no zones store")
	}
	return s.cfg.Zones, nil
}

func (s *Server) addZone(w http.ResponseWriter, r *http.Request) error {
	zs, err := s.zones()
	if err != nil {
		return err
	}
	var req api.ZoneRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := wire.ValidCamera(req.Camera); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err := wire.ValidName("zone", req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	tz := track.Zone{Name: req.Name}
	for _, p := range req.Line {
		tz.Line = append(tz.Line, track.Point{X: p.X, Y: p.Y})
	}
	for _, p := range req.Polygon {
		tz.Polygon = append(tz.Polygon, track.Point{X: p.X, Y: p.Y})
	}
	if len(req.Line) == 0 && len(req.Polygon) == 0 {
		return errorf(http.StatusBadRequest, "zone %q: give a line (2 points) or a polygon (3 or more)", req.Name)
	}
	if err := tz.Validate(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	st, err := s.cfg.Rollout.Stream(r.Context(), req.Stream)
	if err != nil {
		return err
	}
	if err := ingest.CameraOnStream(r.Context(), s.cfg.Store, s.cfg.Kafka, st, req.Camera); err != nil {
		return err
	}
	z := wire.Zone{Stream: req.Stream, Camera: req.Camera, Name: req.Name, Created: time.Now().UTC()}
	for _, p := range req.Line {
		z.Line = append(z.Line, wire.Point(p))
	}
	for _, p := range req.Polygon {
		z.Polygon = append(z.Polygon, wire.Point(p))
	}
	if err := zs.Create(r.Context(), z); errors.Is(err, controlplane.ErrExists) {
		return errorf(http.StatusConflict, "camera %s of stream %s has a zone %q; remove it first with: diplip zone rm %s --camera %s --name %s",
			z.Camera, z.Stream, z.Name, z.Stream, z.Camera, z.Name)
	} else if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiZone(z))
	return nil
}

func (s *Server) listZones(w http.ResponseWriter, r *http.Request) error {
	zs, err := s.zones()
	if err != nil {
		return err
	}
	list, err := zs.List(r.Context(), r.URL.Query().Get("stream"))
	if err != nil {
		return err
	}
	out := make([]api.Zone, len(list))
	for i, z := range list {
		out[i] = apiZone(z)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) removeZone(w http.ResponseWriter, r *http.Request) error {
	zs, err := s.zones()
	if err != nil {
		return err
	}
	stream, camera, name := r.PathValue("stream"), r.PathValue("camera"), r.PathValue("name")
	if err := zs.Delete(r.Context(), stream, camera, name); errors.Is(err, controlplane.ErrNotFound) {
		return errorf(http.StatusNotFound, "no zone %q on camera %s of stream %s (see: diplip zone ls %s)", name, camera, stream, stream)
	} else if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
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
