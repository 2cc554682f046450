// Package video reads cameras and video files with OpenCV's VideoCapture (FFmpeg backend):
// rtsp://, http(s):// MJPEG and H.264 streams, and files. It is the cgo half of camera
// ingest; package ingest's Camera drives it through the Source interface.
package video

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gocv.io/x/gocv"

	"github.com/diplip/diplip/ingest"
)

// Source is one camera or file read with VideoCapture.
type Source struct {
	url     string
	loop    bool // files only: start again at the end
	quality int
	cap     *gocv.VideoCapture
	frame   gocv.Mat

	// Files play in real time, as a camera would: frame n is due at start + n/fps.
	fps   float64
	start time.Time
	n     int
}

// Open returns a source for url; it connects on Connect. Files loop when loop is set.
func Open(url string, loop bool) (ingest.Source, error) {
	if url == "" {
		return nil, errors.New("camera url: required")
	}
	return &Source{url: url, loop: loop && isFile(url), quality: 90}, nil
}

func isFile(url string) bool {
	return !strings.Contains(url, "://") || strings.HasPrefix(url, "file://")
}

// Connect opens the stream; an unreachable camera is an error wrapping ingest.ErrNotConnected.
func (s *Source) Connect(ctx context.Context) error {
	c, err := gocv.OpenVideoCaptureWithAPI(strings.TrimPrefix(s.url, "file://"), gocv.VideoCaptureFFmpeg)
	if err != nil || !c.IsOpened() {
		if c != nil {
			c.Close()
		}
		return fmt.Errorf("%w: opening %s: %v", ingest.ErrNotConnected, s.url, err)
	}
	s.cap = c
	s.frame = gocv.NewMat()
	s.fps = c.Get(gocv.VideoCaptureFPS)
	if s.fps <= 0 || s.fps > 240 {
		s.fps = 25
	}
	s.start, s.n = time.Now(), 0
	return nil
}

// Read returns the next frame as JPEG. The end of a file is ingest.ErrEndOfInput (or a
// rewind, when looping); a stream that stops delivering is ingest.ErrNotConnected.
func (s *Source) Read(ctx context.Context) ([]byte, time.Time, error) {
	if s.cap == nil {
		return nil, time.Time{}, ingest.ErrNotConnected
	}
	for attempt := 0; ; attempt++ {
		if s.cap.Read(&s.frame) && !s.frame.Empty() {
			break
		}
		if !isFile(s.url) {
			return nil, time.Time{}, fmt.Errorf("%w: %s stopped delivering frames", ingest.ErrNotConnected, s.url)
		}
		if !s.loop || attempt > 0 {
			return nil, time.Time{}, ingest.ErrEndOfInput
		}
		s.cap.Set(gocv.VideoCapturePosFrames, 0) // rewind and try once more
		s.start, s.n = time.Now(), 0
	}
	now := time.Now()
	if isFile(s.url) {
		due := s.start.Add(time.Duration(float64(s.n) / s.fps * float64(time.Second)))
		s.n++
		select {
		case <-time.After(time.Until(due)):
		case <-ctx.Done():
			return nil, now, ctx.Err()
		}
		now = due
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, s.frame, []int{gocv.IMWriteJpegQuality, s.quality})
	if err != nil {
		return nil, now, fmt.Errorf("encoding a frame of %s as JPEG: %w", s.url, err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), now, nil
}

// Close releases the capture.
func (s *Source) Close() error {
	if s.cap != nil {
		s.cap.Close()
		s.frame.Close()
		s.cap = nil
	}
	return nil
}
