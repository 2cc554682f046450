package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/diplip/diplip/api/client"
)

// FrameKey names one frame: the camera and the sequence number it gave the frame.
type FrameKey struct {
	Camera string
	Seq    uint64
}

// Push is what a camera saw of one frame.
type Push struct {
	Acked    bool      // some gateway answered 2xx
	At       time.Time // when it was acknowledged, or given up
	Attempts int
}

// Pusher is a set of cameras that push JPEG frames at a steady rate, as IP cameras do:
// camera i sends to gateway i mod G first and, when a push fails (refused, reset,
// timeout, 503 or another 5xx), sends the same frame (same seq) again to the next
// gateway after a short wait, until one acknowledges it or the frame is older than
// GiveUp. A camera sends one frame at a time; frames it could not send on time are
// never taken (seq numbers stay dense).
type Pusher struct {
	Stream   string
	Cameras  int
	FPS      float64
	Gateways []string // base URLs
	Frame    []byte   // a JPEG
	// GiveUp is how long a camera keeps trying one frame. Default 10s.
	GiveUp time.Duration
	// Prefix of the camera ids (PREFIX-0, PREFIX-1, ...). Default "cam".
	Prefix string

	mu     sync.Mutex
	pushes map[FrameKey]*Push
}

// Run pushes until ctx ends, then returns once every camera has stopped.
func (p *Pusher) Run(ctx context.Context) error {
	if p.Cameras < 1 || p.FPS <= 0 || len(p.Gateways) == 0 || len(p.Frame) == 0 || p.Stream == "" {
		return errors.New("faults: Pusher needs Stream, Cameras ≥ 1, FPS > 0, Gateways and a Frame")
	}
	if p.GiveUp == 0 {
		p.GiveUp = 10 * time.Second
	}
	if p.Prefix == "" {
		p.Prefix = "cam"
	}
	p.mu.Lock()
	if p.pushes == nil {
		p.pushes = map[FrameKey]*Push{}
	}
	p.mu.Unlock()
	// One client per gateway, all on one http.Client: 5 s per push, so a gateway that
	// hangs costs a camera little before it tries the next.
	hc := &http.Client{Timeout: 5 * time.Second}
	gateways := make([]*client.Client, len(p.Gateways))
	for i, gw := range p.Gateways {
		cl, err := client.New(gw, "", client.WithHTTPClient(hc))
		if err != nil {
			return fmt.Errorf("faults: Pusher gateway: %w", err)
		}
		gateways[i] = cl
	}
	var wg sync.WaitGroup
	for i := range p.Cameras {
		wg.Go(func() { p.camera(ctx, gateways, i) })
	}
	wg.Wait()
	return nil
}

func (p *Pusher) camera(ctx context.Context, gateways []*client.Client, i int) {
	cam := fmt.Sprintf("%s-%d", p.Prefix, i)
	period := time.Duration(float64(time.Second) / p.FPS)
	// Cameras start spread over one period, as real ones would.
	next := time.Now().Add(period * time.Duration(i) / time.Duration(p.Cameras))
	for seq := uint64(1); ; seq++ {
		if !sleepUntil(ctx, next) {
			return
		}
		next = next.Add(period)
		if now := time.Now(); next.Before(now) {
			next = now // behind: no burst to catch up
		}
		key := FrameKey{cam, seq}
		rec := &Push{}
		p.mu.Lock()
		p.pushes[key] = rec
		p.mu.Unlock()
		captured := time.Now()
		wait := 100 * time.Millisecond
		for attempt := 0; ; attempt++ {
			gw := (i + attempt) % len(gateways)
			_, err := gateways[gw].PushFrame(ctx, p.Stream, client.Frame{Camera: cam, Seq: seq, CaptureTime: captured, Image: p.Frame})
			p.mu.Lock()
			rec.Attempts++
			if err == nil {
				rec.Acked, rec.At = true, time.Now()
			}
			p.mu.Unlock()
			if err == nil {
				break
			}
			if ctx.Err() != nil || time.Since(captured) > p.GiveUp {
				p.mu.Lock()
				rec.At = time.Now()
				p.mu.Unlock()
				break
			}
			var refused *client.Error // a 503 says when to come back
			if errors.As(err, &refused) && refused.RetryAfter > 0 {
				wait = min(refused.RetryAfter, 2*time.Second)
			}
			if !sleepUntil(ctx, time.Now().Add(wait)) {
				break
			}
			wait = min(2*wait, time.Second)
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// Pushes returns a copy of every frame's push record.
func (p *Pusher) Pushes() map[FrameKey]Push {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[FrameKey]Push, len(p.pushes))
	for k, v := range p.pushes {
		out[k] = *v
	}
	return out
}

// Acked counts the acknowledged frames so far.
func (p *Pusher) Acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.pushes {
		if v.Acked {
			n++
		}
	}
	return n
}
