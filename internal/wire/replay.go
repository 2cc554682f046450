package wire

import "time"

// Role is what a deployment is to its stream.
type Role string

// Deployment roles.
const (
	// RolePrimary is the deployment whose results are the stream's results.
	RolePrimary Role = ""
	// RoleShadow runs next to the primary of the same function on the same stream, in a
	// consumer group of its own, writing to the stream's shadow results topic; the
	// primary's offsets, results and runners are untouched.
	RoleShadow Role = "shadow"
	// RoleReplay runs a function over a window of retained frames, in a group of its own,
	// writing to a results topic named for the replay; it ends by itself at the window's end.
	RoleReplay Role = "replay"
)

// ReplayInfo is what a replay deployment carries besides the deployment fields: its name,
// the window it was asked for and the state the scaler records.
type ReplayInfo struct {
	// Name is the replay's name, unique among replays; it names the results topic.
	Name string `json:"name"`
	// From and To are the times asked for (zero: the earliest retained frame; the end
	// offsets taken when the replay started).
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Total is how many frames the window holds (the sum of StopAt minus StartAt).
	Total   int64     `json:"total"`
	Created time.Time `json:"created"`
	// Done is set by the scaler once the group's committed offsets reach StopAt on every
	// partition; a done replay has no runners.
	Done     bool      `json:"done,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}

// ShadowKey is the key of the shadow deployment of function on stream.
func ShadowKey(function, stream string) string { return DeploymentKey(function, stream) + ".shadow" }

// ReplayKey is the key of replay name of function on stream.
func ReplayKey(function, stream, name string) string {
	return DeploymentKey(function, stream) + ".replay." + name
}

// ReplayName is a replay deployment's name; empty for other roles.
func (d Deployment) ReplayName() string {
	if d.Replay == nil {
		return ""
	}
	return d.Replay.Name
}

// Finished reports whether the deployment is a replay that reached its window's end: it
// must not be given runners again.
func (d Deployment) Finished() bool {
	return d.Role == RoleReplay && d.Replay != nil && d.Replay.Done
}

// ShadowResultsTopic is the results topic of a stream's shadow deployment.
func ShadowResultsTopic(stream string) string { return "diplip.results." + stream + ".shadow" }

// ReplayResultsTopic is the results topic of replay name on stream.
func ReplayResultsTopic(stream, name string) string {
	return "diplip.results." + stream + ".replay." + name
}

// ResultsTopic is where the deployment's results go: the stream's results topic for a
// primary, its own topic for a shadow, a replay or a second stage (a second stage's
// shadow has its own too; a second stage's replay writes to the replay's like any).
func (d Deployment) ResultsTopic(st Stream) string {
	switch d.Role {
	case RoleShadow:
		if d.SecondStage() {
			return AfterShadowResultsTopic(d.Stream, d.AfterName(), d.Function)
		}
		return ShadowResultsTopic(d.Stream)
	case RoleReplay:
		return ReplayResultsTopic(d.Stream, d.ReplayName())
	case RoleAfter:
		return AfterResultsTopic(d.Stream, d.AfterName(), d.Function)
	}
	return st.ResultsTopic
}

// ResultSubject is the NATS subject the deployment's live results of camera belong on: the
// stream's for a primary; a shadow's and a replay's own otherwise, so that they never mix
// with the primary's live results.
func (d Deployment) ResultSubject(camera string) string {
	switch d.Role {
	case RoleShadow:
		if d.SecondStage() { // more tokens than a stream's shadow: "diplip.shadow.S.*" never matches it
			return "diplip.shadow." + d.Stream + ".after." + d.AfterName() + "." + d.Function + "." + camera
		}
		return "diplip.shadow." + d.Stream + "." + camera
	case RoleReplay:
		return "diplip.replay." + d.Stream + "." + d.ReplayName() + "." + camera
	case RoleAfter:
		return "diplip.after." + d.Stream + "." + d.AfterName() + "." + d.Function + "." + camera
	}
	return ResultSubject(d.Stream, camera)
}

// ForRunner is the stream as a runner of d sees it in its activation: results go to d's
// results topic; a second stage (live, shadow or replay) consumes its input topic (Topic)
// and reads frames from FramesTopic.
func (d Deployment) ForRunner(st Stream) Stream {
	if d.SecondStage() {
		st.FramesTopic, st.Topic = st.Topic, d.InputTopic(st)
	}
	st.ResultsTopic = d.ResultsTopic(st)
	return st
}
