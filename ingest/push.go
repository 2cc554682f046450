package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// Defaults of PushConfig.
const (
	DefaultMaxFrameBytes   = 8 << 20
	DefaultMaxInFlight     = 64
	DefaultMaxMJPEGStreams = 16
	// MaxPixels bounds a frame's declared size; a small file can declare a huge image.
	MaxPixels = 40_000_000
	// MaxDecodedBytes bounds the decoded pixels of a frame the gateway has to decode (a
	// PNG, converted to JPEG), from the size and color model its header declares: 16.7
	// megapixels of 8-bit RGBA, 8.4 of 16-bit. JPEG frames are stored undecoded.
	MaxDecodedBytes = 64 << 20
)

// ErrUnknownStream is what a TopicFunc wraps for a stream that does not exist.
var ErrUnknownStream = errors.New("unknown stream")

// TopicFunc maps a stream name to its frames topic.
type TopicFunc func(ctx context.Context, stream string) (string, error)

// Sender writes one record and returns once Kafka has acknowledged it; a
// sarama.SyncProducer configured by kafkaclient.NewConfig (acks=all, idempotent) is one.
type Sender interface {
	SendMessage(*sarama.ProducerMessage) (partition int32, offset int64, err error)
}

// PushConfig configures the HTTP push endpoints.
type PushConfig struct {
	// Producer writes frames. Required.
	Producer Sender
	// Topic resolves a stream to its frames topic. Required.
	Topic TopicFunc
	// MaxFrameBytes bounds one frame, enforced while reading. Default 8 MiB.
	MaxFrameBytes int64
	// MaxInFlight bounds single-frame pushes being converted or waiting for Kafka at once;
	// beyond it the endpoint answers 503 instead of queueing without bound. A push takes
	// its place once its body is read, so slow uploads do not hold places. Default 64.
	MaxInFlight int
	// MaxMJPEGStreams bounds MJPEG pushes open at once; beyond it the endpoint answers
	// 503 with Retry-After. Default 16.
	MaxMJPEGStreams int
	// Stored, when set, is called (quickly, without blocking) after each frame Kafka
	// acknowledged: the gateway tells the scaler that a stream has work, so a stream with
	// no runner wakes one at once instead of at its next lag poll.
	Stored func(stream string)
	Logger *slog.Logger
}

// HTTPPush serves cameras that push frames over HTTP: one JPEG (or PNG) per request, or a
// long-lived multipart/x-mixed-replace MJPEG stream. A frame is answered 2xx only once
// Kafka has acknowledged it.
type HTTPPush struct {
	cfg      PushConfig
	inFlight chan struct{}
	streams  chan struct{} // open MJPEG pushes
	seqs     sync.Map      // camera id → *atomic.Uint64

	// Counters, for metrics and tests.
	Accepted, Rejected, Failed atomic.Int64
}

// NewHTTPPush returns the push endpoints for cfg.
func NewHTTPPush(cfg PushConfig) (*HTTPPush, error) {
	if cfg.Producer == nil || cfg.Topic == nil {
		return nil, errors.New("ingest: PushConfig needs Producer and Topic")
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxMJPEGStreams <= 0 {
		cfg.MaxMJPEGStreams = DefaultMaxMJPEGStreams
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("component", "ingest")
	return &HTTPPush{cfg: cfg, inFlight: make(chan struct{}, cfg.MaxInFlight), streams: make(chan struct{}, cfg.MaxMJPEGStreams)}, nil
}

// nextSeq numbers a camera's frames. A camera's counter starts at the current Unix
// microsecond the first time this gateway sees it, so numbers keep increasing across
// gateway restarts without any shared state. Cameras may send their own (?seq=N).
func (h *HTTPPush) nextSeq(camera string) uint64 {
	v, _ := h.seqs.LoadOrStore(camera, new(atomic.Uint64))
	c := v.(*atomic.Uint64)
	c.CompareAndSwap(0, uint64(time.Now().UnixMicro()))
	return c.Add(1)
}

// pushError is a failure with its HTTP status.
type pushError struct {
	status     int
	retryAfter int // seconds; 0: no Retry-After
	msg        string
}

func (e *pushError) Error() string { return e.msg }

func fail(status int, format string, args ...any) *pushError {
	return &pushError{status: status, msg: fmt.Sprintf(format, args...)}
}

func (h *HTTPPush) answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *HTTPPush) answerError(w http.ResponseWriter, r *http.Request, err error) {
	pe, ok := err.(*pushError)
	if !ok {
		pe = fail(http.StatusInternalServerError, "%v", err)
	}
	if pe.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(pe.retryAfter))
	}
	if pe.status >= 500 {
		h.Failed.Add(1)
		metrics.IngestFrames.WithLabelValues(r.PathValue("stream"), "failed").Inc()
	} else {
		h.Rejected.Add(1)
		metrics.IngestFrames.WithLabelValues(r.PathValue("stream"), "rejected").Inc()
	}
	h.answer(w, pe.status, map[string]string{"error": pe.msg})
}

