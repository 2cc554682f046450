package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/wire"
)

// OpenSourceFunc opens a camera source for a URL that the SourcePolicy let through
// (package ingest/video provides one). It is a parameter because video decoding is cgo
// that the rest of ingest keeps out.
type OpenSourceFunc func(url string, loop bool) (Source, error)

// CameraStore is where pulled cameras are recorded; *controlplane.Store is one.
type CameraStore interface {
	CreateCamera(ctx context.Context, c wire.Camera) error
	Camera(ctx context.Context, id string) (wire.Camera, error)
	Cameras(ctx context.Context) ([]wire.Camera, error)
	DeleteCamera(ctx context.Context, id string) error
}

// Errors of a Supervisor, matched with errors.Is; each error's own message says what was
// wrong. An unknown stream is the TopicFunc's error, returned as it is.
var (
	// ErrNoVideo: the supervisor has no OpenSourceFunc, so it pulls nothing.
	ErrNoVideo = errors.New("this gateway has no video support (it was built without OpenCV): push frames instead")
	// ErrBadCamera: the camera's record or source cannot be pulled (a bad id, rate or
	// URL, a source that does not open).
	ErrBadCamera      = errors.New("bad camera")
	ErrCameraExists   = errors.New("camera exists")
	ErrCameraNotFound = errors.New("camera not found")
	// ErrStopped: Run has ended; no camera starts any more.
	ErrStopped = errors.New("the gateway is stopping")
)

// marked is an error with its own message that errors.Is also matches to mark.
type marked struct{ mark, err error }

func (e *marked) Error() string   { return e.err.Error() }
func (e *marked) Unwrap() []error { return []error{e.mark, e.err} }

func markf(mark error, format string, args ...any) error {
	return &marked{mark: mark, err: fmt.Errorf(format, args...)}
}

// SupervisorConfig is what a Supervisor pulls with.
type SupervisorConfig struct {
	// Store records the cameras; Run resumes every camera it holds. Required.
	Store CameraStore
	// Topic resolves a camera's stream to its frames topic. Required.
	Topic TopicFunc
	// Producer writes the frames (acks=all). Required.
	Producer Sender
	// Open opens camera sources; nil: Add refuses with ErrNoVideo and Run resumes none.
	Open OpenSourceFunc
	// Policy is what a camera's URL may be; the zero policy allows network cameras only.
	Policy SourcePolicy
	Logger *slog.Logger
}

// Supervisor runs the pulled cameras recorded in the control plane, each in a goroutine
// it owns: Run resumes the recorded ones and, when its context ends, stops them all
// (each stores what it buffered). Adding or removing one camera never restarts another.
type Supervisor struct {
	cfg SupervisorConfig
	log *slog.Logger

	// ops serializes Add, Remove and Run's resume, so that a camera's record and its
	// puller change together: a camera removed while it is being added cannot be left
	// running without its record. Lock order: ops, then mu.
	ops sync.Mutex

	mu      sync.Mutex
	ctx     context.Context // Run's; nil before and after Run
	stopped bool            // Run has ended
	running map[string]*puller
}

// puller is one camera's goroutine; a camera added before Run waits with no cancel.
type puller struct {
	cam    *Camera
	cancel context.CancelFunc // nil until launched
	done   chan struct{}
}

// NewSupervisor checks cfg; Run pulls.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Store == nil || cfg.Topic == nil || cfg.Producer == nil {
		return nil, errors.New("ingest: SupervisorConfig needs Store, Topic and Producer")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Supervisor{cfg: cfg, log: cfg.Logger.With("component", "cameras"), running: map[string]*puller{}}, nil
}

// Run resumes every recorded camera and runs the cameras until ctx ends; then it stops
// them all, waits until each has stored what it buffered, and returns nil. A camera that
// does not resume is logged and left recorded.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil || s.stopped {
		s.mu.Unlock()
		return errors.New("ingest: a Supervisor runs once")
	}
	s.ctx = ctx
	for _, p := range s.running { // added before Run
		s.launch(p)
	}
	s.mu.Unlock()
	if err := s.resume(ctx); err != nil {
		s.log.Warn("some cameras did not resume", "err", err)
	}
	<-ctx.Done()
	s.mu.Lock()
	running := s.running
	s.running, s.ctx, s.stopped = map[string]*puller{}, nil, true
	s.mu.Unlock()
	for _, p := range running {
		p.halt()
	}
	for _, p := range running {
		<-p.done
	}
	return nil
}

