package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// A replay is a deployment with Role replay (see docs/replay.md): its own consumer group
// committed at the window's start offsets, StopAt at the window's end, its own results
// topic. The scaler gives it runners like any deployment and marks it done once the group
// has committed up to StopAt on every partition.

// ReplayRequest is a replay to start.
type ReplayRequest struct {
	Stream string
	// Ref is the function image; its tag is resolved to a digest now.
	Ref      string
	Insecure bool
	// Name names the replay and its results topic; default FUNCTION-MMDD-HHMMSS.
	Name string
	// From and To bound the window (RFC 3339): default the earliest retained frame and the
	// stream's end when the replay starts.
	From, To string
	// Cameras, when not empty, limits the replay to these cameras' frames.
	Cameras []string
	// Max is the most runners (default 1); Batch, Lanes and Device as in Request.
	Max, Batch, Lanes int
	Device            string
	// After replays the function as a second stage over the stored results of function
	// After's primary deployment on the stream (the stream's results topic; the window
	// is that topic's): see chainreplay.go. Classes, MinSize and MaxPerFrame select the
	// detections as for a deploy; none given: the live second stage's of the same
	// function after After, if there is one, else all.
	After       string
	Classes     []string
	MinSize     int
	MaxPerFrame int
}

// StartReplay starts a replay of the function image req.Ref over a window of the frames
// its stream retains (with req.After, as a second stage over a window of the first
// stage's stored results: chainreplay.go). Everything that can be refused is checked
// before anything is created (the image is resolved first), and a failure while creating
// removes what was made: no topic, group or record is left behind.
func (s *Service) StartReplay(ctx context.Context, req ReplayRequest) (wire.Deployment, error) {
	var none wire.Deployment
	if req.Ref == "" {
		return none, errorf(Invalid, "ref: required (a function image, e.g. 127.0.0.1:8080/fn/yolox-nano:v2)")
	}
	st, err := s.Stream(ctx, req.Stream)
	if err != nil {
		return none, err
	}
	from, to, err := parseWindow(req.From, req.To)
	if err != nil {
		return none, err
	}
	for _, c := range req.Cameras {
		if c == "" {
			return none, errorf(Invalid, "cameras: an empty camera id")
		}
	}
	fn, err := s.resolve(ctx, req.Ref, req.Insecure)
	if err != nil {
		return none, err
	}
	now := time.Now().UTC()
	name := req.Name
	if name == "" {
		name = fn.Name + "-" + now.Format("0102-150405")
	}
	if err := wire.ValidName("replay", name); err != nil {
		return none, errorf(Invalid, "%w", err)
	}
	if _, err := s.cfg.Store.Replay(ctx, name); err == nil {
		return none, errorf(Conflict, "replay %q already exists; pick another --name or remove it with: diplip replay rm %s", name, name)
	} else if !errors.Is(err, controlplane.ErrNotFound) {
		return none, err
	}
	planned := Request{Stream: st.Name, Role: wire.RoleReplay, Replay: name, Max: req.Max, Batch: req.Batch, Lanes: req.Lanes, Device: req.Device}
	input := inputOf(st, "frames", "frame", st.Topic)
	if req.After != "" {
		if planned, err = s.replayAfter(ctx, st, fn, req, planned); err != nil {
			return none, err
		}
		input = inputOf(st, "first-stage results", "result", st.ResultsTopic)
	} else if len(req.Classes) > 0 || req.MinSize != 0 || req.MaxPerFrame != 0 {
		return none, errorf(Invalid, "classes, min_size, max_per_frame: they select a first stage's detections; add after FUNCTION")
	}
	d, _, err := plan(planned, fn)
	if err != nil {
		return none, err
	}
	start, stop, total, err := s.window(ctx, input, req, from, to)
	if err != nil {
		return none, err
	}
	d.Cameras, d.StartAt, d.StopAt, d.Updated = req.Cameras, start, stop, now
	d.Replay.From, d.Replay.To, d.Replay.Total, d.Replay.Created = from, to, total, now

	topic := d.ResultsTopic(st)
	if err := s.cfg.Kafka.CreateTopics([]kafkaclient.TopicSpec{topicSpec(st, topic)}); err != nil {
		return none, errorf(Upstream, "kafka: %w", err)
	}
	undo := func() {
		if err := s.cfg.Kafka.DeleteGroup(d.Group()); err != nil {
			s.log.Warn("could not remove a failed replay's group", "group", d.Group(), "err", err)
		}
		if err := s.cfg.Kafka.DeleteTopics(topic); err != nil {
			s.log.Warn("could not remove a failed replay's topic", "topic", topic, "err", err)
		}
	}
	if err := s.cfg.Kafka.CommitGroupAt(d.Group(), d.InputTopic(st), start); err != nil {
		undo()
		return none, errorf(Upstream, "kafka: setting where replay %s starts: %w", name, err)
	}
	stored, err := s.cfg.Store.PutDeployment(context.WithoutCancel(ctx), d)
	if err != nil {
		undo()
		return none, err
	}
	return stored, nil
}

