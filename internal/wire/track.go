package wire

import (
	"strings"
	"time"
)

// TrackParams turns on the tracker stage of a deployment: every detection gets a track
// id stable across a camera's frames, and results carry zone events and counts. Zero
// fields take the tracker's defaults (functions/track.DefaultConfig).
type TrackParams struct {
	HighThresh    float32 `json:"high_thresh,omitempty"`
	LowThresh     float32 `json:"low_thresh,omitempty"`
	MatchIoU      float32 `json:"match_iou,omitempty"`
	MaxLost       int     `json:"max_lost,omitempty"` // frames
	ClassAgnostic bool    `json:"class_agnostic,omitempty"`
	// IdleTimeout closes a camera's tracks when it sent no frame for this long.
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
}

// Point is a point in source-image pixels.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Zone is a counting line (two points) or area (a polygon of three or more) on one
// camera of a stream; a control-plane record.
type Zone struct {
	Stream  string    `json:"stream"`
	Camera  string    `json:"camera"`
	Name    string    `json:"name"`
	Line    []Point   `json:"line,omitempty"`
	Polygon []Point   `json:"polygon,omitempty"`
	Created time.Time `json:"created"`
}

// Key is the zone's key in its bucket: STREAM.CAMERA.NAME.
func (z Zone) Key() string { return ZoneKey(z.Stream, z.Camera, z.Name) }

// ZoneKey is the key of zone name on a stream's camera.
func ZoneKey(stream, camera, name string) string { return stream + "." + camera + "." + name }

// Zone event kinds.
const (
	EventCrossed = "crossed" // a track crossed a line, in Direction
	EventEntered = "entered" // a track entered an area
	EventLeft    = "left"    // a track left an area (or its track ended inside)
)

// ZoneEvent is something a track did in a zone on this frame.
type ZoneEvent struct {
	Zone      string `json:"zone"`
	Kind      string `json:"kind"`
	Direction string `json:"direction,omitempty"` // in or out, for crossings
	TrackID   uint64 `json:"track_id"`
	ClassID   int    `json:"class_id"`
	Label     string `json:"label,omitempty"`
}

// ZoneCount is a zone's running count for one class, as of this frame.
type ZoneCount struct {
	Zone    string `json:"zone"`
	ClassID int    `json:"class_id"`
	Label   string `json:"label,omitempty"`
	In      int64  `json:"in,omitempty"`
	Out     int64  `json:"out,omitempty"`
	Entered int64  `json:"entered,omitempty"`
	Left    int64  `json:"left,omitempty"`
	Inside  int64  `json:"inside,omitempty"`
}

// StateTopic is the compacted topic where a tracking deployment checkpoints each
// camera's tracker and counter state (key: camera id), one per consumer group so that
// the state moves with the group's partitions.
func StateTopic(d Deployment) string {
	return "diplip.state." + strings.TrimPrefix(d.Group(), "diplip.")
}
