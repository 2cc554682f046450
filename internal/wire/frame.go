// Package wire is the one place diplip's records on Kafka and NATS are defined: the frame
// record cameras' images travel in (frame.go), the result record runners answer with
// (result.go), the control-plane records kept in JetStream (records.go: streams,
// functions, deployments, cameras) and the runner protocol (runner.go: heartbeats,
// activation, typed states, policies and devices). Ingest, runners, the scaler, the
// gateway and tools encode and decode them only through this package.
//
// It imports nothing of diplip, so every floor above can depend on it.
//
// A frame is a plain Kafka record, readable by any Kafka tool:
//
//	key     the camera id (so each camera keeps one partition, in order)
//	value   the image bytes exactly as received when JPEG (never re-encoded)
//	headers diplip-camera     camera id
//	        diplip-seq        per-camera sequence number, decimal
//	        diplip-capture-ms capture time, Unix milliseconds, decimal
//	        diplip-ingest-ms  time the gateway accepted it, Unix milliseconds, decimal
//	        content-type      image/jpeg
//	        diplip-seq-from   "camera" when the camera numbered the frame itself (absent:
//	                          the gateway did, and a retried push cannot be told apart)
package wire

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Header names of a frame record.
const (
	HeaderCamera      = "diplip-camera"
	HeaderSeq         = "diplip-seq"
	HeaderCaptureMs   = "diplip-capture-ms"
	HeaderIngestMs    = "diplip-ingest-ms"
	HeaderContentType = "content-type"
	HeaderSeqFrom     = "diplip-seq-from"
)

// ContentJPEG is the only content type frames are stored in.
const ContentJPEG = "image/jpeg"

// Frame is one camera image with its metadata.
type Frame struct {
	Camera      string
	Seq         uint64
	CaptureTime time.Time
	IngestTime  time.Time
	ContentType string
	Data        []byte
	// CameraSeq says the camera gave Seq (a camera that retries a push sends the same
	// one), so that an exactly-once runner can drop a frame stored twice.
	CameraSeq bool
}

var cameraRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidCamera checks a camera id. It becomes a Kafka key and a NATS subject token, so it
// is kept to letters, digits, '_' and '-'.
func ValidCamera(id string) error {
	if !cameraRE.MatchString(id) {
		return fmt.Errorf("camera id %q: want 1 to 64 letters, digits, '_' or '-'", id)
	}
	return nil
}

// ErrBadFrame is wrapped by every error about a record that is not a valid frame.
var ErrBadFrame = errors.New("not a diplip frame record")

// Header is one record header, in the form Kafka clients carry them (kafkaclient converts
// to and from sarama's records; wire itself links only the standard library).
type Header struct{ Key, Value string }

// Key is the record key a frame is stored under: its camera, so that each camera keeps
// one partition, in order.
func (f *Frame) Key() string { return f.Camera }

// Headers are the frame record's headers, in the order the package comment lists them.
func (f *Frame) Headers() []Header {
	hs := []Header{
		{HeaderCamera, f.Camera},
		{HeaderSeq, strconv.FormatUint(f.Seq, 10)},
		{HeaderCaptureMs, strconv.FormatInt(f.CaptureTime.UnixMilli(), 10)},
		{HeaderIngestMs, strconv.FormatInt(f.IngestTime.UnixMilli(), 10)},
		{HeaderContentType, f.ContentType},
	}
	if f.CameraSeq {
		hs = append(hs, Header{HeaderSeqFrom, "camera"})
	}
	return hs
}

// DecodeFrame reads a frame from a record's key, headers and value. Its Data aliases value.
func DecodeFrame(key string, headers []Header, value []byte) (Frame, error) {
	return decode(key, headers, value)
}

func decode(key string, hs []Header, value []byte) (Frame, error) {
	f := Frame{Data: value}
	var seen int
	for _, h := range hs {
		var err error
		switch h.Key {
		case HeaderCamera:
			f.Camera = h.Value
		case HeaderSeq:
			f.Seq, err = strconv.ParseUint(h.Value, 10, 64)
		case HeaderCaptureMs:
			f.CaptureTime, err = parseMs(h.Value)
		case HeaderIngestMs:
			f.IngestTime, err = parseMs(h.Value)
		case HeaderContentType:
			f.ContentType = h.Value
		case HeaderSeqFrom: // optional
			f.CameraSeq = h.Value == "camera"
			continue
		default:
			continue
		}
		if err != nil {
			return f, fmt.Errorf("%w: header %s=%q: %v", ErrBadFrame, h.Key, h.Value, err)
		}
		seen++
	}
	switch {
	case seen < 5:
		return f, fmt.Errorf("%w: %d of the 5 diplip headers present", ErrBadFrame, seen)
	case f.Camera != key:
		return f, fmt.Errorf("%w: key %q and camera header %q differ", ErrBadFrame, key, f.Camera)
	case ValidCamera(f.Camera) != nil:
		return f, fmt.Errorf("%w: %v", ErrBadFrame, ValidCamera(f.Camera))
	}
	return f, nil
}

func parseMs(s string) (time.Time, error) {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms), nil
}
