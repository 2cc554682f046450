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
	// FirstFrame and LastFrame are the times of the earliest and the latest frame the
	// stream still holds (its retention window); absent when it holds none.
	FirstFrame time.Time `json:"first_frame,omitzero"`
	LastFrame  time.Time `json:"last_frame,omitzero"`
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
	// Quantized: the image is an INT8 copy made by `diplip fn quantize`; its labels
	// io.diplip.function.quantized.* by the part after the prefix (from, stream, window,
	// method, agreement).
	Quantized map[string]string `json:"quantized,omitempty"`
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
	// Delivery is at-least-once (the default) or exactly-once: results, tracker
	// checkpoints and consumed offsets in one Kafka transaction per partition (refused
	// when the cluster cannot run transactions). A shadow takes its primary's by default.
	Delivery string `json:"delivery,omitempty"`
	// From starts a new replay deployment at the first frame stored at or after this time
	// (RFC 3339); without it a replay starts at the earliest retained frame. A new live
	// deployment starts at the stream's end.
	From string `json:"from,omitempty"`
	// Track turns on the tracker stage (track ids, zone counts) with the spec's `track:`
	// parameters or the defaults; a spec with `track:` tracks without it.
	Track bool `json:"track,omitempty"`
	// Shadow deploys the image as the stream's shadow: next to the primary deployment of
	// the same function, in a consumer group of its own, with its results on the stream's
	// shadow results topic. The primary is not touched.
	Shadow bool `json:"shadow,omitempty"`
	// After deploys the image as a second stage on the results of the function After
	// deployed on the stream: it crops the selected detections from their frames and
	// writes enriched results (each selected detection with its embedding or labels) to a
	// results topic of its own. Classes (the first stage's labels), MinSize (box height in
	// pixels) and MaxPerFrame (the highest scoring first) select the detections; zero: all.
	After       string   `json:"after,omitempty"`
	Classes     []string `json:"classes,omitempty"`
	MinSize     int      `json:"min_size,omitempty"`
	MaxPerFrame int      `json:"max_per_frame,omitempty"`
}

// Deployment runs a function on a stream; deploying a new image to the same pair is a
// rolling update (Generation counts them).
type Deployment struct {
	Function string `json:"function"`
	Stream   string `json:"stream"`
	Digest   string `json:"digest"`
	Min      int    `json:"min"`
	Max      int    `json:"max"`
	Batch    int    `json:"batch"`
	Lanes    int    `json:"lanes,omitempty"`
	Track    bool   `json:"track,omitempty"` // the tracker stage runs (track ids, zone counts)
	Device   string `json:"device"`
	Policy   string `json:"policy"`
	MaxAge   string `json:"max_age,omitempty"`
	Delivery string `json:"delivery"` // at-least-once or exactly-once
	// Role is "primary", "shadow", "replay" or "after" (a second stage).
	Role string `json:"role"`
	// Replay is a replay deployment's name.
	Replay string `json:"replay,omitempty"`
	// After is a second stage's first stage, with what it selects of its detections.
	After        string   `json:"after,omitempty"`
	Classes      []string `json:"classes,omitempty"`
	MinSize      int      `json:"min_size,omitempty"`
	MaxPerFrame  int      `json:"max_per_frame,omitempty"`
	ResultsTopic string   `json:"results_topic,omitempty"` // a second stage's own results topic
	// Quantized: the deployment runs an INT8 copy (as Function.Quantized).
	Quantized  map[string]string `json:"quantized,omitempty"`
	Updated    time.Time         `json:"updated"`
	Generation int               `json:"generation"`
}

// Key is the deployment's key, as /v1/resources and lag maps use it: FUNCTION.STREAM for
// a primary, FUNCTION.STREAM.shadow, FUNCTION.STREAM.replay.NAME,
// FUNCTION.STREAM.after.FIRST for a second stage and FUNCTION.STREAM.after.FIRST.shadow
// for its shadow.
func (d Deployment) Key() string {
	key := d.Function + "." + d.Stream
	switch d.Role {
	case "shadow":
		if d.After != "" {
			return key + ".after." + d.After + ".shadow"
		}
		return key + ".shadow"
	case "replay":
		return key + ".replay." + d.Replay
	case "after":
		return key + ".after." + d.After
	}
	return key
}

