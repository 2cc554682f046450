// Package track follows detected objects from frame to frame and counts them at lines
// and zones, per camera.
//
// A Tracker is ByteTrack: every track carries a constant-velocity Kalman filter over
// its box (centre, aspect ratio, height and their velocities); each frame the tracks
// are predicted forward and matched to the detections by IoU with a minimum-cost
// (Hungarian) assignment in two stages, confident detections first against every
// track, then weak ones against the tracks left over, so that a track survives the
// frames where blur or occlusion lowers its score. Tracks are confirmed after
// Config.MinHits consecutive matches (at once in the first frame) and removed after
// Config.MaxLost frames without one. Frames carry the camera's sequence numbers: a gap
// means dropped frames and predicts the tracks across it; an old number is ignored.
//
// A Counter follows each track's anchor point (by default the bottom-centre of its
// box, where people stand) relative to the Zones: the directed segments it crosses in
// or out and the polygons it enters and leaves, with a hysteresis band so that an
// object standing on a line is counted once. It keeps running counts per zone, class
// and direction, and the occupancy of each polygon. A Camera joins one of each.
//
// Coordinates are source-image pixels, as functions.Detection boxes are after
// Geometry.ToSource: x to the right, y down, (0,0) the top-left corner.
//
// The state of a Tracker, a Counter or a Camera encodes as versioned JSON
// (MarshalState) that another process can restore (UnmarshalState) and continue from
// exactly: the same track IDs, which never restart or repeat, and the same counts. It
// is meant for a compacted topic keyed by camera. A blob that is corrupt or of another
// version is refused with an error, leaving the state as it was.
//
// The package knows nothing about Kafka, NATS, models or images: it takes detections
// and sequence numbers and returns tracks and events. None of its types are safe for
// concurrent use; each camera's frames are processed in order by one goroutine.
package track
