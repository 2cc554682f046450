package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/diplip/diplip/api/client"
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
// HTTP client can do the same. Each push waits at most 30 s for its answer, which is
// passed to onAnswer (nil: ignored): the gateway's status (201: stored; 0 when no answer
// came) and, unless 201, the error. It numbers its frames itself (seq), from the Unix
// microsecond it starts at, so that the numbers keep increasing across restarts: an
// exactly-once deployment drops a frame stored twice by its seq.
func PushLoop(ctx context.Context, gateway, token, stream, camera string, frames [][]byte, fps float64, onAnswer func(status int, err error)) error {
	if len(frames) == 0 || fps <= 0 {
		return fmt.Errorf("push loop: want frames and fps > 0, got %d frames at %v fps", len(frames), fps)
	}
	cl, err := client.New(gateway, token, client.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}))
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / fps))
	defer tick.Stop()
	seq := uint64(time.Now().UnixMicro())
	for i := 0; ; i = (i + 1) % len(frames) {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		seq++
		// The capture time is when this camera "took" the frame: now, before the request.
		_, err := cl.PushFrame(ctx, stream, client.Frame{Camera: camera, Seq: seq, CaptureTime: time.Now(), Image: frames[i]})
		if onAnswer != nil && ctx.Err() == nil {
			onAnswer(answerStatus(err, http.StatusCreated), err)
		}
	}
}

// answerStatus is the gateway's status for a push that returned err: ok when none, 0
// when no answer came.
func answerStatus(err error, ok int) int {
	var ce *client.Error
	switch {
	case err == nil:
		return ok
	case errors.As(err, &ce):
		return ce.Status
	}
	return 0
}

// PushMJPEGLoop is a camera that pushes one long multipart/x-mixed-replace stream (as IP
// cameras and `ffmpeg -f mpjpeg` do) to a gateway's MJPEG endpoint at fps, looping over
// frames, until ctx ends; then it ends the stream cleanly and returns the gateway's
// status (0 when no answer came) and, unless 200, the error.
func PushMJPEGLoop(ctx context.Context, gateway, token, stream, camera string, frames [][]byte, fps float64) (int, error) {
	if len(frames) == 0 || fps <= 0 {
		return 0, fmt.Errorf("mjpeg push loop: want frames and fps > 0, got %d frames at %v fps", len(frames), fps)
	}
	cl, err := client.New(gateway, token)
	if err != nil {
		return 0, err
	}
	pr, pw := io.Pipe()
	go func() {
		tick := time.NewTicker(time.Duration(float64(time.Second) / fps))
		defer tick.Stop()
		for i := 0; ; i = (i + 1) % len(frames) {
			select {
			case <-ctx.Done():
				_, err := io.WriteString(pw, "--diplip--\r\n")
				pw.CloseWithError(err)
				return
			case <-tick.C:
			}
			if _, err := fmt.Fprintf(pw, "--diplip\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(frames[i])); err != nil {
				return
			}
			// Two writes, not append: frames may share one backing array (SplitJPEGs), and
			// appending would overwrite the start of the next frame.
			if _, err := pw.Write(frames[i]); err != nil {
				return
			}
			if _, err := io.WriteString(pw, "\r\n"); err != nil {
				return
			}
		}
	}()
	// Not ctx's end: the stream ends by its closing boundary, and the answer comes after.
	_, err = cl.PushMJPEG(context.WithoutCancel(ctx), stream, camera, "diplip", pr)
	pr.Close() // a stream the gateway ended early: the writer stops at its next write
	return answerStatus(err, http.StatusOK), err
}