// ReplayRequest is the body of POST /v1/replays: run a function image over the frames a
// stream still holds, in a window.
type ReplayRequest struct {
	Stream   string `json:"stream"`
	Ref      string `json:"ref"` // a function image; its tag is resolved to a digest now
	Insecure bool   `json:"insecure,omitempty"`
	// Name names the replay and its results topic; default FUNCTION-MMDD-HHMMSS.
	Name string `json:"name,omitempty"`
	// From and To bound the window (RFC 3339): default the earliest retained frame and
	// the stream's end when the replay starts.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Cameras, when not empty, limits the replay to these cameras' frames.
	Cameras []string `json:"cameras,omitempty"`
	Max     int      `json:"max,omitempty"` // most runners; default 1
	Batch   int      `json:"batch,omitempty"`
	Lanes   int      `json:"lanes,omitempty"`
	Device  string   `json:"device,omitempty"`
	// After replays the image as a second stage over the stored results of the function
	// After deployed on the stream (the stream's results topic, whose records From and To
	// then bound), not over the frames. Classes, MinSize and MaxPerFrame select the
	// detections as for a deploy; none given: the live second stage's, if one runs.
	After       string   `json:"after,omitempty"`
	Classes     []string `json:"classes,omitempty"`
	MinSize     int      `json:"min_size,omitempty"`
	MaxPerFrame int      `json:"max_per_frame,omitempty"`
}

