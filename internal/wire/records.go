package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The control-plane records: what the gateway stores in NATS JetStream key-value buckets
// (internal/controlplane keeps them) and hands to runners in activations. Their JSON is
// the stored form; the /v1 API answers with its own types (package api).

// Stream is a Kafka topic that cameras write frames to.
type Stream struct {
	Name         string `json:"name"`
	Topic        string `json:"topic"`
	ResultsTopic string `json:"results_topic"`
	// FramesTopic is set only in a second stage's activation (Deployment.ForRunner): there
	// Topic is its input (the first stage's results) and FramesTopic holds the frames it
	// reads by the offsets those results name.
	FramesTopic    string    `json:"frames_topic,omitempty"`
	Partitions     int32     `json:"partitions"`
	Replication    int16     `json:"replication"`
	RetentionMs    int64     `json:"retention_ms,omitempty"`
	RetentionBytes int64     `json:"retention_bytes,omitempty"`
	Created        time.Time `json:"created"`
}

// Function is a function image known to the platform, pinned by digest.
type Function struct {
	Name    string          `json:"name"`
	Ref     string          `json:"ref"`    // as given, e.g. 127.0.0.1:8080/fn/yolox-nano:v1
	Digest  string          `json:"digest"` // repo@sha256:... that runners pull
	Spec    json.RawMessage `json:"spec"`
	Size    int64           `json:"size"` // bytes of config and layers
	Created time.Time       `json:"created"`
	// Quantized holds the image's io.diplip.function.quantized.* labels by the part after
	// the prefix (from, stream, window, method, agreement) when `diplip fn quantize` made
	// it; nil otherwise.
	Quantized map[string]string `json:"quantized,omitempty"`
}

// Camera is a pulled camera: the gateway reads URL and writes its frames to Stream.
type Camera struct {
	ID      string    `json:"id"`
	Stream  string    `json:"stream"`
	URL     string    `json:"url"`
	FPS     float64   `json:"fps,omitempty"`  // sample down to this rate; 0 keeps every frame
	Loop    bool      `json:"loop,omitempty"` // files: start again at the end
	Created time.Time `json:"created"`
}

// Deployment runs a function on a stream. Its key is "FUNCTION.STREAM": one deployment
// per (function, stream); deploying a new digest to the pair is a rolling update.
type Deployment struct {
	Function string   `json:"function"`
	Stream   string   `json:"stream"`
	Digest   string   `json:"digest"`
	Min      int      `json:"min"`
	Max      int      `json:"max"`
	Batch    int      `json:"batch"`
	Device   Device   `json:"device"` // cpu, cuda:N or any
	Policy   Policy   `json:"policy"` // live or replay
	MaxAge   Duration `json:"max_age,omitempty"`
	// Delivery is at-least-once (empty) or exactly-once (results and offsets in Kafka
	// transactions).
	Delivery Delivery `json:"delivery,omitempty"`
	// Lanes is how many inferences each runner runs at once; 0: the runner's default.
	Lanes int `json:"lanes,omitempty"`
	// Cameras, when not empty, limits the deployment to these cameras' frames: the others
	// are committed without a result (a replay of some cameras).
	Cameras []string `json:"cameras,omitempty"`
	// StopAt, when set, is where the deployment's work ends on each partition of the
	// stream (exclusive end offsets): frames at or after it are committed without a result
	// (a replay's window end).
	StopAt map[int32]int64 `json:"stop_at,omitempty"`
	// Track, when set, runs the tracker stage after the model (track ids, zone events).
	Track *TrackParams `json:"track,omitempty"`
	// Role is what the deployment is to its stream: the primary (empty), a shadow next to
	// the primary, a replay over retained frames, or a live second stage (after). It picks
	// the key, the consumer group and the results topic (see Key, Group, ResultsTopic).
	Role Role `json:"role,omitempty"`
	// Replay describes a replay deployment (Role replay): its name, window and state.
	Replay *ReplayInfo `json:"replay,omitempty"`
	// After describes a second stage: the first stage it runs after and which of its
	// detections it runs on (chain.go). Set for role after (the live second stage), and
	// for a shadow or a replay of a second stage; nil for every other deployment.
	After *AfterInfo `json:"after,omitempty"`
	// StartAt is where a shadow's or replay's group started on each partition: a diff
	// compares only frames from there on. A second stage's replay counts it (and StopAt)
	// in its input's offsets, the stream's results topic; a second stage's shadow, whose
	// group starts at that topic's end, records the frames topic's end then.
	StartAt map[int32]int64 `json:"start_at,omitempty"`
	// Quantized is the function image's Quantized at deploy time: the deployment runs an
	// INT8 copy, made from which image and how well it agreed with it.
	Quantized map[string]string `json:"quantized,omitempty"`
	Updated   time.Time         `json:"updated"`
	// Generation counts updates of this deployment (1 when created).
	Generation int `json:"generation"`
}

