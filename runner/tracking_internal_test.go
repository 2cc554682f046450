package runner

import (
	"log/slog"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/wire"
)

// mutableZones is a ZoneSource whose zones a test changes, bumping the version.
type mutableZones struct {
	zones   []wire.Zone
	version uint64
}

func (m *mutableZones) Camera(string, string) ([]wire.Zone, uint64) { return m.zones, m.version }

// walker is a result with one person at (x, y) (bottom centre), frame seq.
func walker(seq uint64, x, y float32) wire.Result {
	return wire.Result{Stream: "s", Camera: "cam", Seq: seq, Status: wire.StatusOK,
		Detections: []wire.Detection{{ClassID: 0, Label: "person", Score: 0.9, Box: wire.Box{X1: x - 20, Y1: y - 80, X2: x + 20, Y2: y}}}}
}

// The tracker stage on its own: ids and counts on results, a removed zone's counts gone
// once the zones change, and an idle camera's tracks closed after its idle time.
func TestTrackingStage(t *testing.T) {
	zones := &mutableZones{version: 1, zones: []wire.Zone{
		{Stream: "s", Camera: "cam", Name: "line", Line: []wire.Point{{X: 0, Y: 300}, {X: 1000, Y: 300}}},
	}}
	d := wire.Deployment{Function: "fn", Stream: "s", Track: &wire.TrackParams{IdleTimeout: wire.Duration(5 * time.Second)}}
	tr, err := newTracking(d, zones, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	var last wire.Result
	for i := range 40 { // walking down across the line at y = 300
		r := walker(uint64(i+1), 500, float32(200+i*5))
		if tr.Apply(&r, now) == nil {
			t.Fatalf("frame %d: no checkpoint", i+1)
		}
		last = r
	}
	if last.Detections[0].TrackID == 0 || len(last.Counts) != 1 || last.Counts[0].In+last.Counts[0].Out != 1 {
		t.Fatalf("after the crossing: track %d, counts %+v", last.Detections[0].TrackID, last.Counts)
	}
	// The zone is removed: the next frame's counts no longer carry it.
	zones.zones, zones.version = nil, 2
	r := walker(41, 500, 405)
	tr.Apply(&r, now)
	if len(r.Counts) != 0 || r.Detections[0].TrackID != last.Detections[0].TrackID {
		t.Fatalf("after removing the zone: counts %+v, track %d (was %d)", r.Counts, r.Detections[0].TrackID, last.Detections[0].TrackID)
	}
	// No frame for longer than the idle time: the camera's tracks are closed.
	tr.CloseIdle(now.Add(6 * time.Second))
	if n := tr.cams["cam"].cam.Tracker().Len(); n != 0 {
		t.Fatalf("%d tracks open after the idle time", n)
	}
	// A redelivered frame (at or before the checkpoint) is not counted again.
	again := walker(41, 500, 405)
	if tr.Apply(&again, now) != nil || len(again.Events) != 0 {
		t.Fatalf("a redelivered frame was tracked again: %+v", again)
	}
}

// The cameras of a partition whose claim was released are forgotten (their checkpoints
// bring them back when it is claimed again); the other partitions' cameras stay.
func TestTrackingForgetsAReleasedPartitionsCameras(t *testing.T) {
	d := wire.Deployment{Function: "fn", Stream: "s", Track: &wire.TrackParams{}}
	tr, err := newTracking(d, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	for p, cam := range []string{"cam-a", "cam-b"} {
		r := walker(1, 500, 200)
		r.Camera, r.Source.Partition = cam, int32(p)
		tr.Apply(&r, now)
	}
	tr.restore(0, map[string][]byte{"cam-c": []byte("{}")}) // claimed, not yet seen
	tr.drop(0)
	tr.CloseIdle(now)
	if _, ok := tr.cams["cam-a"]; ok || len(tr.cams) != 1 || len(tr.restored) != 0 {
		t.Fatalf("after releasing partition 0: cameras %v, checkpoints pending %v; want only cam-b", tr.cams, tr.restored)
	}
}
