package gateway

import (
	"net/http"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/wire"
)

// Pulled cameras are run by the ingest.Supervisor in Config.Cameras; these handlers only
// translate.

func (s *Server) addCamera(w http.ResponseWriter, r *http.Request) error {
	var req api.CameraRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	rec := wire.Camera{ID: req.ID, Stream: req.Stream, URL: req.URL, FPS: req.FPS, Loop: req.Loop, Created: time.Now().UTC()}
	if err := s.cfg.Cameras.Add(r.Context(), rec); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiCamera(rec))
	return nil
}

func (s *Server) listCameras(w http.ResponseWriter, r *http.Request) error {
	recs, err := s.cfg.Store.Cameras(r.Context())
	if err != nil {
		return err
	}
	out := []api.CameraStatus{}
	for _, c := range recs {
		out = append(out, api.CameraStatus{Camera: apiCamera(c), Health: s.cfg.Cameras.Health(c.ID)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// removeCamera stops the camera and deletes its record, and with them its tracks and
// counts in the tracking deployments of its stream.
func (s *Server) removeCamera(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	cam, err := s.cfg.Cameras.Remove(r.Context(), id)
	if err != nil {
		return err
	}
	s.cfg.Rollout.ForgetTrackerState(r.Context(), cam.Stream, id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
