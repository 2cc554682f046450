package wire

import (
	"errors"
	"fmt"
	"slices"
)

// RoleAfter is a second stage: it consumes the results of the primary deployment of
// another function (the first stage) on the same stream, reads each result's frame by the
// offset the result names, runs its model on the crops of the selected detections and
// writes an enriched result per frame to a results topic of its own.
//
// A shadow (RoleShadow) or a replay (RoleReplay) with After set is a second stage too:
// the shadow of a live second stage, or a second stage replayed over the first stage's
// stored results. What makes a deployment a second stage is After (SecondStage); the role
// says only whether it is the live one, a shadow or a replay.
const RoleAfter Role = "after"

// AfterInfo is what a second stage carries besides the deployment fields.
type AfterInfo struct {
	// Function is the first stage: a function with a primary deployment on the stream.
	Function string `json:"function"`
	// Classes, when not empty, selects the first stage's detections by label.
	Classes []string `json:"classes,omitempty"`
	// MinSize skips detections whose box is less than this many pixels high (0: none).
	MinSize int `json:"min_size,omitempty"`
	// MaxPerFrame keeps at most this many selected detections per frame, the highest
	// scoring first (0: all).
	MaxPerFrame int `json:"max_per_frame,omitempty"`
}

// AfterKey is the key of the second stage function running after first on stream:
// FUNCTION.STREAM.after.FIRST, which never collides with the stream's primary, shadow or
// replays of the same function.
func AfterKey(function, stream, first string) string {
	return DeploymentKey(function, stream) + ".after." + first
}

// AfterShadowKey is the key of the shadow of the second stage function after first on
// stream: FUNCTION.STREAM.after.FIRST.shadow.
func AfterShadowKey(function, stream, first string) string {
	return AfterKey(function, stream, first) + ".shadow"
}

// AfterResultsTopic is the results topic of the second stage function after first on
// stream (partitioned like the stream, key = camera).
func AfterResultsTopic(stream, first, function string) string {
	return "diplip.results." + stream + ".after." + first + "." + function
}

// AfterShadowResultsTopic is the results topic of the shadow of the second stage function
// after first on stream.
func AfterShadowResultsTopic(stream, first, function string) string {
	return AfterResultsTopic(stream, first, function) + ".shadow"
}

// SecondStage reports whether the deployment runs on a first stage's results (After is
// set): a live second stage (role after), its shadow, or a replay of one.
func (d Deployment) SecondStage() bool { return d.After != nil }

// AfterName is a second stage's first stage; empty for other deployments.
func (d Deployment) AfterName() string {
	if d.After == nil {
		return ""
	}
	return d.After.Function
}

// InputTopic is the topic the deployment's group consumes: the stream's frames, or for a
// second stage (live, shadow or replay) the first stage's results (the stream's results
// topic, which a primary writes to).
func (d Deployment) InputTopic(st Stream) string {
	if d.SecondStage() {
		if st.FramesTopic != "" { // already as a runner sees it (ForRunner)
			return st.Topic
		}
		return st.ResultsTopic
	}
	return st.Topic
}

// Selects says whether a second stage runs on detection x of its first stage.
func (a *AfterInfo) Selects(x Detection) bool {
	if len(a.Classes) > 0 && !slices.Contains(a.Classes, x.Label) {
		return false
	}
	return a.MinSize <= 0 || x.Box.Y2-x.Box.Y1 >= float32(a.MinSize)
}

func (a *AfterInfo) validate(function string) error {
	switch {
	case a == nil:
		return errors.New("a second stage needs its after record")
	case a.Function == function:
		return fmt.Errorf("after %q: a function cannot run after itself", a.Function)
	case a.MinSize < 0 || a.MaxPerFrame < 0:
		return fmt.Errorf("min_size %d, max_per_frame %d: want 0 or more", a.MinSize, a.MaxPerFrame)
	}
	return ValidName("function", a.Function)
}

// Stage names one function of a chain's result, first stage first.
type Stage struct {
	Function string `json:"function"`
	Digest   string `json:"digest"`
}