// resume starts every recorded camera that does not run yet.
func (s *Supervisor) resume(ctx context.Context) error {
	if s.cfg.Open == nil {
		return nil
	}
	s.ops.Lock()
	defer s.ops.Unlock()
	recs, err := s.cfg.Store.Cameras(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range recs {
		s.mu.Lock()
		_, runs := s.running[c.ID]
		s.mu.Unlock()
		if runs {
			continue
		}
		topic, err := s.cfg.Topic(ctx, c.Stream)
		if err == nil {
			err = s.start(c, topic)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("camera %s: %w", c.ID, err))
		}
	}
	return errors.Join(errs...)
}

// Add checks camera c, records it, and starts pulling it; if it cannot start, its record
// is removed again.
func (s *Supervisor) Add(ctx context.Context, c wire.Camera) error {
	if s.cfg.Open == nil {
		return ErrNoVideo
	}
	if err := wire.ValidCamera(c.ID); err != nil {
		return markf(ErrBadCamera, "%w", err)
	}
	if c.FPS < 0 || c.FPS > 120 {
		return markf(ErrBadCamera, "fps %v: want 0 (every frame) to 120", c.FPS)
	}
	if c.URL == "" || strings.ContainsAny(c.URL, "\n\r") {
		return markf(ErrBadCamera, "url: required (rtsp://, http(s):// or a file under a --camera-files directory)")
	}
	if _, err := s.cfg.Policy.Check(c.URL); err != nil {
		return markf(ErrBadCamera, "%w", err)
	}
	topic, err := s.cfg.Topic(ctx, c.Stream)
	if err != nil {
		return err
	}
	s.ops.Lock()
	defer s.ops.Unlock()
	if err := s.cfg.Store.CreateCamera(ctx, c); err != nil {
		if errors.Is(err, controlplane.ErrExists) {
			return markf(ErrCameraExists, "camera %q already exists; remove it first with: diplip camera rm %s", c.ID, c.ID)
		}
		return err
	}
	if err := s.start(c, topic); err != nil {
		_ = s.cfg.Store.DeleteCamera(context.WithoutCancel(ctx), c.ID) // nothing half-done
		return err
	}
	return nil
}

// Remove deletes camera id's record and stops its puller, waiting until its buffered
// frames are stored; it returns the record.
func (s *Supervisor) Remove(ctx context.Context, id string) (wire.Camera, error) {
	s.ops.Lock()
	defer s.ops.Unlock()
	c, err := s.cfg.Store.Camera(ctx, id)
	if err == nil {
		err = s.cfg.Store.DeleteCamera(ctx, id)
	}
	if errors.Is(err, controlplane.ErrNotFound) {
		return c, markf(ErrCameraNotFound, "camera %q not found (see: diplip camera ls)", id)
	} else if err != nil {
		return c, err
	}
	s.mu.Lock()
	p := s.running[id]
	delete(s.running, id)
	s.mu.Unlock()
	if p != nil {
		p.halt()
		<-p.done
	}
	return c, nil
}

// Health is camera id's state now; the zero health when it does not run here.
func (s *Supervisor) Health(id string) api.CameraHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.running[id]; ok {
		return p.cam.Health()
	}
	return api.CameraHealth{}
}

// start opens c's source and runs it, writing to topic, until it ends, it is removed, or
// Run ends; before Run it waits for Run.
func (s *Supervisor) start(c wire.Camera, topic string) error {
	url, err := s.cfg.Policy.Check(c.URL)
	if err != nil {
		return markf(ErrBadCamera, "camera %s: %w", c.ID, err)
	}
	src, err := s.cfg.Open(url, c.Loop)
	if err != nil {
		return markf(ErrBadCamera, "camera %s: %w", c.ID, err)
	}
	cam, err := NewCamera(CameraConfig{ID: c.ID, Stream: c.Stream, Topic: topic, FPS: c.FPS, Source: src,
		Producer: s.cfg.Producer, Logger: s.cfg.Logger})
	if err != nil {
		src.Close()
		return markf(ErrBadCamera, "%w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		src.Close()
		return ErrStopped
	}
	if old := s.running[c.ID]; old != nil { // never two pullers for one id
		old.halt()
	}
	p := &puller{cam: cam, done: make(chan struct{})}
	s.running[c.ID] = p
	if s.ctx != nil {
		s.launch(p)
	}
	return nil
}

// launch runs p's camera; s.mu is held and Run's context set.
func (s *Supervisor) launch(p *puller) {
	ctx, cancel := context.WithCancel(s.ctx)
	p.cancel = cancel
	go func() { // owned: Remove and Run wait for done
		defer close(p.done)
		if err := p.cam.Run(ctx); err != nil {
			s.log.Warn("camera source did not close cleanly", "camera", p.cam.cfg.ID, "err", err)
		}
	}()
}

// halt ends p: a launched camera stores what it buffered (wait on done); one that never
// ran closes its source. p is no longer in the running map.
func (p *puller) halt() {
	if p.cancel != nil {
		p.cancel()
		return
	}
	p.cam.cfg.Source.Close()
	close(p.done)
}
