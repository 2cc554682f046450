package flow_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

// cropModel answers each crop with a 2-d embedding holding the crop's height, and counts
// the frames it ran on.
type cropModel struct{ frames, runs atomic.Int64 }

func (m *cropModel) Run([][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	return nil, functions.BatchTimings{}, errors.New("a second stage runs on crops")
}

func (m *cropModel) RunCropsOf(frames [][]byte, boxes [][]functions.Box) ([][]functions.FrameResult, []error, functions.BatchTimings, error) {
	m.runs.Add(1)
	out, errs := make([][]functions.FrameResult, len(frames)), make([]error, len(frames))
	for j, frame := range frames {
		m.frames.Add(1)
		out[j] = make([]functions.FrameResult, len(boxes[j]))
		for i, b := range boxes[j] {
			out[j][i].Embedding = []float32{float32(frame[0]), b.Y2 - b.Y1}
		}
	}
	return out, errs, functions.BatchTimings{}, nil
}

// frames is a FrameReader over frames in memory, by offset (partition 0).
type frames struct {
	byOffset map[int64]wire.Frame
	reads    atomic.Int64
}

func (f *frames) ReadFrame(_ context.Context, at wire.Source) (string, []wire.Header, []byte, error) {
	f.reads.Add(1)
	fr, ok := f.byOffset[at.Offset]
	if !ok {
		return "", nil, nil, errors.New("no such record")
	}
	return fr.Key(), fr.Headers(), fr.Data, nil
}

// A second stage enriches its first stage's results: only the selected detections (by
// class, height and count per frame, best first) carry its output; a frame with nothing
// selected still gets its result, without its frame being read; the crops of the batch's
// frames run as one batch; another function's
// results on the stream's results topic are skipped; track ids and the source stay.
func TestSecondStageEnrichesTheFirstStagesResults(t *testing.T) {
	d := deployment(4)
	d.Function, d.Role = "reid", wire.RoleAfter
	d.After = &wire.AfterInfo{Function: "det", Classes: []string{"person"}, MinSize: 60, MaxPerFrame: 2}
	fr := &frames{byOffset: map[int64]wire.Frame{10: frame("cam", 1, 7), 11: frame("cam", 2, 8), 12: frame("cam", 3, 9)}}
	box := func(h float32) wire.Box { return wire.Box{X1: 0, Y1: 0, X2: 10, Y2: h} }
	first := []wire.Result{
		{Function: "det", Digest: "r/det@sha256:aa", Camera: "cam", Seq: 1, Status: wire.StatusOK, Source: wire.Source{Offset: 10},
			Detections: []wire.Detection{
				{Label: "person", Score: 0.9, Box: box(100), TrackID: 4},
				{Label: "person", Score: 0.5, Box: box(59)}, // too small
				{Label: "car", Score: 0.8, Box: box(200)},   // not a selected class
				{Label: "person", Score: 0.7, Box: box(80)},
				{Label: "person", Score: 0.6, Box: box(90)}, // third of three: over max per frame
			}},
		{Function: "det", Camera: "cam", Seq: 2, Status: wire.StatusOK, Source: wire.Source{Offset: 11},
			Detections: []wire.Detection{{Label: "car", Score: 0.8, Box: box(200)}}},
		{Function: "other", Camera: "cam", Seq: 1, Status: wire.StatusOK, Source: wire.Source{Offset: 10}},
		{Function: "det", Camera: "cam", Seq: 3, Status: wire.StatusOK, Source: wire.Source{Offset: 12},
			Detections: []wire.Detection{{Label: "person", Score: 0.9, Box: box(70)}}},
	}
	var items []*flow.Item
	for i, r := range first {
		b, _ := json.Marshal(r)
		items = append(items, &flow.Item{Partition: 0, Offset: int64(i), Key: "cam", Value: b})
	}
	m := &cropModel{}
	got := runAll(t, flow.Config{Deployment: d, Model: m, Frames: fr}, items)
	r := got[0].Result
	if r.Status != wire.StatusOK || r.Function != "reid" || len(r.Stages) != 2 || r.Stages[0].Function != "det" || r.Source.Offset != 10 {
		t.Fatalf("enriched result %+v", r)
	}
	want := [][]float32{{7, 100}, nil, nil, {7, 80}, nil}
	for i, x := range r.Detections {
		if len(x.Embedding) != len(want[i]) || len(want[i]) > 0 && (x.Embedding[0] != want[i][0] || x.Embedding[1] != want[i][1]) {
			t.Errorf("detection %d (%s, %v high): embedding %v, want %v", i, x.Label, x.Box.Y2, x.Embedding, want[i])
		}
	}
	if r.Detections[0].TrackID != 4 {
		t.Errorf("track id %d, want the first stage's 4", r.Detections[0].TrackID)
	}
	if r2 := got[1].Result; got[1].Skip || r2.Status != wire.StatusOK || len(r2.Detections) != 1 || r2.Detections[0].Embedding != nil {
		t.Errorf("frame with nothing selected: skip %v, %+v", got[1].Skip, r2)
	}
	if !got[2].Skip {
		t.Errorf("another function's result was not skipped: %+v", got[2].Result)
	}
	if e := got[3].Result.Detections[0].Embedding; len(e) != 2 || e[0] != 9 || e[1] != 70 {
		t.Errorf("the second frame with a person: embedding %v, want [9 70]", e)
	}
	// Only the frames with selected detections are read, and their crops run as one batch.
	if fr.reads.Load() != 2 || m.frames.Load() != 2 || m.runs.Load() != 1 {
		t.Errorf("%d frame reads, %d frames in %d model runs; want 2 frames read, in 1 run", fr.reads.Load(), m.frames.Load(), m.runs.Load())
	}
}

// A second stage in the role of a replay (After set, role replay) is a second stage: it
// crops and enriches, and its window's end (StopAt, in its input's offsets) is skipped
// without a result. A live second stage applies its max age to the frame's capture time,
// which the first stage's result carries: a stale frame is not read, and its result says
// skipped as a first stage's does, with the first stage's detections and no output.
func TestSecondStageReplayWindowAndMaxAge(t *testing.T) {
	fr := &frames{byOffset: map[int64]wire.Frame{10: frame("cam", 1, 7), 11: frame("cam", 2, 8)}}
	person := wire.Detection{Label: "person", Score: 0.9, Box: wire.Box{X2: 10, Y2: 100}}
	result := func(seq uint64, src int64, captured time.Time) []byte {
		b, _ := json.Marshal(wire.Result{Function: "det", Camera: "cam", Seq: seq, Status: wire.StatusOK, CaptureTime: captured,
			Source: wire.Source{Offset: src}, Detections: []wire.Detection{person}})
		return b
	}
	now := time.Now()
	items := func() []*flow.Item {
		return []*flow.Item{
			{Partition: 0, Offset: 5, Key: "cam", Value: result(1, 10, now.Add(-time.Minute))},
			{Partition: 0, Offset: 6, Key: "cam", Value: result(2, 11, now)},
		}
	}

	d := deployment(4)
	d.Function, d.Role, d.Replay = "reid", wire.RoleReplay, &wire.ReplayInfo{Name: "r1"}
	d.After = &wire.AfterInfo{Function: "det"}
	d.StopAt = map[int32]int64{0: 6}
	got := runAll(t, flow.Config{Deployment: d, Model: &cropModel{}, Frames: fr}, items())
	if r := got[0].Result; got[0].Skip || r.Status != wire.StatusOK || len(r.Detections[0].Embedding) != 2 || r.Stages[1].Function != "reid" {
		t.Errorf("in the replay's window: skip %v, %+v", got[0].Skip, r)
	}
	if !got[1].Skip {
		t.Errorf("at the replay's StopAt: not skipped: %+v", got[1].Result)
	}

	d = deployment(4)
	d.Function, d.Role, d.Policy, d.MaxAge = "reid", wire.RoleAfter, wire.PolicyLive, wire.Duration(5*time.Second)
	d.After = &wire.AfterInfo{Function: "det"}
	reads := fr.reads.Load()
	got = runAll(t, flow.Config{Deployment: d, Model: &cropModel{}, Frames: fr}, items())
	if r := got[0].Result; got[0].Skip || r.Status != wire.StatusSkipped || !strings.Contains(r.Error, "max age 5s") ||
		len(r.Detections) != 1 || r.Detections[0].Embedding != nil || r.Source.Offset != 10 {
		t.Errorf("a frame captured a minute ago: skip %v, %+v", got[0].Skip, r)
	}
	if r := got[1].Result; r.Status != wire.StatusOK || len(r.Detections[0].Embedding) != 2 {
		t.Errorf("a fresh frame: %+v", r)
	}
	if n := fr.reads.Load() - reads; n != 1 {
		t.Errorf("%d frames read, want only the fresh one", n)
	}
}

// detectorOnCrops is a detector second stage: one detection in the middle of each crop,
// in the frame's pixels as pipeline.RunCropsOf gives them.
type detectorOnCrops struct{ cropModel }

func (m *detectorOnCrops) RunCropsOf(frames [][]byte, boxes [][]functions.Box) ([][]functions.FrameResult, []error, functions.BatchTimings, error) {
	out, errs := make([][]functions.FrameResult, len(frames)), make([]error, len(frames))
	for j := range frames {
		out[j] = make([]functions.FrameResult, len(boxes[j]))
		for i, b := range boxes[j] {
			cx, cy := (b.X1+b.X2)/2, (b.Y1+b.Y2)/2
			out[j][i].Detections = []functions.Detection{{ClassID: 1, Label: "plate", Score: 0.8, Box: functions.Box{X1: cx - 1, Y1: cy - 1, X2: cx + 1, Y2: cy + 1}}}
		}
	}
	return out, errs, functions.BatchTimings{}, nil
}

// A detector after a detector: each selected detection carries the second stage's
// detections inside its crop (nested, in the frame's pixels); the others carry none.
func TestSecondStageDetectorNestsItsDetections(t *testing.T) {
	d := deployment(4)
	d.Function, d.Role = "plates", wire.RoleAfter
	d.After = &wire.AfterInfo{Function: "det", Classes: []string{"car"}}
	fr := &frames{byOffset: map[int64]wire.Frame{10: frame("cam", 1, 7)}}
	first := wire.Result{Function: "det", Camera: "cam", Seq: 1, Status: wire.StatusOK, Source: wire.Source{Offset: 10},
		Detections: []wire.Detection{
			{Label: "car", Score: 0.9, Box: wire.Box{X1: 100, Y1: 50, X2: 300, Y2: 150}},
			{Label: "person", Score: 0.8, Box: wire.Box{X1: 0, Y1: 0, X2: 10, Y2: 100}},
		}}
	b, _ := json.Marshal(first)
	got := runAll(t, flow.Config{Deployment: d, Model: &detectorOnCrops{}, Frames: fr}, []*flow.Item{{Partition: 0, Offset: 0, Key: "cam", Value: b}})
	r := got[0].Result
	car, person := r.Detections[0], r.Detections[1]
	if len(car.Detections) != 1 || car.Detections[0].Label != "plate" || car.Detections[0].Box != (wire.Box{X1: 199, Y1: 99, X2: 201, Y2: 101}) {
		t.Fatalf("the car's nested detections: %+v", car.Detections)
	}
	if person.Detections != nil || car.Embedding != nil {
		t.Fatalf("a detection not selected got %+v; the car an embedding %v", person.Detections, car.Embedding)
	}
}
