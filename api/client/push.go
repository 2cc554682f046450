package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/diplip/diplip/api"
)

// Frame is one picture a camera pushes to a stream.
type Frame struct {
	// Camera is the camera's id (letters, digits, '_', '-'). Required.
	Camera string
	// Seq numbers the camera's frames; 0 lets the gateway number them (increasing per
	// camera, also across gateway restarts). A camera that sends a frame again after an
	// error sends it with the same Seq, so readers can tell a repeat from a new frame.
	Seq uint64
	// CaptureTime is when the camera took the picture, kept to the millisecond; zero
	// means when the gateway received it.
	CaptureTime time.Time
	// Image is the encoded picture.
	Image []byte
	// ContentType is Image's type: "image/jpeg" (the default; stored as it is) or
	// "image/png" (converted to JPEG once, by the gateway).
	ContentType string
}

// PushFrame stores f in stream's frames topic and returns where Kafka put it. It
// returns once Kafka has acknowledged the frame; an *Error with Status 503 (and
// RetryAfter) means it was not stored and may be sent again, a 4xx that the frame or
// the stream is wrong (400 bad frame, 404 no such stream, 413 too large).
func (c *Client) PushFrame(ctx context.Context, stream string, f Frame) (api.FrameAck, error) {
	q := url.Values{"camera": {f.Camera}}
	if f.Seq != 0 {
		q.Set("seq", strconv.FormatUint(f.Seq, 10))
	}
	if !f.CaptureTime.IsZero() {
		q.Set("ts", strconv.FormatInt(f.CaptureTime.UnixMilli(), 10))
	}
	ct := f.ContentType
	if ct == "" {
		ct = "image/jpeg"
	}
	path := "/v1/streams/" + url.PathEscape(stream) + "/frames?" + q.Encode()
	var ack api.FrameAck
	b, err := c.roundTrip(ctx, c.http, http.MethodPost, path, ct, bytes.NewReader(f.Image))
	if err != nil {
		return ack, err
	}
	if err := json.Unmarshal(b, &ack); err != nil {
		return ack, fmt.Errorf("the gateway's answer to POST %s: %w", path, err)
	}
	return ack, nil
}

// PushMJPEG streams body to stream as camera's frames and returns the gateway's summary
// once body ends. body is a multipart/x-mixed-replace stream of JPEG parts, as IP
// cameras and `ffmpeg -f mpjpeg` send, its parts separated by boundary; with an empty
// boundary the gateway reads it from body's first line (--BOUNDARY). Each part is
// stored as it arrives, so the call lasts as long as body does: the client's timeout
// does not apply, ctx does. A stream that stops early (a malformed part, Kafka not
// taking a frame) is an *Error returned with the summary of the frames stored before it.
func (c *Client) PushMJPEG(ctx context.Context, stream, camera, boundary string, body io.Reader) (api.MJPEGSummary, error) {
	ct := ""
	if boundary != "" {
		ct = mime.FormatMediaType("multipart/x-mixed-replace", map[string]string{"boundary": boundary})
	}
	hc := *c.http
	hc.Timeout = 0
	path := "/v1/streams/" + url.PathEscape(stream) + "/mjpeg?" + url.Values{"camera": {camera}}.Encode()
	var sum api.MJPEGSummary
	b, err := c.roundTrip(ctx, &hc, http.MethodPost, path, ct, body)
	if len(b) > 0 {
		if jerr := json.Unmarshal(b, &sum); jerr != nil && err == nil {
			return sum, fmt.Errorf("the gateway's answer to POST %s: %w", path, jerr)
		}
	}
	return sum, err
}