// replayInput is what a replay runs over: a topic of the stream and what its records are.
type replayInput struct {
	stream, topic string
	what, one     string // its records: frames (one: frame), or first-stage results (result)
}

func inputOf(st wire.Stream, what, one, topic string) replayInput {
	return replayInput{stream: st.Name, topic: topic, what: what, one: one}
}

// window turns a replay's times into offsets of its input topic (the stream's frames, or
// for a second stage its first stage's results): where it starts and stops on each
// partition, and how many records lie between.
func (s *Service) window(ctx context.Context, in replayInput, req ReplayRequest, from, to time.Time) (start, stop map[int32]int64, total int64, err error) {
	retained := s.cfg.Kafka.RetentionWindow
	if in.one != "frame" { // a results topic may end with a transaction marker
		retained = s.retentionWindow
	}
	win, err := retained(ctx, in.topic)
	if err != nil {
		return nil, nil, 0, errorf(Upstream, "kafka: reading what stream %s holds: %w", in.stream, err)
	}
	if win.Empty() {
		return nil, nil, 0, errorf(Invalid, "stream %q holds no %s to replay", in.stream, in.what)
	}
	window := fmt.Sprintf("stream %q holds %s from %s to %s", in.stream, in.what, win.First.UTC().Format(time.RFC3339Nano), win.Last.UTC().Format(time.RFC3339Nano))
	if in.one != "frame" {
		window += " (" + in.topic + ")"
	}
	// RFC 3339 times here have whole seconds: compare with the window's to the second.
	first, last := win.First.Truncate(time.Second), win.Last
	switch {
	case !from.IsZero() && from.Before(first):
		return nil, nil, 0, errorf(Invalid, "from %s is before the earliest retained %s: %s", req.From, in.one, window)
	case !from.IsZero() && from.After(last):
		return nil, nil, 0, errorf(Invalid, "from %s is after the latest %s: %s", req.From, in.one, window)
	case !to.IsZero() && !to.After(first):
		return nil, nil, 0, errorf(Invalid, "to %s is not after the earliest retained %s: %s", req.To, in.one, window)
	}
	start, stop = win.Start, win.End
	if !from.IsZero() {
		if start, err = s.cfg.Kafka.OffsetsAt(in.topic, from); err != nil {
			return nil, nil, 0, errorf(Upstream, "kafka: offsets at %s: %w", req.From, err)
		}
	}
	if !to.IsZero() {
		if stop, err = s.cfg.Kafka.OffsetsAt(in.topic, to); err != nil {
			return nil, nil, 0, errorf(Upstream, "kafka: offsets at %s: %w", req.To, err)
		}
	}
	for p := range stop {
		stop[p] = max(stop[p], start[p])
		total += stop[p] - start[p]
	}
	return start, stop, total, nil
}

// ReplayProgress is how many of replay d's frames (a second stage's: records of its
// input) its group has committed (0 once it is done: its record has the Total). An error
// says why the count is missing.
func (s *Service) ReplayProgress(ctx context.Context, d wire.Deployment) (processed int64, err error) {
	st, err := s.cfg.Store.Stream(ctx, d.Stream)
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	if d.Finished() {
		return 0, nil
	}
	next, err := s.cfg.Kafka.Committed(d.Group(), d.InputTopic(st))
	if err != nil {
		return 0, fmt.Errorf("kafka: %w", err)
	}
	for p, end := range d.StopAt {
		processed += min(max(next[p]-d.StartAt[p], 0), end-d.StartAt[p])
	}
	return processed, nil
}

// RemoveReplay removes the replay called name: the record first (the scaler then sends
// its runners back to idle), then its results topic, then its consumer group once no
// runner is a member any more.
func (s *Service) RemoveReplay(ctx context.Context, name string) error {
	d, err := s.Replay(ctx, name)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteDeploymentKey(ctx, d.Key()); err != nil && !errors.Is(err, controlplane.ErrNotFound) {
		return err
	}
	if err := s.cfg.Kafka.DeleteTopics(wire.ReplayResultsTopic(d.Stream, d.ReplayName())); err != nil {
		return errorf(Upstream, "kafka: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.cfg.Kafka.DeleteGroup(d.Group())
		if err == nil {
			return nil
		}
		if !errors.Is(err, sarama.ErrNonEmptyGroup) || time.Now().After(deadline) {
			return errorf(Upstream, "kafka: %w (the replay record and topic are gone; remove the group with any Kafka tool)", err)
		}
		select { // its runners are leaving the group
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
