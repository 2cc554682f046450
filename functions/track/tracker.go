package track

import (
	"cmp"
	"math"
	"slices"

	"github.com/diplip/diplip/functions"
)

// Track is a confirmed track as a frame left it.
type Track struct {
	// ID identifies the object for as long as it is tracked. IDs start at 1, grow by
	// one per confirmed track and are never reused within a camera's state, checkpoints
	// included.
	ID      uint64  `json:"id"`
	ClassID int     `json:"class_id"`
	Label   string  `json:"label,omitempty"`
	Score   float32 `json:"score"` // of the detection matched in this frame
	// Box is the Kalman filter's estimate after this frame's detection: smoother than
	// the detection itself, and what the Counter uses.
	Box functions.Box `json:"box"`
	// DetBox is the matched detection's box as the detector gave it.
	DetBox functions.Box `json:"det_box"`
	// Det is the index of the matched detection in the slice given to Update.
	Det      int    `json:"det"`
	Hits     int    `json:"hits"` // frames in which the track was matched, this one included
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"` // the frame of the latest match
}

// Result is what Update found in one frame.
type Result struct {
	// Tracks are the confirmed tracks matched in this frame, by ID. Tracks that are
	// lost (occluded, missed by the detector) are not in it until they match again.
	Tracks []Track
	// DetTracks is parallel to the detections: the ID of the confirmed track each one
	// was matched to or started, 0 for one that matched nothing, or only a track not
	// confirmed yet, or was ignored (score below LowThresh, empty or non-finite box).
	DetTracks []uint64
	// Removed are the IDs of the tracks that were lost for more than MaxLost frames and
	// removed in this frame; they will never be reported again.
	Removed []uint64
	// Stale is true when seq was not after the last frame processed: the frame was
	// ignored (a redelivery after a restart from a checkpoint, or a reordering).
	Stale bool
}

type trackState uint8

const (
	stateNew     trackState = iota // not yet confirmed, no ID
	stateTracked                   // confirmed, matched in the latest frame
	stateLost                      // confirmed, not matched in the latest frame
)

// strack is a track inside the tracker, confirmed or not.
type strack struct {
	ID       uint64        `json:"id,omitempty"`
	State    trackState    `json:"state"`
	KF       kalman        `json:"kf"`
	ClassID  int           `json:"class_id"`
	Label    string        `json:"label,omitempty"`
	Score    float32       `json:"score"`
	DetBox   functions.Box `json:"det_box"`
	Hits     int           `json:"hits"`
	FirstSeq uint64        `json:"first_seq"`
	LastSeq  uint64        `json:"last_seq"`

	pred functions.Box // the predicted box, for this frame's association
	det  int           // this frame's detection, -1 for none
}

// Tracker follows the objects of one camera from frame to frame: ByteTrack's
// two-stage association on Kalman-predicted boxes. It is not safe for concurrent use;
// give each camera its own, fed from one goroutine in frame order.
type Tracker struct {
	cfg     Config
	tracks  []*strack // in order of birth
	nextID  uint64
	lastSeq uint64
	started bool // a frame has been processed: lastSeq means something
	frames  int  // frames processed since the start or the last Close

	cost []float64 // the association's cost matrix, reused from frame to frame
}

// New returns a tracker with no tracks, or the error of cfg.Validate.
func New(cfg Config) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Tracker{cfg: cfg, nextID: 1}, nil
}

// Config returns the tracker's configuration.
func (t *Tracker) Config() Config { return t.cfg }

// LastSeq is the sequence number of the last frame processed; ok is false before the
// first.
func (t *Tracker) LastSeq() (seq uint64, ok bool) { return t.lastSeq, t.started }

// Len is the number of confirmed tracks, tracked or lost.
func (t *Tracker) Len() int {
	n := 0
	for _, s := range t.tracks {
		if s.State != stateNew {
			n++
		}
	}
	return n
}