// target reads the stream and camera of a push request.
func (h *HTTPPush) target(r *http.Request) (topic, camera string, err error) {
	stream := r.PathValue("stream")
	camera = r.URL.Query().Get("camera")
	if camera == "" {
		return "", "", fail(http.StatusBadRequest, "camera: required query parameter (?camera=ID)")
	}
	if err := wire.ValidCamera(camera); err != nil {
		return "", "", fail(http.StatusBadRequest, "%v", err)
	}
	topic, err = h.cfg.Topic(r.Context(), stream)
	if errors.Is(err, ErrUnknownStream) {
		return "", "", fail(http.StatusNotFound, "stream %q not found; create it with: diplip stream create %s", stream, stream)
	}
	if err != nil {
		return "", "", fail(http.StatusServiceUnavailable, "looking up stream %q: %v", stream, err)
	}
	return topic, camera, nil
}

// captureTime reads ?ts= (Unix milliseconds) or falls back to now.
func captureTime(r *http.Request, now time.Time) (time.Time, error) {
	ts := r.URL.Query().Get("ts")
	if ts == "" {
		return now, nil
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, fail(http.StatusBadRequest, "ts %q: want the capture time in Unix milliseconds", ts)
	}
	return time.UnixMilli(ms), nil
}

// asJPEG checks that b is a decodable JPEG or PNG header of sane size and returns JPEG
// bytes: JPEG unchanged (never decoded here), PNG converted once, after its header shows
// that decoding it takes at most MaxDecodedBytes.
func asJPEG(contentType string, b []byte) ([]byte, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fail(http.StatusBadRequest, "body is not a decodable image (%d bytes, declared %s): %v", len(b), contentType, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fail(http.StatusRequestEntityTooLarge, "image declares %dx%d pixels; at most %d are accepted", cfg.Width, cfg.Height, MaxPixels)
	}
	switch {
	case format == "jpeg" && contentType == "image/jpeg":
		return b, nil
	case format == "png" && contentType == "image/png":
		bpp := bytesPerPixel(cfg.ColorModel)
		if n := int64(cfg.Width) * int64(cfg.Height) * bpp; n > MaxDecodedBytes {
			return nil, fail(http.StatusRequestEntityTooLarge,
				"PNG declares %dx%d pixels of %d bytes each (%d MiB decoded); at most %d MiB of PNG pixels are accepted: send a smaller or 8-bit image, or JPEG (stored as it is)",
				cfg.Width, cfg.Height, bpp, n>>20, MaxDecodedBytes>>20)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			return nil, fail(http.StatusBadRequest, "PNG body: %v", err)
		}
		var out bytes.Buffer
		if err := jpeg.Encode(&out, img, &jpeg.Options{Quality: 90}); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	}
	return nil, fail(http.StatusBadRequest, "body is a %s image but Content-Type says %s", format, contentType)
}

// bytesPerPixel is what one pixel of an image in color model m takes once decoded (the
// image types image/png and image/jpeg decode to); unknown models count as the widest.
func bytesPerPixel(m color.Model) int64 {
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.YCbCrModel:
		return 3 // 4:4:4 at most
	case color.RGBAModel, color.NRGBAModel, color.CMYKModel:
		return 4
	case color.RGBA64Model, color.NRGBA64Model:
		return 8
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 8
}

