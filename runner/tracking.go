package runner

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/track"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
)

// ZoneSource gives a camera's zones and a version that changes whenever they do;
// controlplane.ZoneView is one.
type ZoneSource interface {
	Camera(stream, camera string) ([]wire.Zone, uint64)
}

// tracking is a worker's tracker stage: one track.Camera (tracker and zone counter) per
// camera, fed with each camera's results in sequence order by the pipeline's sequencer
// (it is the worker's flow.Stage, so it needs no lock of its own), and checkpointed to
// the deployment's compacted state topic with every result. A camera's state moves with
// its partition: when a worker is handed a partition it reads the partition's
// checkpoints, and the next frame of each of those cameras continues from there (same
// track ids, same counts).
type tracking struct {
	d        wire.Deployment
	cfg      track.Config
	zones    ZoneSource
	idle     time.Duration
	log      *slog.Logger
	cams     map[string]*trackedCamera
	mu       sync.Mutex            // guards restored and dropped
	restored map[string]checkpoint // read at claim time, not yet applied
	dropped  []int32               // partitions released, whose cameras are to be forgotten
}

// checkpoint is a camera's checkpoint read when its partition was claimed.
type checkpoint struct {
	partition int32
	blob      []byte
}

type trackedCamera struct {
	partition    int32 // its frames' partition
	cam          *track.Camera
	zonesVersion uint64
	zoneNames    []string
	last         time.Time
}

// newTracking checks the deployment's tracker parameters.
func newTracking(d wire.Deployment, zones ZoneSource, log *slog.Logger) (*tracking, error) {
	p := d.Track
	cfg := track.DefaultConfig()
	if p.HighThresh > 0 {
		cfg.HighThresh = p.HighThresh
		cfg.NewTrackThresh = p.HighThresh
	}
	if p.LowThresh > 0 {
		cfg.LowThresh = p.LowThresh
	}
	if p.MatchIoU > 0 {
		cfg.MatchIoU = p.MatchIoU
	}
	if p.MaxLost > 0 {
		cfg.MaxLost = p.MaxLost
	}
	cfg.ClassAgnostic = p.ClassAgnostic
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("deployment %s: track: %w", d.Key(), err)
	}
	idle := time.Duration(p.IdleTimeout)
	if idle <= 0 {
		idle = 30 * time.Second
	}
	return &tracking{d: d, cfg: cfg, zones: zones, idle: idle, log: log, cams: map[string]*trackedCamera{},
		restored: map[string]checkpoint{}}, nil
}

// restore hands over the checkpoints of partition p, just claimed; they replace what the
// worker may still hold of those cameras from an earlier claim of the partition.
func (t *tracking) restore(p int32, states map[string][]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for camera, b := range states {
		t.restored[camera] = checkpoint{partition: p, blob: b}
	}
}

// drop forgets the cameras of partition p, whose claim was released: their state is
// their checkpoints', read again when the partition is claimed again. The sequencer's
// goroutine, which alone touches the cameras, does it before its next frame.
func (t *tracking) drop(p int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped = append(t.dropped, p)
	for camera, c := range t.restored {
		if c.partition == p {
			delete(t.restored, camera)
		}
	}
}

// forgetDropped forgets the cameras of the partitions released since it last ran; it
// runs in the sequencer's goroutine. A partition claimed again since has nothing of its
// new claim in t.cams yet (its release waited for every frame it took).
func (t *tracking) forgetDropped() {
	t.mu.Lock()
	dropped := t.dropped
	t.dropped = nil
	t.mu.Unlock()
	for _, p := range dropped {
		for camera, tc := range t.cams {
			if tc.partition == p {
				delete(t.cams, camera)
			}
		}
	}
}

