package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// memCameras is a CameraStore in memory, with the control plane's errors.
type memCameras struct {
	mu   sync.Mutex
	cams map[string]wire.Camera
}

func (m *memCameras) CreateCamera(_ context.Context, c wire.Camera) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cams[c.ID]; ok {
		return controlplane.ErrExists
	}
	m.cams[c.ID] = c
	return nil
}

func (m *memCameras) Camera(_ context.Context, id string) (wire.Camera, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cams[id]
	if !ok {
		return c, controlplane.ErrNotFound
	}
	return c, nil
}

func (m *memCameras) Cameras(context.Context) ([]wire.Camera, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []wire.Camera
	for _, c := range m.cams {
		out = append(out, c)
	}
	return out, nil
}

func (m *memCameras) DeleteCamera(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cams[id]; !ok {
		return controlplane.ErrNotFound
	}
	delete(m.cams, id)
	return nil
}

func (m *memCameras) has(id string) bool {
	_, err := m.Camera(context.Background(), id)
	return err == nil
}

// tickSource is a camera that gives a frame every 5 ms until it is stopped.
type tickSource struct{ closed atomic.Bool }

func (s *tickSource) Connect(context.Context) error { return nil }

func (s *tickSource) Read(ctx context.Context) ([]byte, time.Time, error) {
	select {
	case <-ctx.Done():
		return nil, time.Time{}, ctx.Err()
	case <-time.After(5 * time.Millisecond):
		return []byte{0xff, 0xd8, 0xff, 0xd9}, time.Now(), nil
	}
}

func (s *tickSource) Close() error { s.closed.Store(true); return nil }

// countSender counts the frames of each camera it stores.
type countSender struct {
	mu     sync.Mutex
	frames map[string]int
}

func (c *countSender) SendMessage(m *sarama.ProducerMessage) (int32, int64, error) {
	k, _ := m.Key.Encode()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames[string(k)]++
	return 0, 0, nil
}

func (c *countSender) count(camera string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames[camera]
}

// The supervisor adds and removes a camera with its record, resumes recorded cameras when
// it runs, refuses what it cannot pull with an error that says why, and stops every
// camera (closing its source) when its context ends.
func TestSupervisor(t *testing.T) {
	ctx := context.Background()
	store := &memCameras{cams: map[string]wire.Camera{}}
	sender := &countSender{frames: map[string]int{}}
	var mu sync.Mutex
	sources := map[string]*tickSource{}
	open := func(url string, loop bool) (ingest.Source, error) {
		if strings.Contains(url, "broken") {
			return nil, errors.New("cannot open")
		}
		mu.Lock()
		defer mu.Unlock()
		s := &tickSource{}
		sources[url] = s
		return s, nil
	}
	source := func(url string) *tickSource { mu.Lock(); defer mu.Unlock(); return sources[url] }
	topic := func(_ context.Context, stream string) (string, error) {
		if stream != "lobby" {
			return "", fmt.Errorf("%w: %s", ingest.ErrUnknownStream, stream)
		}
		return "diplip.frames.lobby", nil
	}
	cam := func(id, url string) wire.Camera { return wire.Camera{ID: id, Stream: "lobby", URL: url, FPS: 0} }

	novideo, err := ingest.NewSupervisor(ingest.SupervisorConfig{Store: store, Topic: topic, Producer: sender})
	if err != nil {
		t.Fatal(err)
	}
	if err := novideo.Add(ctx, cam("door", "rtsp://127.0.0.1/door")); !errors.Is(err, ingest.ErrNoVideo) {
		t.Fatalf("adding a camera without video support: %v", err)
	}

	sup, err := ingest.NewSupervisor(ingest.SupervisorConfig{Store: store, Topic: topic, Producer: sender, Open: open})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cam  wire.Camera
		is   error
		want string
	}{
		{"a bad id", cam("a b", "rtsp://127.0.0.1/x"), ingest.ErrBadCamera, `camera id "a b"`},
		{"a bad rate", wire.Camera{ID: "x", Stream: "lobby", URL: "rtsp://127.0.0.1/x", FPS: 121}, ingest.ErrBadCamera, "fps 121"},
		{"no url", cam("x", ""), ingest.ErrBadCamera, "url: required"},
		{"a url the policy refuses", cam("x", "concat:/etc/passwd"), ingest.ErrSourceNotAllowed, "not allowed"},
		{"an unknown stream", wire.Camera{ID: "x", Stream: "hall", URL: "rtsp://127.0.0.1/x"}, ingest.ErrUnknownStream, "hall"},
		{"a source that does not open", cam("x", "rtsp://127.0.0.1/broken"), ingest.ErrBadCamera, "camera x: cannot open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sup.Add(ctx, tc.cam)
			if !errors.Is(err, tc.is) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("err = %v; want %v mentioning %q", err, tc.is, tc.want)
			}
			if store.has("x") {
				t.Fatal("a refused camera left its record")
			}
		})
	}

	// One camera recorded before the supervisor runs (a restart), one added before Run
	// (the API may answer first): both pull once it runs.
	if err := store.CreateCamera(ctx, cam("gate", "rtsp://127.0.0.1/gate")); err != nil {
		t.Fatal(err)
	}
	if err := sup.Add(ctx, cam("door", "rtsp://127.0.0.1/door")); err != nil {
		t.Fatal(err)
	}
	if err := sup.Add(ctx, cam("door", "rtsp://127.0.0.1/door2")); !errors.Is(err, ingest.ErrCameraExists) || !strings.Contains(err.Error(), "diplip camera rm door") {
		t.Fatalf("adding a camera twice: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sup.Run(runCtx) }()
	testkit.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, id := range []string{"gate", "door"} {
			if h := sup.Health(id); sender.count(id) == 0 || !h.Connected || h.Frames == 0 {
				return fmt.Errorf("camera %s: %d frames stored, health %+v", id, sender.count(id), h)
			}
		}
		return nil
	})

	removed, err := sup.Remove(ctx, "door")
	if err != nil || removed.Stream != "lobby" || store.has("door") || !source("rtsp://127.0.0.1/door").closed.Load() {
		t.Fatalf("remove: %+v, %v (record kept %v)", removed, err, store.has("door"))
	}
	n := sender.count("door")
	time.Sleep(50 * time.Millisecond)
	if sender.count("door") != n {
		t.Fatal("a removed camera still pulls")
	}
	if _, err := sup.Remove(ctx, "door"); !errors.Is(err, ingest.ErrCameraNotFound) || !strings.Contains(err.Error(), "diplip camera ls") {
		t.Fatalf("removing a camera twice: %v", err)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !source("rtsp://127.0.0.1/gate").closed.Load() {
		t.Fatal("a camera's source is open after Run returned")
	}
	if !store.has("gate") {
		t.Fatal("stopping the supervisor removed a camera's record")
	}
	if err := sup.Add(ctx, cam("late", "rtsp://127.0.0.1/late")); !errors.Is(err, ingest.ErrStopped) || store.has("late") {
		t.Fatalf("adding a camera after Run: %v (record kept %v)", err, store.has("late"))
	}
}