// send writes one frame of stream and waits for Kafka's acknowledgement.
func (h *HTTPPush) send(stream, topic string, f *wire.Frame) (int32, int64, error) {
	part, off, err := h.cfg.Producer.SendMessage(kafkaclient.FrameMessage(f, topic))
	if err != nil {
		h.cfg.Logger.Warn("kafka did not take a frame", "topic", topic, "camera", f.Camera, "err", err)
		return 0, 0, &pushError{status: http.StatusServiceUnavailable, retryAfter: 2,
			msg: fmt.Sprintf("kafka did not acknowledge the frame (%v); it was not stored, retry later", err)}
	}
	h.Accepted.Add(1)
	metrics.IngestFrames.WithLabelValues(stream, "accepted").Inc()
	if h.cfg.Stored != nil {
		h.cfg.Stored(stream)
	}
	return part, off, nil
}

// Frames handles POST /v1/streams/{stream}/frames?camera=ID[&seq=N][&ts=MS] with an
// image/jpeg or image/png body. 201 means Kafka has the frame; 503 (with Retry-After)
// means Kafka did not take it or MaxInFlight frames are already being stored.
func (h *HTTPPush) Frames(w http.ResponseWriter, r *http.Request) {
	if err := h.frames(w, r); err != nil {
		h.answerError(w, r, err)
	}
}

func (h *HTTPPush) frames(w http.ResponseWriter, r *http.Request) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "image/jpeg" && ct != "image/png" {
		return fail(http.StatusUnsupportedMediaType, "Content-Type %q: want image/jpeg or image/png (for MJPEG streams use /mjpeg)", r.Header.Get("Content-Type"))
	}
	topic, camera, err := h.target(r)
	if err != nil {
		return err
	}
	now := time.Now()
	capture, err := captureTime(r, now)
	if err != nil {
		return err
	}
	var seq uint64
	if s := r.URL.Query().Get("seq"); s != "" {
		if seq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return fail(http.StatusBadRequest, "seq %q: want a non-negative integer", s)
		}
	}
	// Read the body before taking a place: a slow upload must not hold one.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxFrameBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fail(http.StatusRequestEntityTooLarge, "frame is larger than %d bytes", h.cfg.MaxFrameBytes)
	}
	if err != nil {
		return fail(http.StatusBadRequest, "reading the frame: %v", err)
	}
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		return &pushError{status: http.StatusServiceUnavailable, retryAfter: 1,
			msg: fmt.Sprintf("%d frames are already being stored (the gateway's limit); retry later", h.cfg.MaxInFlight)}
	}
	data, err := asJPEG(ct, body)
	if err != nil {
		return err
	}
	cameraSeq := seq != 0 // the camera's own number: the same on a retry
	if seq == 0 {
		seq = h.nextSeq(camera)
	}
	f := &wire.Frame{Camera: camera, Seq: seq, CaptureTime: capture, IngestTime: now, ContentType: wire.ContentJPEG, Data: data,
		CameraSeq: cameraSeq}
	part, off, err := h.send(r.PathValue("stream"), topic, f)
	if err != nil {
		return err
	}
	h.answer(w, http.StatusCreated, api.FrameAck{Camera: camera, Seq: seq, Partition: part, Offset: off})
	return nil
}

// MJPEG handles POST /v1/streams/{stream}/mjpeg?camera=ID: a long-lived
// multipart/x-mixed-replace body of JPEG parts, as IP cameras and `ffmpeg -f mpjpeg` send.
// Each part is stored as it arrives; memory is bounded by one frame. The boundary comes
// from Content-Type or, when that is missing (ffmpeg sends none), from the first line.
// A part that is not a decodable image is skipped and counted; a malformed multipart
// stream ends the request with an error, keeping the frames before it. At most
// MaxMJPEGStreams are open at once; beyond that the answer is 503 with Retry-After.
func (h *HTTPPush) MJPEG(w http.ResponseWriter, r *http.Request) {
	if err := h.mjpeg(w, r); err != nil {
		h.answerError(w, r, err)
	}
}

