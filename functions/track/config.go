package track

import (
	"fmt"
	"math"
)

// Config tunes a Tracker. Start from DefaultConfig and change what you need: every
// field is checked by Validate, and a zero Config is not valid.
type Config struct {
	// HighThresh: detections scoring at least this take part in the first association
	// stage, against every track, and may start new tracks. Default 0.5.
	HighThresh float32 `json:"high_thresh" yaml:"high_thresh"`
	// LowThresh: detections scoring in [LowThresh, HighThresh) take part only in the
	// second stage, against the tracks the first stage left unmatched that were seen in
	// the previous frame; they keep a track alive through blur and partial occlusion
	// but never start one. Detections below LowThresh are ignored. Default 0.1.
	LowThresh float32 `json:"low_thresh" yaml:"low_thresh"`
	// NewTrackThresh: the least score of an unmatched detection that starts a track.
	// Default 0.5, equal to HighThresh; ByteTrack's reference uses HighThresh+0.1.
	NewTrackThresh float32 `json:"new_track_thresh" yaml:"new_track_thresh"`
	// MatchIoU: the least IoU between a track's predicted box and a high-score
	// detection for them to be matched (the cost 1-IoU is at most 1-MatchIoU). It also
	// applies to confirming new tracks. Default 0.3.
	MatchIoU float32 `json:"match_iou" yaml:"match_iou"`
	// LowMatchIoU: the same for the second, low-score stage, stricter because low
	// scores are often clutter. Default 0.5, as in ByteTrack.
	LowMatchIoU float32 `json:"low_match_iou" yaml:"low_match_iou"`
	// MinHits: a new track is confirmed, gets its ID and is reported once it has been
	// matched in this many consecutive frames; it is dropped, with no ID spent, if it
	// misses a frame before that. The exception, as in ByteTrack: tracks started in the
	// first frame the tracker sees (or the first after Close) are confirmed at once,
	// since there is no history to doubt them against. Default 2, ByteTrack's rule.
	MinHits int `json:"min_hits" yaml:"min_hits"`
	// MaxLost: a confirmed track not matched for more than this many frames (counted in
	// sequence numbers, so dropped frames count) is removed. Default 30.
	MaxLost int `json:"max_lost" yaml:"max_lost"`
	// ClassAgnostic lets a track match a detection of any class (the track then takes
	// the class of its latest detection); by default a track only matches its own class.
	ClassAgnostic bool `json:"class_agnostic" yaml:"class_agnostic"`
}

// DefaultConfig is the configuration documented on each field of Config.
func DefaultConfig() Config {
	return Config{
		HighThresh:     0.5,
		LowThresh:      0.1,
		NewTrackThresh: 0.5,
		MatchIoU:       0.3,
		LowMatchIoU:    0.5,
		MinHits:        2,
		MaxLost:        30,
	}
}

// maxMaxLost bounds MaxLost: a track is predicted frame by frame while it is lost.
const maxMaxLost = 100_000

// Validate reports the first field that is out of range, by name.
func (c Config) Validate() error {
	unit := func(name string, v float32) error {
		if math.IsNaN(float64(v)) || v < 0 || v > 1 {
			return fmt.Errorf("track: %s %v is not in [0, 1]", name, v)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    float32
	}{
		{"HighThresh", c.HighThresh}, {"LowThresh", c.LowThresh},
		{"NewTrackThresh", c.NewTrackThresh}, {"MatchIoU", c.MatchIoU}, {"LowMatchIoU", c.LowMatchIoU},
	} {
		if err := unit(f.name, f.v); err != nil {
			return err
		}
	}
	switch {
	case c.LowThresh > c.HighThresh:
		return fmt.Errorf("track: LowThresh %v is above HighThresh %v", c.LowThresh, c.HighThresh)
	case c.NewTrackThresh < c.HighThresh:
		return fmt.Errorf("track: NewTrackThresh %v is below HighThresh %v: only high-score detections start tracks", c.NewTrackThresh, c.HighThresh)
	case c.MatchIoU <= 0:
		return fmt.Errorf("track: MatchIoU must be above 0: with 0 a track could match a detection it does not overlap")
	case c.LowMatchIoU <= 0:
		return fmt.Errorf("track: LowMatchIoU must be above 0: with 0 a track could match a detection it does not overlap")
	case c.MinHits < 1:
		return fmt.Errorf("track: MinHits %d is below 1", c.MinHits)
	case c.MaxLost < 0 || c.MaxLost > maxMaxLost:
		return fmt.Errorf("track: MaxLost %d is not in [0, %d]", c.MaxLost, maxMaxLost)
	}
	return nil
}
