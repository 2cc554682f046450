package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
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
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for i := range p.Cameras {
		wg.Go(func() { p.camera(ctx, client, i) })
	}
	wg.Wait()
	return nil
}

func (p *Pusher) camera(ctx context.Context, client *http.Client, i int) {
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
			gw := p.Gateways[(i+attempt)%len(p.Gateways)]
			retryAfter, err := p.push(ctx, client, gw, cam, seq, captured)
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
			if retryAfter > 0 {
				wait = min(retryAfter, 2*time.Second)
			}
			if !sleepUntil(ctx, time.Now().Add(wait)) {
				break
			}
			wait = min(2*wait, time.Second)
		}
	}
}

// push sends one frame; a nil error means 2xx. retryAfter is the server's Retry-After.
func (p *Pusher) push(ctx context.Context, client *http.Client, gw, cam string, seq uint64, captured time.Time) (retryAfter time.Duration, err error) {
	q := url.Values{"camera": {cam}, "seq": {strconv.FormatUint(seq, 10)}, "ts": {strconv.FormatInt(captured.UnixMilli(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gw+"/v1/streams/"+p.Stream+"/frames?"+q.Encode(), bytes.NewReader(p.Frame))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "image/jpeg")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return 0, nil
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		retryAfter = time.Duration(s) * time.Second
	}
	return retryAfter, fmt.Errorf("push %s/%d to %s: %d %s", cam, seq, gw, resp.StatusCode, bytes.TrimSpace(body))
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