func (h *HTTPPush) mjpeg(w http.ResponseWriter, r *http.Request) error {
	topic, camera, err := h.target(r)
	if err != nil {
		return err
	}
	select {
	case h.streams <- struct{}{}:
		defer func() { <-h.streams }()
	default:
		return &pushError{status: http.StatusServiceUnavailable, retryAfter: 5,
			msg: fmt.Sprintf("this gateway takes at most %d MJPEG streams at once and that many are open; retry later, or push single frames to /frames", h.cfg.MaxMJPEGStreams)}
	}
	br := bufio.NewReaderSize(r.Body, 64<<10)
	boundary, err := mjpegBoundary(r.Header.Get("Content-Type"), br)
	if err != nil {
		return err
	}
	mr := multipart.NewReader(br, boundary)
	sum := api.MJPEGSummary{Camera: camera}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			sum.Error = fmt.Sprintf("malformed multipart stream after %d frames: %v", sum.Frames, err)
			h.cfg.Logger.Warn("mjpeg push ended on a malformed stream", "camera", camera, "frames", sum.Frames, "err", err)
			h.Rejected.Add(1)
			metrics.IngestFrames.WithLabelValues(r.PathValue("stream"), "rejected").Inc()
			h.answer(w, http.StatusBadRequest, sum)
			return nil
		}
		data, err := io.ReadAll(io.LimitReader(p, h.cfg.MaxFrameBytes+1))
		p.Close()
		if err != nil {
			sum.Error = fmt.Sprintf("reading part after %d frames: %v", sum.Frames, err)
			h.Rejected.Add(1)
			h.answer(w, http.StatusBadRequest, sum)
			return nil
		}
		if int64(len(data)) > h.cfg.MaxFrameBytes {
			sum.Error = fmt.Sprintf("part %d is larger than %d bytes", sum.Frames+sum.Skipped+1, h.cfg.MaxFrameBytes)
			h.Rejected.Add(1)
			h.answer(w, http.StatusRequestEntityTooLarge, sum)
			return nil
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if ct == "" {
			ct = "image/jpeg"
		}
		jpg, err := asJPEG(ct, data)
		if err != nil {
			sum.Skipped++
			h.Rejected.Add(1)
			metrics.IngestFrames.WithLabelValues(r.PathValue("stream"), "rejected").Inc()
			continue
		}
		now := time.Now()
		f := &wire.Frame{Camera: camera, Seq: h.nextSeq(camera), CaptureTime: now, IngestTime: now, ContentType: wire.ContentJPEG, Data: jpg}
		if _, _, err := h.send(r.PathValue("stream"), topic, f); err != nil {
			sum.Error = err.Error()
			w.Header().Set("Retry-After", "2")
			h.answer(w, http.StatusServiceUnavailable, sum)
			return nil
		}
		if sum.Frames == 0 {
			sum.FirstSeq = f.Seq
		}
		sum.LastSeq = f.Seq
		sum.Frames++
	}
	h.answer(w, http.StatusOK, sum)
	return nil
}

// mjpegBoundary reads the multipart boundary from the Content-Type header, or from the
// stream's first line when the header is missing or not multipart.
func mjpegBoundary(contentType string, br *bufio.Reader) (string, error) {
	if mt, params, err := mime.ParseMediaType(contentType); err == nil && strings.HasPrefix(mt, "multipart/") {
		if b := params["boundary"]; b != "" {
			return strings.Trim(b, `"`), nil
		}
	}
	line, err := br.Peek(80)
	if err != nil && len(line) == 0 {
		return "", fail(http.StatusBadRequest, "empty MJPEG stream")
	}
	first, _, _ := strings.Cut(string(line), "\n")
	first = strings.TrimRight(first, "\r")
	if !strings.HasPrefix(first, "--") || len(first) < 3 {
		return "", fail(http.StatusUnsupportedMediaType,
			"not a multipart MJPEG stream: send Content-Type: multipart/x-mixed-replace;boundary=B (ffmpeg: -content_type 'multipart/x-mixed-replace;boundary=ffmpeg'), or start the body with --BOUNDARY")
	}
	return strings.TrimPrefix(first, "--"), nil
}
