package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// Sentinel errors of a Source; Camera reconnects on the first and stops on the second.
var (
	ErrNotConnected = errors.New("camera not connected")
	ErrEndOfInput   = errors.New("end of input")
)

// Source is a camera or video that is pulled from. Read blocks for the next frame.
// package ingest/video implements it with OpenCV's VideoCapture.
type Source interface {
	Connect(ctx context.Context) error
	Read(ctx context.Context) (jpeg []byte, captured time.Time, err error)
	Close() error
}

// CameraConfig is one pulled camera.
type CameraConfig struct {
	ID     string
	Stream string
	Topic  string
	// FPS samples the source down to this rate; 0 keeps every frame.
	FPS    float64
	Source Source
	// Producer writes frames (acks=all).
	Producer Sender
	// Buffer bounds frames read but not yet in Kafka; when full the oldest is dropped and
	// counted. Default 16.
	Buffer int
	// Backoff after a failed connect starts here and doubles up to MaxBackoff (1s, 30s).
	Backoff, MaxBackoff time.Duration
	Logger              *slog.Logger
}

// Camera pulls frames from a Source into a stream: it reconnects with backoff whenever
// the source drops, samples to FPS, and hands frames to Kafka through a bounded buffer
// that drops the oldest frame (counted) rather than falling behind a live camera.
type Camera struct {
	cfg CameraConfig
	log *slog.Logger

	mu     sync.Mutex
	health api.CameraHealth
	recent []time.Time // store times of the last 5 s, for FPS
	seq    atomic.Uint64
}

// NewCamera checks cfg; Run pulls.
func NewCamera(cfg CameraConfig) (*Camera, error) {
	if err := wire.ValidCamera(cfg.ID); err != nil {
		return nil, err
	}
	if cfg.Source == nil || cfg.Producer == nil || cfg.Topic == "" {
		return nil, errors.New("ingest: CameraConfig needs Source, Producer and Topic")
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 16
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Camera{cfg: cfg, log: cfg.Logger.With("component", "camera", "camera", cfg.ID),
		health: api.CameraHealth{}}
	c.seq.Store(uint64(time.Now().UnixMicro()))
	return c, nil
}

// Run pulls frames into the stream until ctx ends or a file ends, then stores what it
// buffered (dropping, and counting, what Kafka will not take within a few tries) and
// closes the source.
func (c *Camera) Run(ctx context.Context) error {
	frames := make(chan wire.Frame, c.cfg.Buffer)
	var wg sync.WaitGroup
	wg.Go(func() { c.produce(ctx, frames) })
	c.pull(ctx, frames)
	close(frames)
	wg.Wait()
	return c.cfg.Source.Close()
}

// Health reports the camera's state now.
func (c *Camera) Health() api.CameraHealth {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.health
	cut := time.Now().Add(-5 * time.Second)
	n := 0
	for _, t := range c.recent {
		if t.After(cut) {
			n++
		}
	}
	h.FPS = float64(n) / 5
	return h
}

func (c *Camera) update(f func(h *api.CameraHealth)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.health)
}

// pull reads frames until ctx ends or a file ends, reconnecting with backoff.
func (c *Camera) pull(ctx context.Context, frames chan wire.Frame) {
	backoff := c.cfg.Backoff
	var next time.Time // sampling: the earliest capture time of the next frame kept
	for ctx.Err() == nil {
		if err := c.cfg.Source.Connect(ctx); err != nil {
			c.update(func(h *api.CameraHealth) { h.Connected, h.LastError = false, err.Error() })
			c.log.Warn("camera connect failed; retrying", "err", err, "in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, c.cfg.MaxBackoff)
			continue
		}
		c.update(func(h *api.CameraHealth) { h.Connected = true })
		backoff = c.cfg.Backoff
		for ctx.Err() == nil {
			jpg, at, err := c.cfg.Source.Read(ctx)
			if errors.Is(err, ErrEndOfInput) {
				c.update(func(h *api.CameraHealth) { h.Connected, h.Ended = false, true })
				return
			}
			if err != nil && ctx.Err() != nil {
				return // stopped, not dropped
			}
			if err != nil {
				c.cfg.Source.Close()
				c.update(func(h *api.CameraHealth) { h.Connected, h.LastError = false, err.Error(); h.Reconnects++ })
				metrics.CameraReconnects.WithLabelValues(c.cfg.ID).Inc()
				c.log.Warn("camera dropped; reconnecting", "err", err)
				break
			}
			if c.cfg.FPS > 0 {
				if at.Before(next) {
					continue
				}
				next = at.Add(time.Duration(float64(time.Second) / c.cfg.FPS))
			}
			f := wire.Frame{Camera: c.cfg.ID, Seq: c.seq.Add(1), CaptureTime: at, IngestTime: time.Now(), ContentType: wire.ContentJPEG, Data: jpg}
			select {
			case frames <- f:
			default: // full: drop the oldest, keep the newest
				select {
				case <-frames:
					c.update(func(h *api.CameraHealth) { h.Dropped++ })
				default:
				}
				select {
				case frames <- f:
				default:
				}
			}
		}
	}
}

// produce stores frames in Kafka, one at a time (the camera's order), retrying a frame
// until Kafka takes it; meanwhile pull drops the oldest frames if the buffer fills. After
// Stop, a frame Kafka will not take is dropped (and counted) instead of holding Stop up:
// a pulled frame was never acknowledged to anyone.
func (c *Camera) produce(ctx context.Context, frames chan wire.Frame) {
	for f := range frames {
		stored := false
		for attempt := 0; ; attempt++ {
			_, _, err := c.cfg.Producer.SendMessage(kafkaclient.FrameMessage(&f, c.cfg.Topic))
			if err == nil {
				stored = true
				break
			}
			c.update(func(h *api.CameraHealth) { h.LastError = fmt.Sprintf("kafka: %v", err) })
			if ctx.Err() != nil && attempt >= 2 {
				break
			}
			time.Sleep(time.Second)
		}
		if !stored {
			c.update(func(h *api.CameraHealth) { h.Dropped++ })
			continue
		}
		now := time.Now()
		c.mu.Lock()
		c.health.Frames++
		c.health.LastFrame = now
		c.recent = append(c.recent, now)
		if len(c.recent) > 512 {
			c.recent = c.recent[len(c.recent)-256:]
		}
		c.mu.Unlock()
		metrics.IngestFrames.WithLabelValues(c.cfg.Stream, "accepted").Inc()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
