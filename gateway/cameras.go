package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/wire"
)

// OpenSourceFunc opens a camera source for a URL (ingest/video provides one). It is a
// parameter because video decoding is cgo the gateway package keeps out.
type OpenSourceFunc func(url string, loop bool) (ingest.Source, error)

// cameras runs the pulled cameras recorded in the control plane, each in a goroutine it
// owns. Adding or removing one never restarts another.
type cameras struct {
	s *Server

	// ops serializes adding and removing cameras (record and puller together), so a camera
	// removed while it is being added cannot be left running without its record.
	ops sync.Mutex

	mu      sync.Mutex
	ctx     context.Context // Run's; nil before Run and after stopAll
	running map[string]*runningCamera
}

type runningCamera struct {
	cam    *ingest.Camera
	cancel context.CancelFunc
	done   chan struct{}
}

func newCameras(s *Server) *cameras { return &cameras{s: s, running: map[string]*runningCamera{}} }

// start opens c's source and runs it until it ends, it is removed, or the server stops.
func (cs *cameras) start(ctx context.Context, c wire.Camera) error {
	s := cs.s
	st, err := s.stream(ctx, c.Stream)
	if err != nil {
		return err
	}
	url, err := s.cfg.Sources.Check(c.URL)
	if err != nil {
		return errorf(http.StatusBadRequest, "camera %s: %v", c.ID, err)
	}
	src, err := s.cfg.OpenSource(url, c.Loop)
	if err != nil {
		return errorf(http.StatusBadRequest, "camera %s: %v", c.ID, err)
	}
	cam, err := ingest.NewCamera(ingest.CameraConfig{ID: c.ID, Stream: c.Stream, Topic: st.Topic, FPS: c.FPS, Source: src,
		Producer: s.producer, Logger: s.log})
	if err != nil {
		src.Close()
		return errorf(http.StatusBadRequest, "%v", err)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.ctx == nil {
		src.Close()
		return errorf(http.StatusServiceUnavailable, "the gateway is stopping")
	}
	if old := cs.running[c.ID]; old != nil { // never two pullers for one id
		old.cancel()
	}
	cctx, cancel := context.WithCancel(cs.ctx)
	rc := &runningCamera{cam: cam, cancel: cancel, done: make(chan struct{})}
	cs.running[c.ID] = rc
	go func() { // owned: stop and stopAll wait for done
		defer close(rc.done)
		if err := cam.Run(cctx); err != nil {
			s.log.Warn("camera source did not close cleanly", "camera", c.ID, "err", err)
		}
	}()
	return nil
}

// resume starts every recorded camera; a gateway (re)start calls it.
func (cs *cameras) resume(ctx context.Context) error {
	cs.mu.Lock()
	cs.ctx = ctx
	cs.mu.Unlock()
	if cs.s.cfg.OpenSource == nil {
		return nil
	}
	recs, err := cs.s.cfg.Store.Cameras(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range recs {
		if err := cs.start(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stop ends camera id, if it runs, and waits until its buffered frames are stored.
func (cs *cameras) stop(id string) {
	cs.mu.Lock()
	rc := cs.running[id]
	delete(cs.running, id)
	cs.mu.Unlock()
	if rc != nil {
		rc.cancel()
		<-rc.done
	}
}

// stopAll stops every camera, storing what they buffered; no camera starts after it.
func (cs *cameras) stopAll() {
	cs.mu.Lock()
	running := cs.running
	cs.running, cs.ctx = map[string]*runningCamera{}, nil
	cs.mu.Unlock()
	for _, rc := range running {
		rc.cancel()
	}
	for _, rc := range running {
		<-rc.done
	}
}

func (cs *cameras) health(c wire.Camera) api.CameraHealth {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if rc, ok := cs.running[c.ID]; ok {
		return rc.cam.Health()
	}
	return api.CameraHealth{}
}

func (s *Server) addCamera(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.OpenSource == nil {
		return errorf(http.StatusNotImplemented, "this gateway has no video support (it was built without OpenCV): push frames instead")
	}
	var req api.CameraRequest
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
		return errorf(http.StatusBadRequest, "url: required (rtsp://, http(s):// or a file under a --camera-files directory)")
	}
	if _, err := s.cfg.Sources.Check(req.URL); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if _, err := s.stream(r.Context(), req.Stream); err != nil {
		return err
	}
	rec := wire.Camera{ID: req.ID, Stream: req.Stream, URL: req.URL, FPS: req.FPS, Loop: req.Loop, Created: time.Now().UTC()}
	s.cams.ops.Lock()
	defer s.cams.ops.Unlock()
	if err := s.cfg.Store.CreateCamera(r.Context(), rec); err != nil {
		if errors.Is(err, controlplane.ErrExists) {
			return errorf(http.StatusConflict, "camera %q already exists; remove it first with: diplip camera rm %s", req.ID, req.ID)
		}
		return err
	}
	if err := s.cams.start(r.Context(), rec); err != nil {
		_ = s.cfg.Store.DeleteCamera(context.WithoutCancel(r.Context()), rec.ID) // nothing half-done
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
		out = append(out, api.CameraStatus{Camera: apiCamera(c), Health: s.cams.health(c)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) removeCamera(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	s.cams.ops.Lock()
	defer s.cams.ops.Unlock()
	cam, err := s.cfg.Store.Camera(r.Context(), id)
	if err == nil {
		err = s.cfg.Store.DeleteCamera(r.Context(), id)
	}
	if errors.Is(err, controlplane.ErrNotFound) {
		return errorf(http.StatusNotFound, "camera %q not found (see: diplip camera ls)", id)
	} else if err != nil {
		return err
	}
	s.cams.stop(id)
	s.forgetTrackerState(r.Context(), cam.Stream, id) // its tracks and counts go with it
	w.WriteHeader(http.StatusNoContent)
	return nil
}
