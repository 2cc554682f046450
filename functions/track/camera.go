package track

import (
	"encoding/json"
	"fmt"

	"github.com/diplip/diplip/functions"
)

// Camera is the whole per-camera state: a Tracker feeding a Counter, checkpointed
// together.
type Camera struct {
	tracker *Tracker
	counter *Counter
}

// Frame is what a camera's frame produced: the tracker's Result and the counter's
// events.
type Frame struct {
	Result
	Events []Event
}

// NewCamera returns a camera state with no tracks and nothing counted.
func NewCamera(tc Config, cc CounterConfig) (*Camera, error) {
	t, err := New(tc)
	if err != nil {
		return nil, err
	}
	c, err := NewCounter(cc)
	if err != nil {
		return nil, err
	}
	return &Camera{tracker: t, counter: c}, nil
}

// Tracker gives access to the camera's tracker; feed frames through Camera.Update, not
// through it, or the counter misses them.
func (c *Camera) Tracker() *Tracker { return c.tracker }

// Counter gives access to the camera's counts.
func (c *Camera) Counter() *Counter { return c.counter }

// Update tracks frame seq's detections and counts what the tracks did: crossings and
// entries of the matched tracks, then exits from polygons of the tracks removed.
func (c *Camera) Update(seq uint64, dets []functions.Detection) Frame {
	f := Frame{Result: c.tracker.Update(seq, dets)}
	if f.Stale {
		return f
	}
	f.Events = c.counter.Update(seq, f.Tracks)
	f.Events = append(f.Events, c.counter.Remove(seq, f.Removed)...)
	return f
}

// Close ends every track, as when the camera has had no frame for its idle time, and
// returns a left event for each track that was inside a polygon, at the last frame's
// sequence number. Counts are kept and IDs keep counting.
func (c *Camera) Close() []Event {
	seq, _ := c.tracker.LastSeq()
	return c.counter.Remove(seq, c.tracker.Close())
}

type cameraState struct {
	V       int          `json:"v"`
	Tracker trackerState `json:"tracker"`
	Counter counterState `json:"counter"`
}

// MarshalState encodes the tracker's and the counter's state as one JSON object with a
// "v" version field, small enough for a compacted topic keyed by camera.
func (c *Camera) MarshalState() ([]byte, error) {
	return json.Marshal(cameraState{V: StateVersion, Tracker: c.tracker.state(), Counter: c.counter.state()})
}

// UnmarshalState restores both from a MarshalState blob; see Tracker.UnmarshalState and
// Counter.UnmarshalState for what is kept. On an error neither changes.
func (c *Camera) UnmarshalState(data []byte) error {
	var st cameraState
	if err := decodeState(data, &st, "camera"); err != nil {
		return err
	}
	if st.Tracker.V != StateVersion || st.Counter.V != StateVersion {
		return fmt.Errorf("track: camera state has versions %d (tracker) and %d (counter), this build reads %d", st.Tracker.V, st.Counter.V, StateVersion)
	}
	if err := st.Tracker.check(); err != nil {
		return fmt.Errorf("track: camera state: tracker: %w", err)
	}
	counts, tracks, err := c.counter.restore(st.Counter)
	if err != nil {
		return fmt.Errorf("track: camera state: counter: %w", err)
	}
	live := map[uint64]bool{}
	for _, s := range st.Tracker.Tracks {
		if s.State != stateNew {
			live[s.ID] = true
		}
	}
	for id := range tracks {
		if !live[id] {
			return fmt.Errorf("track: camera state: the counter follows track %d, which the tracker does not have", id)
		}
	}
	c.tracker.load(st.Tracker)
	c.counter.counts, c.counter.tracks = counts, tracks
	return nil
}
