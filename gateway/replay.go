package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// A replay is a deployment with Role replay (see docs/replay.md): its own consumer group
// committed at the window's start offsets, StopAt at the window's end, its own results
// topic. The scaler gives it runners like any deployment and marks it done once the group
// has committed up to StopAt on every partition.

// startReplay serves POST /v1/replays. Everything that can be refused is checked before
// anything is created (the image is resolved first), and a failure while creating removes
// what was made: no topic, group or record is left behind.
func (s *Server) startReplay(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.ReplayRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Ref == "" {
		return errorf(http.StatusBadRequest, "ref: required (a function image, e.g. 127.0.0.1:8080/fn/yolox-nano:v2)")
	}
	st, err := s.stream(ctx, req.Stream)
	if err != nil {
		return err
	}
	var from, to time.Time
	if req.From != "" {
		if from, err = time.Parse(time.RFC3339, req.From); err != nil {
			return errorf(http.StatusBadRequest, "from %q: want an RFC 3339 time like 2026-11-26T10:00:00Z", req.From)
		}
	}
	if req.To != "" {
		if to, err = time.Parse(time.RFC3339, req.To); err != nil {
			return errorf(http.StatusBadRequest, "to %q: want an RFC 3339 time like 2026-11-26T10:05:00Z", req.To)
		}
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return errorf(http.StatusBadRequest, "from %s is not before to %s", req.From, req.To)
	}
	for _, c := range req.Cameras {
		if c == "" {
			return errorf(http.StatusBadRequest, "cameras: an empty camera id")
		}
	}
	fn, err := s.resolveFunction(ctx, req.Ref, req.Insecure)
	if err != nil {
		return err
	}
	var spec functions.Spec
	if err := json.Unmarshal(fn.Spec, &spec); err != nil {
		return err
	}
	now := time.Now().UTC()
	name := req.Name
	if name == "" {
		name = fn.Name + "-" + now.Format("0102-150405")
	}
	if err := wire.ValidName("replay", name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if _, err := s.cfg.Store.Replay(ctx, name); err == nil {
		return errorf(http.StatusConflict, "replay %q already exists; pick another --name or remove it with: diplip replay rm %s", name, name)
	} else if !errors.Is(err, controlplane.ErrNotFound) {
		return err
	}

	win, err := s.cfg.Kafka.RetentionWindow(ctx, st.Topic)
	if err != nil {
		return errorf(http.StatusBadGateway, "kafka: reading what stream %s holds: %v", st.Name, err)
	}
	if win.Empty() {
		return errorf(http.StatusBadRequest, "stream %q holds no frames to replay", st.Name)
	}
	window := fmt.Sprintf("stream %q holds frames from %s to %s", st.Name, win.First.UTC().Format(time.RFC3339Nano), win.Last.UTC().Format(time.RFC3339Nano))
	// RFC 3339 times here have whole seconds: compare with the window's to the second.
	first, last := win.First.Truncate(time.Second), win.Last
	switch {
	case !from.IsZero() && from.Before(first):
		return errorf(http.StatusBadRequest, "from %s is before the earliest retained frame: %s", req.From, window)
	case !from.IsZero() && from.After(last):
		return errorf(http.StatusBadRequest, "from %s is after the latest frame: %s", req.From, window)
	case !to.IsZero() && !to.After(first):
		return errorf(http.StatusBadRequest, "to %s is not after the earliest retained frame: %s", req.To, window)
	}
	start, stop := win.Start, win.End
	if !from.IsZero() {
		if start, err = s.cfg.Kafka.OffsetsAt(st.Topic, from); err != nil {
			return errorf(http.StatusBadGateway, "kafka: offsets at %s: %v", req.From, err)
		}
	}
	if !to.IsZero() {
		if stop, err = s.cfg.Kafka.OffsetsAt(st.Topic, to); err != nil {
			return errorf(http.StatusBadGateway, "kafka: offsets at %s: %v", req.To, err)
		}
	}
	var total int64
	for p := range stop {
		stop[p] = max(stop[p], start[p])
		total += stop[p] - start[p]
	}

	d := wire.Deployment{Function: fn.Name, Stream: st.Name, Digest: fn.Digest, Min: 0, Max: req.Max, Batch: req.Batch,
		Lanes: req.Lanes, Device: wire.Device(req.Device), Policy: wire.PolicyReplay, Cameras: req.Cameras,
		StartAt: start, StopAt: stop, Role: wire.RoleReplay, Updated: now,
		Replay: &wire.ReplayInfo{Name: name, From: from, To: to, Total: total, Created: now}}
	if d.Max == 0 {
		d.Max = 1
	}
	if d.Batch == 0 {
		d.Batch = spec.Batch.Max
	}
	if d.Lanes == 0 {
		d.Lanes = spec.Resources.Lanes
	}
	switch {
	case d.Device == "" && spec.Resources.Device == "gpu":
		d.Device = wire.CUDA(0)
	case d.Device == "":
		d.Device = wire.Device(spec.Resources.Device)
	}
	if err := d.Validate(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}

	topic := d.ResultsTopic(st)
	if err := s.cfg.Kafka.CreateTopics([]kafkaclient.TopicSpec{resultsTopicSpec(st, topic)}); err != nil {
		return errorf(http.StatusBadGateway, "kafka: %v", err)
	}
	undo := func() {
		if err := s.cfg.Kafka.DeleteGroup(d.Group()); err != nil {
			s.log.Warn("could not remove a failed replay's group", "group", d.Group(), "err", err)
		}
		if err := s.cfg.Kafka.DeleteTopics(topic); err != nil {
			s.log.Warn("could not remove a failed replay's topic", "topic", topic, "err", err)
		}
	}
	if err := s.cfg.Kafka.CommitGroupAt(d.Group(), st.Topic, start); err != nil {
		undo()
		return errorf(http.StatusBadGateway, "kafka: setting where replay %s starts: %v", name, err)
	}
	stored, err := s.cfg.Store.PutDeployment(context.WithoutCancel(ctx), d)
	if err != nil {
		undo()
		return err
	}
	writeJSON(w, http.StatusCreated, apiReplay(stored, st, 0))
	return nil
}

// replay finds the replay called name (404 naming the command that lists them).
func (s *Server) replay(ctx context.Context, name string) (wire.Deployment, error) {
	d, err := s.cfg.Store.Replay(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return d, errorf(http.StatusNotFound, "replay %q not found (see: diplip replay ls)", name)
	}
	return d, err
}

// replayStatus converts a replay with its progress, read from its group's offsets.
func (s *Server) replayStatus(ctx context.Context, d wire.Deployment) api.Replay {
	st, err := s.cfg.Store.Stream(ctx, d.Stream)
	if err != nil {
		out := apiReplay(d, wire.Stream{Name: d.Stream}, 0)
		out.Error = "stream: " + err.Error()
		return out
	}
	if d.Finished() {
		return apiReplay(d, st, 0)
	}
	next, err := s.cfg.Kafka.Committed(d.Group(), st.Topic)
	if err != nil {
		out := apiReplay(d, st, 0)
		out.Error = "kafka: " + err.Error()
		return out
	}
	var done int64
	for p, end := range d.StopAt {
		done += min(max(next[p]-d.StartAt[p], 0), end-d.StartAt[p])
	}
	return apiReplay(d, st, done)
}

func (s *Server) getReplay(w http.ResponseWriter, r *http.Request) error {
	d, err := s.replay(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.replayStatus(r.Context(), d))
	return nil
}

func (s *Server) listReplays(w http.ResponseWriter, r *http.Request) error {
	rs, err := s.cfg.Store.Replays(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Replay, len(rs))
	for i, d := range rs {
		out[i] = s.replayStatus(r.Context(), d)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// removeReplay serves DELETE /v1/replays/{name}: the record first (the scaler then sends
// its runners back to idle), then its results topic, then its consumer group once no
// runner is a member any more.
func (s *Server) removeReplay(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	d, err := s.replay(ctx, r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteDeploymentKey(ctx, d.Key()); err != nil && !errors.Is(err, controlplane.ErrNotFound) {
		return err
	}
	if err := s.cfg.Kafka.DeleteTopics(wire.ReplayResultsTopic(d.Stream, d.ReplayName())); err != nil {
		return errorf(http.StatusBadGateway, "kafka: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.cfg.Kafka.DeleteGroup(d.Group())
		if err == nil {
			break
		}
		if !errors.Is(err, sarama.ErrNonEmptyGroup) || time.Now().After(deadline) {
			return errorf(http.StatusBadGateway, "kafka: %v (the replay record and topic are gone; remove the group with any Kafka tool)", err)
		}
		select { // its runners are leaving the group
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
