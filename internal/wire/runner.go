package wire

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The runner protocol on NATS. Runners publish a Heartbeat every second on
// SubjectHeartbeat; the scaler activates and deactivates one runner with a request on
// ActivateSubject(id) or DeactivateSubject(id), answered with a Reply.

// SubjectHeartbeat is where every runner announces itself.
const SubjectHeartbeat = "diplip.runners.heartbeat"

// SubjectWake is where a gateway says that a stream got frames (the message is the
// stream's name, at most about once a second a stream): the scaler decides at once
// instead of at its next poll, so a deployment scaled to zero wakes sooner.
const SubjectWake = "diplip.streams.wake"

// ActivateSubject is where runner id takes activation requests.
func ActivateSubject(id string) string { return "diplip.runner." + id + ".activate" }

// DeactivateSubject is where runner id takes deactivation requests.
func DeactivateSubject(id string) string { return "diplip.runner." + id + ".deactivate" }

// State is a runner's state.
type State string

// Runner states.
const (
	StateIdle    State = "idle"    // no model, no group membership
	StateLoading State = "loading" // pulling and loading a function
	StateActive  State = "active"  // consuming a deployment's stream
)

// States lists every runner state, in life-cycle order.
var States = []State{StateIdle, StateLoading, StateActive}

// Policy says what a deployment does with frames it cannot keep up with.
type Policy string

// Deployment policies.
const (
	// PolicyLive skips frames older than the deployment's max age (a "skipped" result),
	// so latency stays bounded when load exceeds capacity; a new live deployment starts
	// at the stream's end.
	PolicyLive Policy = "live"
	// PolicyReplay processes every frame, from the stream's earliest retained one.
	PolicyReplay Policy = "replay"
)

// ParsePolicy reads a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyLive, PolicyReplay:
		return p, nil
	}
	return "", fmt.Errorf("policy %q: want live or replay", s)
}

// Delivery is how many times a frame's result reaches the results topic.
type Delivery string

// Delivery modes.
const (
	// AtLeastOnce (the default, also written as "") commits a frame's offset once its
	// result is acknowledged: after a crash or a rebalance some results are written again.
	AtLeastOnce Delivery = "at-least-once"
	// ExactlyOnce writes results, tracker checkpoints and the consumed offsets in one Kafka
	// transaction per partition; readers that read committed data see each result once.
	ExactlyOnce Delivery = "exactly-once"
)

// ParseDelivery reads a delivery mode; "" is at-least-once.
func ParseDelivery(s string) (Delivery, error) {
	switch d := Delivery(s); d {
	case "", AtLeastOnce:
		return AtLeastOnce, nil
	case ExactlyOnce:
		return d, nil
	}
	return "", fmt.Errorf("delivery %q: want at-least-once or exactly-once", s)
}

// Transactional reports whether results are written in transactions.
func (d Delivery) Transactional() bool { return d == ExactlyOnce }

// Device is where a function runs: "cpu", "cuda:N" (GPU N), or, in a deployment, "any".
type Device string

// Devices with fixed names.
const (
	DeviceCPU Device = "cpu"
	DeviceAny Device = "any"
)

// CUDA returns the device of GPU n.
func CUDA(n int) Device { return Device("cuda:" + strconv.Itoa(n)) }

// ParseDevice reads a device name: cpu, any or cuda:N.
func ParseDevice(s string) (Device, error) {
	d := Device(s)
	if d == DeviceCPU || d == DeviceAny {
		return d, nil
	}
	if _, ok := d.GPU(); ok {
		return d, nil
	}
	return "", fmt.Errorf("device %q: want cpu, any or cuda:N", s)
}

// GPU returns the GPU index of a cuda:N device.
func (d Device) GPU() (int, bool) {
	n, ok := strings.CutPrefix(string(d), "cuda:")
	if !ok || n == "" || strings.TrimLeft(n, "0123456789") != "" {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil
}

// Fits reports whether a runner's device have can run a deployment that asks for d:
// "any" fits every device, a cuda:N deployment needs that GPU.
func (d Device) Fits(have Device) bool { return d == DeviceAny || d == have }

// Heartbeat is what a runner announces every second.
type Heartbeat struct {
	ID       string   `json:"id"`
	Host     string   `json:"host"`
	PID      int      `json:"pid"`
	CPUs     int      `json:"cpus"`
	MemoryMB int64    `json:"memory_mb"`
	Devices  []Device `json:"devices"` // "cpu", and "cuda:N" where the CUDA provider works
	// Providers are the ONNX Runtime execution providers that work here.
	Providers []string `json:"providers"`
	// GPUs are what nvidia-smi reports, where it exists.
	GPUs       []GPU  `json:"gpus,omitempty"`
	State      State  `json:"state"`
	Deployment string `json:"deployment,omitempty"`
	Digest     string `json:"digest,omitempty"`
	// Generation is the active deployment's generation: a redeploy with other settings
	// (tracking, lanes, batch, policy) on the same image is a rolling update too.
	Generation int     `json:"generation,omitempty"`
	Partitions []int32 `json:"partitions,omitempty"`
	Frames     int64   `json:"frames"`
	// RateFPS is frames per second over the last heartbeat interval.
	RateFPS float64 `json:"rate_fps"`
	// Lanes is how many inferences the runner runs at once.
	Lanes int `json:"lanes,omitempty"`
	// BatchMode says how the model runs a batch: "batch" (one run, dynamic batch axis)
	// or "per-frame" (the model's batch axis is fixed at 1).
	BatchMode string `json:"batch_mode,omitempty"`
	// MetricsURL is where the runner serves Prometheus metrics.
	MetricsURL string `json:"metrics_url,omitempty"`
	// Unhealthy says why the active function keeps failing; empty when it does not.
	Unhealthy string `json:"unhealthy,omitempty"`
	// LastError says why the runner's last activation failed, if it did.
	LastError string    `json:"last_error,omitempty"`
	Sent      time.Time `json:"sent"`
}

// GPU is one accelerator as nvidia-smi reports it.
type GPU struct {
	Index    int    `json:"index"`
	Name     string `json:"name"`
	MemoryMB int64  `json:"memory_mb"`
}

// Activation asks a runner to work a deployment.
type Activation struct {
	Deployment Deployment `json:"deployment"`
	Stream     Stream     `json:"stream"`
	Brokers    []string   `json:"brokers"`
	// Registry is the gateway's own registry (host:port): the only one a runner sends the
	// platform's token to; every other registry gets the runner's Docker credentials.
	Registry string `json:"registry,omitempty"`
}

// Reply answers an activation or deactivation.
type Reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// ColdStartMs is how long pulling and loading took, in milliseconds.
	ColdStartMs float64 `json:"cold_start_ms,omitempty"`
	// Permanent says the activation would fail the same way again (the device does not
	// exist here, the model does not load): the scaler stops trying until redeployed.
	Permanent bool `json:"permanent,omitempty"`
}