// Update processes frame seq of the camera and its detections (source-image pixels).
// Frames must come in sequence order; a gap in the numbers (dropped frames) predicts
// the tracks forward by the gap, and a frame at or before the last one is ignored and
// reported Stale. The detections are not kept.
func (t *Tracker) Update(seq uint64, dets []functions.Detection) Result {
	res := Result{DetTracks: make([]uint64, len(dets))}
	if t.started && seq <= t.lastSeq {
		res.Stale = true
		return res
	}
	gap := uint64(1)
	if t.started {
		gap = seq - t.lastSeq
	}
	first := t.frames == 0
	t.started, t.lastSeq = true, seq
	t.frames++

	// Tracks that missed more than MaxLost frames while frames were dropped go now,
	// before they could match; the others are predicted forward by the gap.
	res.Removed = t.expire(seq, 1)
	steps := int(min(gap, uint64(t.cfg.MaxLost)+1))
	for _, s := range t.tracks {
		for range steps {
			if s.State == stateLost {
				s.KF.Mean[7] = 0 // as ByteTrack: a lost box keeps its size
			}
			s.KF.predict()
		}
		s.pred, s.det = s.KF.box(), -1
	}

	var high, low []int
	for i, d := range dets {
		if !usable(d.Box) {
			continue
		}
		switch {
		case d.Score >= t.cfg.HighThresh:
			high = append(high, i)
		case d.Score >= t.cfg.LowThresh:
			low = append(low, i)
		}
	}
	var pool, fresh []*strack
	for _, s := range t.tracks {
		if s.State == stateNew {
			fresh = append(fresh, s)
		} else {
			pool = append(pool, s)
		}
	}

	// Stage 1: high-score detections against every confirmed track, lost ones included.
	pool, high = t.match(pool, high, dets, 1-float64(t.cfg.MatchIoU))
	// Stage 2: low-score detections against the tracks still unmatched that were
	// tracked in the previous frame. A lost track is not revived by a weak detection.
	var wasTracked []*strack
	for _, s := range pool {
		if s.State == stateTracked {
			wasTracked = append(wasTracked, s)
		}
	}
	wasTracked, _ = t.match(wasTracked, low, dets, 1-float64(t.cfg.LowMatchIoU))
	for _, s := range wasTracked {
		s.State = stateLost
	}
	// Stage 3: tracks not confirmed yet against what is left of the high detections.
	// One that does not match is dropped: it was probably a false positive.
	fresh, high = t.match(fresh, high, dets, 1-float64(t.cfg.MatchIoU))
	kept := t.tracks[:0]
	for _, s := range t.tracks {
		if s.State != stateNew || !slices.Contains(fresh, s) {
			kept = append(kept, s)
		}
	}
	clear(t.tracks[len(kept):])
	t.tracks = kept
	// Stage 4: the remaining confident detections start tracks.
	for _, i := range high {
		d := dets[i]
		if d.Score < t.cfg.NewTrackThresh {
			continue
		}
		s := &strack{
			KF: newKalman(measure(d.Box)), ClassID: d.ClassID, Label: d.Label, Score: d.Score,
			DetBox: d.Box, Hits: 1, FirstSeq: seq, LastSeq: seq, det: i,
		}
		t.tracks = append(t.tracks, s)
		if first || t.cfg.MinHits <= 1 {
			t.confirm(s)
		}
	}

	res.Removed = append(res.Removed, t.expire(seq, 0)...)
	for _, s := range t.tracks {
		if s.det < 0 || s.State == stateNew {
			continue
		}
		res.DetTracks[s.det] = s.ID
		res.Tracks = append(res.Tracks, Track{
			ID: s.ID, ClassID: s.ClassID, Label: s.Label, Score: s.Score,
			Box: s.KF.box(), DetBox: s.DetBox, Det: s.det, Hits: s.Hits,
			FirstSeq: s.FirstSeq, LastSeq: s.LastSeq,
		})
	}
	slices.SortFunc(res.Tracks, func(a, b Track) int { return cmp.Compare(a.ID, b.ID) })
	return res
}