// Key is the deployment's key in its bucket: FUNCTION.STREAM for a primary,
// FUNCTION.STREAM.shadow for a shadow, FUNCTION.STREAM.replay.NAME for a replay (of a
// second stage too), FUNCTION.STREAM.after.FIRST for a second stage after function FIRST
// and FUNCTION.STREAM.after.FIRST.shadow for its shadow. Names hold no '.', so the keys
// of different roles never collide.
func (d Deployment) Key() string {
	switch d.Role {
	case RoleShadow:
		if d.SecondStage() {
			return AfterShadowKey(d.Function, d.Stream, d.AfterName())
		}
		return ShadowKey(d.Function, d.Stream)
	case RoleReplay:
		return ReplayKey(d.Function, d.Stream, d.ReplayName())
	case RoleAfter:
		return AfterKey(d.Function, d.Stream, d.AfterName())
	}
	return DeploymentKey(d.Function, d.Stream)
}

// DeploymentKey is the key of the (primary) deployment of function on stream.
func DeploymentKey(function, stream string) string { return function + "." + stream }

// Group is the Kafka consumer group of the deployment's runners: diplip.KEY, so a
// primary's is diplip.FUNCTION.STREAM as it always was.
func (d Deployment) Group() string { return "diplip." + d.Key() }

// Duration is a time.Duration written as "2s" in JSON.
type Duration time.Duration

// MarshalText writes the duration as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses the duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like 2s", b)
	}
	*d = Duration(v)
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName checks a stream or function name: it becomes part of Kafka topic names, NATS
// subjects and KV keys, so it is kept to lowercase letters, digits and '-'.
func ValidName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s name %q: want 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// Validate checks a deployment's fields, naming each wrong one.
func (d *Deployment) Validate() error {
	var errs []string
	if err := ValidName("function", d.Function); err != nil {
		errs = append(errs, err.Error())
	}
	if err := ValidName("stream", d.Stream); err != nil {
		errs = append(errs, err.Error())
	}
	if d.Min < 0 || d.Max < 1 || d.Min > d.Max || d.Max > 64 {
		errs = append(errs, fmt.Sprintf("min %d, max %d: want 0 ≤ min ≤ max, 1 ≤ max ≤ 64", d.Min, d.Max))
	}
	if d.Batch < 1 || d.Batch > 256 {
		errs = append(errs, fmt.Sprintf("batch %d: want 1..256", d.Batch))
	}
	if _, err := ParseDevice(string(d.Device)); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := ParsePolicy(string(d.Policy)); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := ParseDelivery(string(d.Delivery)); err != nil {
		errs = append(errs, err.Error())
	}
	if d.Lanes < 0 || d.Lanes > 64 {
		errs = append(errs, fmt.Sprintf("lanes %d: want 0 (the runner's default) to 64", d.Lanes))
	}
	if d.MaxAge < 0 {
		errs = append(errs, "max_age must not be negative")
	}
	switch d.Role {
	case RolePrimary:
		if d.After != nil {
			errs = append(errs, "a primary deployment has no after record (a second stage's role is after)")
		}
	case RoleShadow:
	case RoleReplay:
		if d.Replay == nil {
			errs = append(errs, "a replay deployment needs its replay record")
		} else if err := ValidName("replay", d.Replay.Name); err != nil {
			errs = append(errs, err.Error())
		}
	case RoleAfter:
		if d.After == nil {
			errs = append(errs, "a second stage needs its after record")
		}
	default:
		errs = append(errs, fmt.Sprintf("role %q: want primary (empty), shadow, replay or after", d.Role))
	}
	if d.After != nil {
		if err := d.After.validate(d.Function); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