// Replay is a replay and its progress.
type Replay struct {
	Name     string `json:"name"`
	Stream   string `json:"stream"`
	Function string `json:"function"`
	// After is the first stage of a chain's replay: the function whose stored results the
	// replay's second stage runs on (empty for a plain replay).
	After        string    `json:"after,omitempty"`
	Digest       string    `json:"digest"`
	ResultsTopic string    `json:"results_topic"`
	Group        string    `json:"group"`
	From         time.Time `json:"from,omitzero"`
	To           time.Time `json:"to,omitzero"`
	Cameras      []string  `json:"cameras,omitempty"`
	Max          int       `json:"max"`
	// Total is how many frames the window holds; Processed how many of them the replay's
	// group has committed (results written, or skipped for another camera).
	Total     int64 `json:"total"`
	Processed int64 `json:"processed"`
	// State is running or done.
	State    string    `json:"state"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
	// Error says why Processed is missing (Kafka unreachable).
	Error string `json:"error,omitempty"`
}

// Replay states.
const (
	ReplayRunning = "running"
	ReplayDone    = "done"
)

// Diff is the answer of GET /v1/streams/{stream}/diff: a candidate's results (a shadow or
// a replay) compared frame by frame with the primary's.
type Diff struct {
	Stream    string   `json:"stream"`
	Primary   DiffSide `json:"primary"`
	Candidate DiffSide `json:"candidate"`
	// IoU is the threshold at which two detections of the same class match.
	IoU float64 `json:"iou"`
	// Frames both sides have; frames only one side has.
	Frames        int `json:"frames"`
	OnlyPrimary   int `json:"only_primary"`
	OnlyCandidate int `json:"only_candidate"`
	// Classes holds the scores per class; Overall over every class.
	Classes []DiffClass `json:"classes"`
	Overall DiffClass   `json:"overall"`
	// Chain, for a second stage's shadow or replay (compared with the live second stage,
	// side kind "after"), compares the second stage's outputs on the detections both have.
	Chain *DiffChain `json:"chain,omitempty"`
}

// DiffChain compares a second stage's output on the detections of the frames both sides
// have: embeddings (an embed function) by cosine similarity, labels (a classify function)
// by their best label.
type DiffChain struct {
	First string `json:"first"` // the first stage
	// Detections is how many detections were paired (the same first-stage detection).
	Detections int `json:"detections"`
	// PrimaryEmbedded and CandidateEmbedded count the detections with an embedding on
	// each side; Embedded the pairs with one on both, whose cosine similarity has mean
	// CosineMean and 10th percentile CosineP10.
	PrimaryEmbedded   int     `json:"primary_embedded"`
	CandidateEmbedded int     `json:"candidate_embedded"`
	Embedded          int     `json:"embedded"`
	CosineMean        float64 `json:"cosine_mean"`
	CosineP10         float64 `json:"cosine_p10"`
	// PrimaryLabeled and CandidateLabeled count the detections with labels on each side;
	// Labeled the pairs with labels on both, Top1Agreement the share of them with the
	// same best label (0 without pairs).
	PrimaryLabeled   int     `json:"primary_labeled"`
	CandidateLabeled int     `json:"candidate_labeled"`
	Labeled          int     `json:"labeled"`
	Top1Agreement    float64 `json:"top1_agreement"`
}

// DiffSide is one side of a diff.
type DiffSide struct {
	Kind     string   `json:"kind"` // primary, shadow or replay
	Name     string   `json:"name,omitempty"`
	Function string   `json:"function"`
	Digests  []string `json:"digests"`
	Topic    string   `json:"topic"`
	// Results read from the topic for the compared window, ok ones only.
	Results int `json:"results"`
	// LatencyP50Ms and LatencyP99Ms are over the frames both sides have: end to end
	// (capture to result) for a shadow diff, decode + preprocess + inference for a replay
	// diff (a replayed frame's end to end is mostly its age).
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
}

// DiffClass is the candidate's score against the primary for one class (ClassID -1 and
// label "all": every class).
type DiffClass struct {
	ClassID   int     `json:"class_id"`
	Label     string  `json:"label"`
	Primary   int     `json:"primary"`
	Candidate int     `json:"candidate"`
	Matched   int     `json:"matched"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	MeanIoU   float64 `json:"mean_iou"`
	// CountDelta is Candidate - Primary.
	CountDelta int `json:"count_delta"`
}

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
	ID       string   `json:"id"`
	Host     string   `json:"host"`
	PID      int      `json:"pid"`
	CPUs     int      `json:"cpus"`
	MemoryMB int64    `json:"memory_mb"`
	Devices  []string `json:"devices"` // "cpu", and "cuda:N" where the CUDA provider works
	// Providers are the ONNX Runtime execution providers that work there.
	Providers []string `json:"providers"`
	GPUs      []GPU    `json:"gpus,omitempty"` // what nvidia-smi reports, where it exists
	// State is idle, loading or active.
	State      string `json:"state"`
	Deployment string `json:"deployment,omitempty"`
	Digest     string `json:"digest,omitempty"`
	// Generation is the active deployment's generation (a redeploy with other settings
	// on the same image is a rolling update too).
	Generation int     `json:"generation,omitempty"`
	Partitions []int32 `json:"partitions,omitempty"`
	Frames     int64   `json:"frames"`
	RateFPS    float64 `json:"rate_fps"` // frames per second over the last heartbeat interval
	Lanes      int     `json:"lanes,omitempty"`
	// BatchMode is "batch" (one run, dynamic batch axis) or "per-frame".
	BatchMode  string    `json:"batch_mode,omitempty"`
	MetricsURL string    `json:"metrics_url,omitempty"` // where the runner serves Prometheus metrics
	Unhealthy  string    `json:"unhealthy,omitempty"`   // why the active function keeps failing
	LastError  string    `json:"last_error,omitempty"`  // why the last activation failed
	Sent       time.Time `json:"sent"`
}