// camera returns camera's state, made from its checkpoint or fresh, and rebuilt when its
// zones changed (counts carry over by zone name).
func (t *tracking) camera(camera string, partition int32) (*trackedCamera, error) {
	t.forgetDropped()
	t.mu.Lock()
	c, fromCheckpoint := t.restored[camera]
	delete(t.restored, camera)
	t.mu.Unlock()
	blob := c.blob
	var zones []wire.Zone
	var version uint64
	if t.zones != nil {
		zones, version = t.zones.Camera(t.d.Stream, camera)
	}
	tc := t.cams[camera]
	if tc != nil && !fromCheckpoint && tc.zonesVersion == version {
		return tc, nil
	}
	if tc != nil && !fromCheckpoint { // zones changed: keep tracks and counts through a checkpoint
		if b, err := tc.cam.MarshalState(); err == nil {
			blob = b
		}
	}
	cc := track.DefaultCounterConfig()
	var names []string
	for _, z := range zones {
		tz := track.Zone{Name: z.Name}
		for _, p := range z.Line {
			tz.Line = append(tz.Line, track.Point{X: p.X, Y: p.Y})
		}
		for _, p := range z.Polygon {
			tz.Polygon = append(tz.Polygon, track.Point{X: p.X, Y: p.Y})
		}
		cc.Zones = append(cc.Zones, tz)
		names = append(names, z.Name)
	}
	cam, err := track.NewCamera(t.cfg, cc)
	if err != nil {
		return nil, fmt.Errorf("camera %s: %w", camera, err)
	}
	if blob != nil {
		if err := cam.UnmarshalState(blob); err != nil {
			t.log.Warn("tracker checkpoint unreadable; the camera starts fresh", "camera", camera, "err", err)
			metrics.TrackerCheckpointErrors.WithLabelValues(t.d.Key()).Inc()
			cam, _ = track.NewCamera(t.cfg, cc)
		}
	}
	tc = &trackedCamera{partition: partition, cam: cam, zonesVersion: version, zoneNames: names}
	t.cams[camera] = tc
	return tc, nil
}

// Apply tracks an ok result's detections: each gets its track id; the result carries the
// zone events of this frame and the camera's running counts. It returns the camera's
// checkpoint to write with the result, or nil when there is none to write.
func (t *tracking) Apply(r *wire.Result, now time.Time) []byte {
	if r.Status != wire.StatusOK {
		return nil
	}
	tc, err := t.camera(r.Camera, r.Source.Partition)
	if err != nil {
		t.log.Error("tracker stage", "err", err)
		return nil
	}
	tc.last = now
	dets := make([]functions.Detection, len(r.Detections))
	for i, d := range r.Detections {
		dets[i] = functions.Detection{ClassID: d.ClassID, Label: d.Label, Score: d.Score, Box: functions.Box(d.Box)}
	}
	f := tc.cam.Update(r.Seq, dets)
	if f.Stale { // a frame redelivered after the checkpoint already counted it
		return nil
	}
	for i := range r.Detections {
		if i < len(f.DetTracks) {
			r.Detections[i].TrackID = f.DetTracks[i]
		}
	}
	for _, e := range f.Events {
		r.Events = append(r.Events, wire.ZoneEvent{Zone: e.Zone, Kind: string(e.Kind), Direction: string(e.Direction),
			TrackID: e.TrackID, ClassID: e.ClassID, Label: e.Label})
		class := e.Label
		if class == "" {
			class = strconv.Itoa(e.ClassID)
		}
		switch e.Kind {
		case track.Crossed:
			metrics.ZoneCrossings.WithLabelValues(r.Stream, r.Camera, e.Zone, class, string(e.Direction)).Inc()
		case track.Entered:
			metrics.ZoneEntries.WithLabelValues(r.Stream, r.Camera, e.Zone, class).Inc()
		}
	}
	for _, c := range tc.cam.Counter().Counts() {
		r.Counts = append(r.Counts, wire.ZoneCount{Zone: c.Zone, ClassID: c.ClassID, Label: c.Label, In: int64(c.In),
			Out: int64(c.Out), Entered: int64(c.Entered), Left: int64(c.Left), Inside: int64(c.Inside)})
		if c.Entered > 0 || c.Inside > 0 {
			class := c.Label
			if class == "" {
				class = strconv.Itoa(c.ClassID)
			}
			metrics.ZoneOccupancy.WithLabelValues(r.Stream, r.Camera, c.Zone, class).Set(float64(c.Inside))
		}
	}
	b, err := tc.cam.MarshalState()
	if err != nil {
		t.log.Error("tracker checkpoint", "camera", r.Camera, "err", err)
		return nil
	}
	return b
}

// CloseIdle ends the tracks of cameras that sent no frame for the idle time (their
// counts stay). Nothing is written: the next frame after a long gap ends them anyway.
func (t *tracking) CloseIdle(now time.Time) {
	t.forgetDropped()
	for camera, tc := range t.cams {
		if !tc.last.IsZero() && now.Sub(tc.last) > t.idle && tc.cam.Tracker().Len() > 0 {
			events := tc.cam.Close()
			t.log.Debug("camera idle: tracks closed", "camera", camera, "left_events", len(events))
		}
	}
}
