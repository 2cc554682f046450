package track

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// StateVersion is the version of the encoding written by MarshalState; UnmarshalState
// accepts only this version. Bump it whenever a field changes meaning.
const StateVersion = 1

type trackerState struct {
	V       int       `json:"v"`
	NextID  uint64    `json:"next_id"`
	LastSeq uint64    `json:"last_seq"`
	Started bool      `json:"started"`
	Frames  int       `json:"frames"`
	Tracks  []*strack `json:"tracks"`
}

// MarshalState encodes everything the tracker knows beyond its Config: the tracks and
// their filters, the next ID and the last frame. It is JSON with a "v" version field.
// float64 values survive encoding/json exactly, so a tracker restored from it continues
// bit for bit as this one would have.
func (t *Tracker) MarshalState() ([]byte, error) {
	return json.Marshal(t.state())
}

func (t *Tracker) state() trackerState {
	return trackerState{V: StateVersion, NextID: t.nextID, LastSeq: t.lastSeq, Started: t.started, Frames: t.frames, Tracks: t.tracks}
}

// UnmarshalState replaces the tracker's state with one from MarshalState, keeping its
// own Config. On an error (corrupt data, another version) the tracker is unchanged;
// the caller would typically log it and carry on with a fresh tracker.
func (t *Tracker) UnmarshalState(data []byte) error {
	var st trackerState
	if err := decodeState(data, &st, "tracker"); err != nil {
		return err
	}
	if err := st.check(); err != nil {
		return fmt.Errorf("track: tracker state: %w", err)
	}
	t.load(st)
	return nil
}

func (t *Tracker) load(st trackerState) {
	t.nextID, t.lastSeq, t.started, t.frames, t.tracks = st.NextID, st.LastSeq, st.Started, st.Frames, st.Tracks
}

func decodeState(data []byte, v any, what string) error {
	var head struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("track: %s state is corrupt: %w", what, err)
	}
	if head.V == nil || *head.V != StateVersion {
		got := "none"
		if head.V != nil {
			got = fmt.Sprint(*head.V)
		}
		return fmt.Errorf("track: %s state has version %s, this build reads %d", what, got, StateVersion)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("track: %s state is corrupt: %w", what, err)
	}
	return nil
}

// Bounds on restored filter values: far beyond anything a real camera produces, small
// enough that predicting for MaxLost frames cannot overflow.
const (
	maxMean = 1e7
	maxCov  = 1e14
)

func (st *trackerState) check() error {
	if st.NextID == 0 || st.NextID == math.MaxUint64 {
		return fmt.Errorf("next_id %d is out of range", st.NextID)
	}
	if st.Frames < 0 || (!st.Started && (st.Frames != 0 || len(st.Tracks) != 0)) {
		return fmt.Errorf("frames %d and %d tracks before any frame", st.Frames, len(st.Tracks))
	}
	ids := map[uint64]bool{}
	for i, s := range st.Tracks {
		if s == nil {
			return fmt.Errorf("track %d is null", i)
		}
		switch s.State {
		case stateNew:
			if s.ID != 0 {
				return fmt.Errorf("track %d is not confirmed but has ID %d", i, s.ID)
			}
		case stateTracked, stateLost:
			if s.ID == 0 || s.ID >= st.NextID || ids[s.ID] {
				return fmt.Errorf("track %d has ID %d: zero, repeated or not below next_id %d", i, s.ID, st.NextID)
			}
			ids[s.ID] = true
		default:
			return fmt.Errorf("track %d has an unknown state %d", i, s.State)
		}
		if s.Hits < 1 || s.FirstSeq > s.LastSeq || s.LastSeq > st.LastSeq {
			return fmt.Errorf("track %d: hits %d, first_seq %d, last_seq %d (tracker at %d) do not fit", i, s.Hits, s.FirstSeq, s.LastSeq, st.LastSeq)
		}
		for _, v := range s.KF.Mean {
			if !(math.Abs(v) <= maxMean) {
				return fmt.Errorf("track %d: filter mean %v is out of range", i, v)
			}
		}
		for _, row := range s.KF.Cov {
			for _, v := range row {
				if !(math.Abs(v) <= maxCov) {
					return fmt.Errorf("track %d: filter covariance %v is out of range", i, v)
				}
			}
		}
		s.det = -1
	}
	return nil
}

type counterState struct {
	V      int          `json:"v"`
	Zones  []Zone       `json:"zones"`
	Counts []ZoneCount  `json:"counts"`
	Tracks []trackMemos `json:"tracks"`
}