// match associates tracks with the detections dets[idx[k]] at the least total 1-IoU
// cost, at most limit per pair, updates the matched tracks, and returns the tracks and
// detection indices left unmatched.
func (t *Tracker) match(tracks []*strack, idx []int, dets []functions.Detection, limit float64) ([]*strack, []int) {
	if len(tracks) == 0 || len(idx) == 0 {
		return tracks, idx
	}
	n, m := len(tracks), len(idx)
	if cap(t.cost) < n*m {
		t.cost = make([]float64, n*m)
	}
	cost := t.cost[:n*m]
	for a, s := range tracks {
		for b, i := range idx {
			p, d := s.pred, dets[i].Box
			switch {
			case !t.cfg.ClassAgnostic && s.ClassID != dets[i].ClassID:
				cost[a*m+b] = math.Inf(1)
			case p.X1 >= d.X2 || d.X1 >= p.X2 || p.Y1 >= d.Y2 || d.Y1 >= p.Y2:
				cost[a*m+b] = 1 // disjoint, as most pairs are: IoU 0 without the divisions
			default:
				cost[a*m+b] = 1 - float64(functions.IoU(p, d))
			}
		}
	}
	taken := make([]bool, m)
	var leftTracks []*strack
	for a, b := range assign(cost, n, m, limit) {
		if b < 0 {
			leftTracks = append(leftTracks, tracks[a])
			continue
		}
		taken[b] = true
		t.apply(tracks[a], idx[b], dets[idx[b]])
	}
	var leftDets []int
	for b, i := range idx {
		if !taken[b] {
			leftDets = append(leftDets, i)
		}
	}
	return leftTracks, leftDets
}

// apply updates a track with its matched detection.
func (t *Tracker) apply(s *strack, i int, d functions.Detection) {
	z := measure(d.Box)
	if !s.KF.update(z) {
		s.KF = newKalman(z)
	}
	s.ClassID, s.Label, s.Score, s.DetBox = d.ClassID, d.Label, d.Score, d.Box
	s.Hits++
	s.LastSeq, s.det = t.lastSeq, i
	switch {
	case s.State == stateLost:
		s.State = stateTracked
	case s.State == stateNew && s.Hits >= t.cfg.MinHits:
		t.confirm(s)
	}
}

func (t *Tracker) confirm(s *strack) {
	s.ID, s.State = t.nextID, stateTracked
	t.nextID++
}

// expire removes the confirmed tracks that, at frame seq, have missed more than
// MaxLost frames, not counting the last `pending` frames (1 before the frame's
// association: the frame itself may still match them), and returns their IDs.
func (t *Tracker) expire(seq uint64, pending uint64) []uint64 {
	var gone []uint64
	kept := t.tracks[:0]
	for _, s := range t.tracks {
		if s.State != stateNew && seq-s.LastSeq-pending > uint64(t.cfg.MaxLost) {
			gone = append(gone, s.ID)
			continue
		}
		kept = append(kept, s)
	}
	clear(t.tracks[len(kept):])
	t.tracks = kept
	return gone
}

// Close ends every track, as when the camera has been idle too long for its objects to
// be followed across the silence, and returns the IDs of the confirmed ones. IDs keep
// counting from where they were; the next frame starts tracks as a first frame does.
func (t *Tracker) Close() []uint64 {
	var gone []uint64
	for _, s := range t.tracks {
		if s.State != stateNew {
			gone = append(gone, s.ID)
		}
	}
	t.tracks, t.frames = nil, 0
	return gone
}

// usable rejects boxes the filter cannot start from: empty, inverted or not finite.
func usable(b functions.Box) bool {
	for _, v := range []float32{b.X1, b.Y1, b.X2, b.Y2} {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return b.X2 > b.X1 && b.Y2 > b.Y1
}
