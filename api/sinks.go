package api

import "time"

// SinkRequest is the body of POST /v1/sinks: a consumer of a stream's results that sends
// events to one target, a webhook (Webhook) or an MQTT broker (MQTT).
type SinkRequest struct {
	Name     string `json:"name"`
	Stream   string `json:"stream"`
	Function string `json:"function,omitempty"` // only this function's results
	Webhook  string `json:"webhook,omitempty"`  // http(s)://...
	// SecretEnv names the environment variable (of the process running the sink) whose
	// value signs webhook requests (X-Diplip-Signature).
	SecretEnv string            `json:"secret_env,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"` // sent with every webhook request
	MQTT      string            `json:"mqtt,omitempty"`    // mqtt://HOST:PORT
	// TopicPrefix of MQTT topics; default diplip.
	TopicPrefix string `json:"topic_prefix,omitempty"`
	Username    string `json:"username,omitempty"`
	PasswordEnv string `json:"password_env,omitempty"`
	// Filters: event kinds (crossed, entered, left, detected), classes (labels), cameras,
	// zones, the least detection score; empty: all.
	Events   []string `json:"events,omitempty"`
	Classes  []string `json:"classes,omitempty"`
	Cameras  []string `json:"cameras,omitempty"`
	Zones    []string `json:"zones,omitempty"`
	MinScore float32  `json:"min_score,omitempty"`
	// Cooldown (a duration, "5s") is the least time between two events of one camera and
	// zone (or class, for detected).
	Cooldown string `json:"cooldown,omitempty"`
	// MaxAttempts (default 10) and MaxAge (default "1h", since the first attempt) bound the
	// delivery of one event before it goes to the dead-letter topic.
	MaxAttempts    int    `json:"max_attempts,omitempty"`
	MaxAge         string `json:"max_age,omitempty"`
	AllowLinkLocal bool   `json:"allow_link_local,omitempty"`
}

// Sink is a sink as listed: its settings (secrets only by the variable that holds them,
// header values hidden) and its state.
type Sink struct {
	Name           string     `json:"name"`
	Stream         string     `json:"stream"`
	Function       string     `json:"function,omitempty"`
	Target         string     `json:"target"` // webhook or mqtt
	URL            string     `json:"url"`
	SecretEnv      string     `json:"secret_env,omitempty"`
	Headers        []string   `json:"headers,omitempty"` // names only
	TopicPrefix    string     `json:"topic_prefix,omitempty"`
	Username       string     `json:"username,omitempty"`
	PasswordEnv    string     `json:"password_env,omitempty"`
	Events         []string   `json:"events,omitempty"`
	Classes        []string   `json:"classes,omitempty"`
	Cameras        []string   `json:"cameras,omitempty"`
	Zones          []string   `json:"zones,omitempty"`
	MinScore       float32    `json:"min_score,omitempty"`
	Cooldown       string     `json:"cooldown,omitempty"`
	MaxAttempts    int        `json:"max_attempts"`
	MaxAge         string     `json:"max_age"`
	AllowLinkLocal bool       `json:"allow_link_local,omitempty"`
	Created        time.Time  `json:"created"`
	Status         SinkStatus `json:"status"`
}

// SinkStatus is what a sink did in the process that answers (the gateway's node), and
// its consumer group's lag.
type SinkStatus struct {
	State        string    `json:"state"` // starting, running, retrying, failed, stopped (not run here)
	Delivered    int64     `json:"delivered"`
	Failed       int64     `json:"failed"`   // attempts that failed
	Retrying     int64     `json:"retrying"` // events waiting for a retry now
	DeadLettered int64     `json:"dead_lettered"`
	Lag          int64     `json:"lag"` // results not yet handled
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
}

// Sink states.
const (
	SinkStarting = "starting"
	SinkRunning  = "running"
	SinkRetrying = "retrying"
	SinkFailed   = "failed"
	SinkStopped  = "stopped"
)

// SinkEvent is what a sink delivers: the JSON body of a webhook request and the payload
// on PREFIX/STREAM/CAMERA/events. ID is stable (the result's id, the kind, the zone and
// the track), so a receiver drops duplicates by it: delivery is at least once.
type SinkEvent struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"` // crossed, entered, left, detected (test: sink test)
	Sink        string    `json:"sink"`
	Stream      string    `json:"stream"`
	Camera      string    `json:"camera"`
	Seq         uint64    `json:"seq"`
	Function    string    `json:"function"`
	ResultID    string    `json:"result_id"`
	CaptureTime time.Time `json:"capture_time"`
	// Zone events: the zone, the direction of a crossing (in, out), the track.
	Zone      string `json:"zone,omitempty"`
	Direction string `json:"direction,omitempty"`
	TrackID   uint64 `json:"track_id,omitempty"`
	ClassID   int    `json:"class_id"`
	Label     string `json:"label,omitempty"`
	// Score and Box are the detection's (the track's on this frame, for zone events).
	Score float32 `json:"score,omitempty"`
	Box   *Box    `json:"box,omitempty"`
	// Detections of the class, for detected.
	Detections []Detection `json:"detections,omitempty"`
	// Counts are the zone's running counts as of this frame, for zone events.
	Counts []ZoneCount `json:"counts,omitempty"`
	// Snapshot is the frame's JPEG on the gateway (behind its token):
	// GATEWAY/v1/streams/STREAM/frames/PARTITION/OFFSET, while the stream's retention keeps it.
	Snapshot string `json:"snapshot_url,omitempty"`
	// Crop is the snapshot cut to Box (SNAPSHOT?box=x1,y1,x2,y2), for events with a box.
	Crop string `json:"crop_url,omitempty"`
}

// SinkCount is the retained payload of PREFIX/STREAM/CAMERA/ZONE/CLASS/count.
type SinkCount struct {
	Stream      string    `json:"stream"`
	Camera      string    `json:"camera"`
	Zone        string    `json:"zone"`
	Class       string    `json:"class"`
	In          int64     `json:"in"`
	Out         int64     `json:"out"`
	Entered     int64     `json:"entered"`
	Left        int64     `json:"left"`
	Inside      int64     `json:"inside"`
	CaptureTime time.Time `json:"capture_time"`
}

// DeadLetter is an event a sink gave up on, as kept on its dead-letter topic.
type DeadLetter struct {
	Sink         string    `json:"sink"`
	Event        SinkEvent `json:"event"`
	Reason       string    `json:"reason"`
	Attempts     int       `json:"attempts"`
	FirstAttempt time.Time `json:"first_attempt"`
	LastAttempt  time.Time `json:"last_attempt"`
	Partition    int32     `json:"partition"` // its place on the dead-letter topic
	Offset       int64     `json:"offset"`
}

// SinkTestResult answers POST /v1/sinks/{name}/test: what the target said to a sample event.
type SinkTestResult struct {
	Event  SinkEvent `json:"event"`
	OK     bool      `json:"ok"`
	Answer string    `json:"answer"` // "HTTP 200 OK", "PUBACK", or the error
	Millis float64   `json:"ms"`
}

// ReplayDeadResult answers POST /v1/sinks/{name}/replay-dead.
type ReplayDeadResult struct {
	Replayed  int `json:"replayed"`  // delivered
	Failed    int `json:"failed"`    // dead-lettered again
	Remaining int `json:"remaining"` // left for a later replay (the call's time ran out)
}