// GPU is one accelerator as nvidia-smi reports it.
type GPU struct {
	Index    int    `json:"index"`
	Name     string `json:"name"`
	MemoryMB int64  `json:"memory_mb"`
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

// Result statuses.
const (
	StatusOK      = "ok"      // the function ran on the frame
	StatusSkipped = "skipped" // live policy: the frame was older than the deployment's max age
	StatusError   = "error"   // the frame could not be processed (e.g. a corrupt JPEG)
)

// Result is one frame's result, served exactly as it is on the stream's results topic
// (GET /v1/streams/{stream}/results, NDJSON or server-sent events). The record on the
// topic is internal/wire's Result; this is the same JSON read by a client, so a field
// added there is added here too (TestResultMatchesTheRecord in gateway keeps them equal).
type Result struct {
	ID          string               `json:"id"` // stream/camera/seq/digest prefix: drop duplicates by it
	Stream      string               `json:"stream"`
	Camera      string               `json:"camera"`
	Seq         uint64               `json:"seq"`
	CaptureTime time.Time            `json:"capture_time"`
	Function    string               `json:"function"`
	Digest      string               `json:"digest"`
	Status      string               `json:"status"` // ok, skipped or error
	Error       string               `json:"error,omitempty"`
	Width       int                  `json:"width,omitempty"`
	Height      int                  `json:"height,omitempty"`
	Detections  []Detection          `json:"detections,omitempty"`
	Raw         map[string][]float32 `json:"raw,omitempty"`
	Labels      []ClassScore         `json:"labels,omitempty"`    // a classifier's top classes, best first
	Embedding   []float32            `json:"embedding,omitempty"` // an embedder's L2-normalised vector (dot product = cosine similarity)
	Events      []ZoneEvent          `json:"events,omitempty"`    // the tracker's zone events on this frame
	Counts      []ZoneCount          `json:"counts,omitempty"`    // running counts of the camera's zones
	Timings     Timings              `json:"timings_ms"`
	Source      Source               `json:"source"`
	// Stages, on a chain's enriched result, are its functions, first stage first.
	Stages []Stage `json:"stages,omitempty"`
}

// Stage is one function of a chain's result.
type Stage struct {
	Function string `json:"function"`
	Digest   string `json:"digest"`
}

// Detection is one object found on a frame, in source-image pixels.
type Detection struct {
	ClassID int     `json:"class_id"`
	Label   string  `json:"label,omitempty"`
	Score   float32 `json:"score"`
	Box     Box     `json:"box"`
	TrackID uint64  `json:"track_id,omitempty"` // 0: untracked, or not yet confirmed
	// Embedding and Labels are a second stage's output on this detection's crop, on a
	// chain's enriched result: an embedder's unit vector, a classifier's top classes.
	Embedding []float32    `json:"embedding,omitempty"`
	Labels    []ClassScore `json:"labels,omitempty"`
	// Detections are a detector second stage's detections inside this detection's crop,
	// in the frame's pixels.
	Detections []Detection `json:"detections,omitempty"`
}

// ClassScore is one class a classifier gave a frame, with its score.
type ClassScore struct {
	ClassID int     `json:"class_id"`
	Label   string  `json:"label,omitempty"`
	Score   float32 `json:"score"`
}

// Box is a box's corners in source-image pixels.
type Box struct {
	X1 float32 `json:"x1"`
	Y1 float32 `json:"y1"`
	X2 float32 `json:"x2"`
	Y2 float32 `json:"y2"`
}

// ZoneEvent is a track crossing a line (Kind crossed, Direction in or out) or entering or
// leaving an area.
type ZoneEvent struct {
	Zone      string `json:"zone"`
	Kind      string `json:"kind"`
	Direction string `json:"direction,omitempty"`
	TrackID   uint64 `json:"track_id"`
	ClassID   int    `json:"class_id"`
	Label     string `json:"label,omitempty"`
}

// ZoneCount is one zone's running count of one class.
type ZoneCount struct {
	Zone    string `json:"zone"`
	ClassID int    `json:"class_id"`
	Label   string `json:"label,omitempty"`
	In      int64  `json:"in,omitempty"`
	Out     int64  `json:"out,omitempty"`
	Entered int64  `json:"entered,omitempty"`
	Left    int64  `json:"left,omitempty"`
	Inside  int64  `json:"inside,omitempty"`
}

// Timings are a result's times in milliseconds.
type Timings struct {
	Queue      float64 `json:"queue"`      // ingest to the start of its batch
	Decode     float64 `json:"decode"`     // per frame
	Preprocess float64 `json:"preprocess"` // per frame
	Infer      float64 `json:"infer"`      // the batch's inference / batch size
	EndToEnd   float64 `json:"end_to_end"` // capture to result produced
	Batch      int     `json:"batch_size"`
}

// Source is where the frame is stored on the stream's frames topic.
type Source struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

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
