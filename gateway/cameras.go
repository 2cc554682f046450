package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/wire"
)

// OpenSourceFunc opens a camera source for a URL (ingest/video provides one). It is a
// parameter because video decoding is cgo the gateway package keeps out.
type OpenSourceFunc func(url string, loop bool) (ingest.Source, error)

// cameras runs the pulled cameras recorded in the control plane. Adding or removing one
// never restarts another.
type cameras struct {
	mu      sync.Mutex
	running map[string]*ingest.Camera
}

// CameraStatus is a camera record with its health, as GET /v1/cameras answers.
type CameraStatus struct {
	controlplane.Camera
	Health ingest.CameraHealth `json:"health"`
}

// CameraRequest is the body of POST /v1/cameras.
type CameraRequest struct {
	ID     string  `json:"id"`
	Stream string  `json:"stream"`
	URL    string  `json:"url"`
	FPS    float64 `json:"fps,omitempty"`
	Loop   bool    `json:"loop,omitempty"`
}

func (s *Server) startCamera(ctx context.Context, c controlplane.Camera) error {
	st, err := s.stream(ctx, c.Stream)
	if err != nil {
		return err
	}
	src, err := s.openSource(c.URL, c.Loop)
	if err != nil {
		return errorf(http.StatusBadRequest, "camera %s: %v", c.ID, err)
	}
	cam, err := ingest.StartCamera(ingest.CameraConfig{ID: c.ID, Stream: c.Stream, Topic: st.Topic, FPS: c.FPS, Source: src,
		Producer: s.producer, Logger: s.log})
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	s.cams.mu.Lock()
	s.cams.running[c.ID] = cam
	s.cams.mu.Unlock()
	return nil
}

// ResumeCameras starts every recorded camera; a gateway restart calls it.
func (s *Server) ResumeCameras(ctx context.Context) error {
	if s.openSource == nil {
		return nil
	}
	recs, err := s.store.Cameras(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range recs {
		if err := s.startCamera(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StopCameras stops every running camera, storing what they have buffered.
func (s *Server) StopCameras() {
	s.cams.mu.Lock()
	running := s.cams.running
	s.cams.running = map[string]*ingest.Camera{}
	s.cams.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range running {
		wg.Go(c.Stop)
	}
	wg.Wait()
}

func (s *Server) addCamera(w http.ResponseWriter, r *http.Request) error {
	if s.openSource == nil {
		return errorf(http.StatusNotImplemented, "this gateway has no video support (it was built without OpenCV): push frames instead")
	}
	var req CameraRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := wire.ValidCamera(req.ID); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if req.FPS < 0 || req.FPS > 120 {
		return errorf(http.StatusBadRequest, "fps %v: want 0 (every frame) to 120", req.FPS)
	}
	if req.URL == "" || strings.ContainsAny(req.URL, "\n\r") {
		return errorf(http.StatusBadRequest, "url: required (rtsp://, http(s):// or a file path)")
	}
	if _, err := s.stream(r.Context(), req.Stream); err != nil {
		return err
	}
	rec := controlplane.Camera{ID: req.ID, Stream: req.Stream, URL: req.URL, FPS: req.FPS, Loop: req.Loop, Created: time.Now().UTC()}
	if err := s.store.CreateCamera(r.Context(), rec); err != nil {
		if errors.Is(err, controlplane.ErrExists) {
			return errorf(http.StatusConflict, "camera %q already exists; remove it first with: diplip camera rm %s", req.ID, req.ID)
		}
		return err
	}
	if err := s.startCamera(r.Context(), rec); err != nil {
		_ = s.store.DeleteCamera(context.Background(), rec.ID) // nothing half-done
		return err
	}
	writeJSON(w, http.StatusCreated, rec)
	return nil
}

func (s *Server) listCameras(w http.ResponseWriter, r *http.Request) error {
	recs, err := s.store.Cameras(r.Context())
	if err != nil {
		return err
	}
	out := []CameraStatus{}
	s.cams.mu.Lock()
	for _, c := range recs {
		st := CameraStatus{Camera: c, Health: ingest.CameraHealth{ID: c.ID, Stream: c.Stream}}
		if cam, ok := s.cams.running[c.ID]; ok {
			st.Health = cam.Health()
		}
		out = append(out, st)
	}
	s.cams.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) removeCamera(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.store.DeleteCamera(r.Context(), id); errors.Is(err, controlplane.ErrNotFound) {
		return errorf(http.StatusNotFound, "camera %q not found (see: diplip camera ls)", id)
	} else if err != nil {
		return err
	}
	s.cams.mu.Lock()
	cam := s.cams.running[id]
	delete(s.cams.running, id)
	s.cams.mu.Unlock()
	if cam != nil {
		cam.Stop()
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
