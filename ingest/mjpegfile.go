package ingest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// SplitJPEGs splits a raw MJPEG elementary stream (complete JPEGs back to back, as
// `ffmpeg -f mjpeg` writes and MJPEG cameras send without HTTP framing) into frames.
// It cuts at each start-of-image marker (FF D8 FF) that follows an end-of-image
// marker (FF D9), so markers inside embedded data do not split a frame.
func SplitJPEGs(b []byte) [][]byte {
	var frames [][]byte
	eoiSOI := []byte{0xff, 0xd9, 0xff, 0xd8, 0xff}
	start := bytes.Index(b, []byte{0xff, 0xd8, 0xff})
	for start >= 0 {
		j := bytes.Index(b[start+3:], eoiSOI)
		if j < 0 {
			frames = append(frames, b[start:])
			break
		}
		next := start + 3 + j + 2 // just past the FF D9
		frames = append(frames, b[start:next])
		start = next
	}
	return frames
}

// PushLoop is a camera that pushes frames over HTTP to a gateway's frames endpoint at
// fps, looping over them, until ctx ends. It is what the demo's sample camera is; any
// HTTP client can do the same. Each answer is passed to onAnswer (nil: ignored).
func PushLoop(ctx context.Context, gateway, token, stream, camera string, frames [][]byte, fps float64, onAnswer func(status int, err error)) error {
	if len(frames) == 0 || fps <= 0 {
		return fmt.Errorf("push loop: want frames and fps > 0, got %d frames at %v fps", len(frames), fps)
	}
	u := gateway + "/v1/streams/" + url.PathEscape(stream) + "/frames?camera=" + url.QueryEscape(camera)
	client := &http.Client{Timeout: 30 * time.Second}
	tick := time.NewTicker(time.Duration(float64(time.Second) / fps))
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(frames) {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(frames[i]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "image/jpeg")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		status := 0
		if err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		if onAnswer != nil && ctx.Err() == nil {
			onAnswer(status, err)
		}
	}
}
