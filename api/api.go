// Package api holds the request and answer types of the gateway's /v1 HTTP API, as the
// gateway serves them and api/client reads them: no behaviour, snake_case JSON throughout.
// It is the only package the gateway and its clients share, so a client (the CLI, a test,
// another program) links nothing of the server.
//
// The stored control-plane records (internal/wire) are a different shape on purpose: the
// gateway converts, so the stored form can change without changing the API.
package api

import (
	"encoding/json"
	"time"

	"github.com/diplip/diplip/internal/wire"
)

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

// StreamRequest is the body of POST /v1/streams.
type StreamRequest struct {
	Name           string `json:"name"`
	Partitions     int32  `json:"partitions"`
	Replication    int16  `json:"replication,omitempty"` // 0: min(3, brokers)
	RetentionMs    int64  `json:"retention_ms,omitempty"`
	RetentionBytes int64  `json:"retention_bytes,omitempty"`
}

// Stream is a stream: a frames topic and a results topic.
type Stream struct {
	Name           string    `json:"name"`
	Topic          string    `json:"topic"`
	ResultsTopic   string    `json:"results_topic"`
	Partitions     int32     `json:"partitions"`
	Replication    int16     `json:"replication"`
	RetentionMs    int64     `json:"retention_ms,omitempty"`
	RetentionBytes int64     `json:"retention_bytes,omitempty"`
	Created        time.Time `json:"created"`
}

// StreamStatus is a stream with what flows through it, as GET /v1/streams answers.
type StreamStatus struct {
	Stream
	// Frames is how many frames the stream holds (end offsets minus earliest retained).
	Frames int64 `json:"frames"`
	// Lag is each deployment's consumer lag on the stream, by deployment key.
	Lag map[string]int64 `json:"lag"`
	// Error says why Frames and Lag are missing (Kafka unreachable).
	Error string `json:"error,omitempty"`
}

// FunctionRequest is the body of POST /v1/functions: a function image reference.
type FunctionRequest struct {
	Ref      string `json:"ref"`
	Insecure bool   `json:"insecure,omitempty"` // plain HTTP to a non-loopback registry
}

// Function is a function image known to the platform, pinned by digest.
type Function struct {
	Name    string          `json:"name"`
	Ref     string          `json:"ref"`    // as given, e.g. 127.0.0.1:8080/fn/yolox-nano:v1
	Digest  string          `json:"digest"` // repo@sha256:... that runners pull
	Spec    json.RawMessage `json:"spec"`   // the function.yaml, as JSON
	Size    int64           `json:"size"`   // bytes of config and layers
	Created time.Time       `json:"created"`
}

// DeployRequest is the body of POST /v1/deployments.
type DeployRequest struct {
	Ref      string `json:"ref"` // a function image; its tag is resolved to a digest now
	Insecure bool   `json:"insecure,omitempty"`
	Stream   string `json:"stream"`
	Min      int    `json:"min"`
	Max      int    `json:"max,omitempty"`     // default max(1, min)
	Batch    int    `json:"batch,omitempty"`   // default: the spec's batch.max
	Lanes    int    `json:"lanes,omitempty"`   // default: the spec's resources.lanes, else the runner's
	Device   string `json:"device,omitempty"`  // default: the spec's resources.device (gpu → cuda:0)
	Policy   string `json:"policy,omitempty"`  // live (default) or replay
	MaxAge   string `json:"max_age,omitempty"` // live: default 5s
	// From starts a new replay deployment at the first frame stored at or after this time
	// (RFC 3339); without it a replay starts at the earliest retained frame. A new live
	// deployment starts at the stream's end.
	From string `json:"from,omitempty"`
}

// Deployment runs a function on a stream; deploying a new image to the same pair is a
// rolling update (Generation counts them).
type Deployment struct {
	Function   string    `json:"function"`
	Stream     string    `json:"stream"`
	Digest     string    `json:"digest"`
	Min        int       `json:"min"`
	Max        int       `json:"max"`
	Batch      int       `json:"batch"`
	Lanes      int       `json:"lanes,omitempty"`
	Device     string    `json:"device"`
	Policy     string    `json:"policy"`
	MaxAge     string    `json:"max_age,omitempty"`
	Updated    time.Time `json:"updated"`
	Generation int       `json:"generation"`
}

// Key is the deployment's key, FUNCTION.STREAM, as /v1/resources and lag maps use it.
func (d Deployment) Key() string { return wire.DeploymentKey(d.Function, d.Stream) }

// CameraRequest is the body of POST /v1/cameras.
type CameraRequest struct {
	ID     string  `json:"id"`
	Stream string  `json:"stream"`
	URL    string  `json:"url"`
	FPS    float64 `json:"fps,omitempty"`
	Loop   bool    `json:"loop,omitempty"`
}

// Camera is a pulled camera: the gateway reads URL and writes its frames to Stream.
type Camera struct {
	ID      string    `json:"id"`
	Stream  string    `json:"stream"`
	URL     string    `json:"url"`
	FPS     float64   `json:"fps,omitempty"`
	Loop    bool      `json:"loop,omitempty"`
	Created time.Time `json:"created"`
}

// CameraStatus is a camera with its health, as GET /v1/cameras answers.
type CameraStatus struct {
	Camera
	Health CameraHealth `json:"health"`
}

// CameraHealth is what `diplip camera ls` shows.
type CameraHealth struct {
	Connected  bool      `json:"connected"`
	FPS        float64   `json:"fps"` // frames stored per second, last 5 s
	Frames     int64     `json:"frames"`
	Dropped    int64     `json:"dropped"`
	Reconnects int64     `json:"reconnects"`
	LastFrame  time.Time `json:"last_frame,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	Ended      bool      `json:"ended,omitempty"` // a file that was read to its end
}

// Resources is the answer of GET /v1/resources: DiPLIP's step 1, which resources are
// available and what each is running.
type Resources struct {
	Runners     []Runner           `json:"runners"`
	Deployments []DeploymentStatus `json:"deployments"`
}

// Runner is a runner as its last heartbeat described it.
type Runner struct {
	wire.Heartbeat
}

// DeploymentStatus is the scaler's view of one deployment.
type DeploymentStatus struct {
	Key        string    `json:"key"`
	Lag        int64     `json:"lag"`
	Runners    []string  `json:"runners"`
	Desired    int       `json:"desired"`
	RateFPS    float64   `json:"rate_fps"`
	ColdStarts int       `json:"cold_starts"`
	LastCold   float64   `json:"last_cold_start_ms,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	Unhealthy  string    `json:"unhealthy,omitempty"` // a runner's reason when the function keeps failing
	Updated    time.Time `json:"updated"`
}

// Result is one frame's result, served exactly as it is on the stream's results topic
// (GET /v1/streams/{stream}/results, NDJSON or server-sent events).
type Result = wire.Result

// FrameAck answers a pushed frame (POST /v1/streams/{stream}/frames): where Kafka stored it.
type FrameAck struct {
	Camera    string `json:"camera"`
	Seq       uint64 `json:"seq"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// MJPEGSummary answers an MJPEG push (POST /v1/streams/{stream}/mjpeg) when it ends.
type MJPEGSummary struct {
	Camera   string `json:"camera"`
	Frames   int    `json:"frames"`  // stored in Kafka
	Skipped  int    `json:"skipped"` // parts that were not decodable images
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	Error    string `json:"error,omitempty"`
}