type trackMemos struct {
	ID    uint64     `json:"id"`
	Zones []zoneMemo `json:"zones"`
}

type zoneMemo struct {
	Zone string `json:"zone"`
	memo
}

// MarshalState encodes the counts, and where each live track stands relative to each
// zone, with the zones they refer to. JSON with a "v" version field.
func (c *Counter) MarshalState() ([]byte, error) {
	return json.Marshal(c.state())
}

func (c *Counter) state() counterState {
	st := counterState{V: StateVersion, Zones: c.cfg.Zones, Counts: c.Counts()}
	for _, id := range sortedIDs(c.tracks) {
		tm := trackMemos{ID: id}
		for zi, m := range c.tracks[id] {
			tm.Zones = append(tm.Zones, zoneMemo{c.cfg.Zones[zi].Name, m})
		}
		st.Tracks = append(st.Tracks, tm)
	}
	return st
}

// UnmarshalState replaces the counter's counts and track memory with those of a
// MarshalState blob, matched to this counter's zones by name. The counts of a zone
// that is no longer configured are dropped. A zone whose geometry changed keeps its
// counts, but where each track stands is forgotten (its occupancy restarts at 0, and
// tracks already inside count as entering again). On an error the counter is
// unchanged.
func (c *Counter) UnmarshalState(data []byte) error {
	var st counterState
	if err := decodeState(data, &st, "counter"); err != nil {
		return err
	}
	counts, tracks, err := c.restore(st)
	if err != nil {
		return fmt.Errorf("track: counter state: %w", err)
	}
	c.counts, c.tracks = counts, tracks
	return nil
}

func (c *Counter) restore(st counterState) (map[countKey]*ZoneCount, map[uint64][]memo, error) {
	zoneIndex := map[string]int{} // this counter's zones
	for zi, z := range c.cfg.Zones {
		zoneIndex[z.Name] = zi
	}
	same := map[string]bool{} // zones whose geometry is unchanged
	seen := map[string]bool{}
	for _, z := range st.Zones {
		if seen[z.Name] {
			return nil, nil, fmt.Errorf("zone %q appears twice", z.Name)
		}
		seen[z.Name] = true
		if zi, ok := zoneIndex[z.Name]; ok && c.cfg.Zones[zi].equal(z) {
			same[z.Name] = true
		}
	}
	counts := map[countKey]*ZoneCount{}
	for _, n := range st.Counts {
		if !seen[n.Zone] {
			return nil, nil, fmt.Errorf("counts for zone %q, which the state does not define", n.Zone)
		}
		if n.In < 0 || n.Out < 0 || n.Entered < 0 || n.Left < 0 || n.Inside < 0 {
			return nil, nil, fmt.Errorf("zone %q class %d: a negative count", n.Zone, n.ClassID)
		}
		zi, ok := zoneIndex[n.Zone]
		if !ok {
			continue
		}
		k := countKey{zi, n.ClassID}
		if counts[k] != nil {
			return nil, nil, fmt.Errorf("zone %q class %d is counted twice", n.Zone, n.ClassID)
		}
		n.Inside = 0 // recomputed from the tracks below
		counts[k] = &n
	}
	tracks := map[uint64][]memo{}
	for _, tm := range st.Tracks {
		if tm.ID == 0 || tracks[tm.ID] != nil {
			return nil, nil, fmt.Errorf("track ID %d: zero or repeated", tm.ID)
		}
		ms := make([]memo, len(c.cfg.Zones))
		for _, zm := range tm.Zones {
			if !seen[zm.Zone] {
				return nil, nil, fmt.Errorf("track %d: zone %q, which the state does not define", tm.ID, zm.Zone)
			}
			m := zm.memo
			if !validSide(m.Side) || !validSide(m.Raw) {
				return nil, nil, fmt.Errorf("track %d zone %q: side %d, raw %d", tm.ID, zm.Zone, m.Side, m.Raw)
			}
			if !same[zm.Zone] {
				continue
			}
			zi := zoneIndex[zm.Zone]
			if c.cfg.Zones[zi].IsLine() {
				m.ClassID, m.Label = 0, ""
			} else if m.Side > 0 {
				k := countKey{zi, m.ClassID}
				if counts[k] == nil {
					counts[k] = &ZoneCount{Zone: zm.Zone, ClassID: m.ClassID, Label: m.Label}
				}
				counts[k].Inside++
			}
			ms[zi] = m
		}
		tracks[tm.ID] = ms
	}
	return counts, tracks, nil
}

func validSide(s int8) bool { return s >= -1 && s <= 1 }

func sortedIDs[V any](m map[uint64]V) []uint64 {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
