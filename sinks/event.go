package sinks

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/wire"
)

// Event kinds a sink sends: the tracker's zone events and detected (a result with
// detections, one event per class).
const (
	KindCrossed  = wire.EventCrossed
	KindEntered  = wire.EventEntered
	KindLeft     = wire.EventLeft
	KindDetected = "detected"
	KindTest     = "test"
)

var kinds = []string{KindCrossed, KindEntered, KindLeft, KindDetected}

// filter is a sink's filters and cooldown; events are made by it from results. It is not
// safe for concurrent use (a sink's partitions each have their own: a camera keeps one
// partition, so cooldowns, which are per camera, do not cross them).
type filter struct {
	spec     wire.Sink
	gateway  string // base URL of snapshots
	last     map[string]time.Time
	counts   map[string]api.ZoneCount // last count published, by camera/zone/class
	kinds    map[string]bool
	classes  map[string]bool
	cameras  map[string]bool
	zones    map[string]bool
	cooldown time.Duration
}

func set(xs []string) map[string]bool {
	if len(xs) == 0 {
		return nil
	}
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func newFilter(spec wire.Sink, gateway string) *filter {
	return &filter{spec: spec, gateway: strings.TrimSuffix(gateway, "/"), last: map[string]time.Time{}, counts: map[string]api.ZoneCount{},
		kinds: set(spec.Events), classes: set(spec.Classes), cameras: set(spec.Cameras), zones: set(spec.Zones),
		cooldown: time.Duration(spec.Cooldown)}
}

func label(classID int, l string) string {
	if l != "" {
		return l
	}
	return fmt.Sprintf("class%d", classID)
}

func (f *filter) classOK(classID int, l string) bool {
	return f.classes == nil || f.classes[label(classID, l)] || f.classes[fmt.Sprint(classID)]
}

// cool reports whether an event of key at t may go out, and if so records it. Times are
// capture times, so a replay of old results cools down as the live run did.
func (f *filter) cool(key string, t time.Time) bool {
	if f.cooldown <= 0 {
		return true
	}
	if last, ok := f.last[key]; ok && t.Sub(last) < f.cooldown && t.Sub(last) > -f.cooldown {
		return false
	}
	f.last[key] = t
	return true
}

// Events makes a result's events, filtered and cooled down.
func (f *filter) Events(r wire.Result) []api.SinkEvent {
	if r.Status != wire.StatusOK || (f.spec.Function != "" && r.Function != f.spec.Function) ||
		(f.cameras != nil && !f.cameras[r.Camera]) {
		return nil
	}
	base := api.SinkEvent{Sink: f.spec.Name, Stream: r.Stream, Camera: r.Camera, Seq: r.Seq, Function: r.Function,
		ResultID: r.ID, CaptureTime: r.CaptureTime, Snapshot: f.snapshot(r)}
	var out []api.SinkEvent
	for _, e := range r.Events {
		if (f.kinds != nil && !f.kinds[e.Kind]) || (f.zones != nil && !f.zones[e.Zone]) || !f.classOK(e.ClassID, e.Label) {
			continue
		}
		ev := base
		ev.Kind, ev.Zone, ev.Direction, ev.TrackID, ev.ClassID, ev.Label = e.Kind, e.Zone, e.Direction, e.TrackID, e.ClassID, e.Label
		ev.ID = fmt.Sprintf("%s/%s/%s/%d", r.ID, e.Kind, e.Zone, e.TrackID)
		if e.Direction != "" {
			ev.ID += "/" + e.Direction
		}
		if i := slices.IndexFunc(r.Detections, func(d wire.Detection) bool { return d.TrackID == e.TrackID && e.TrackID != 0 }); i >= 0 {
			d := r.Detections[i]
			ev.Score, ev.Box = d.Score, &api.Box{X1: d.Box.X1, Y1: d.Box.Y1, X2: d.Box.X2, Y2: d.Box.Y2}
			if ev.Snapshot != "" {
				ev.Crop = fmt.Sprintf("%s?box=%.0f,%.0f,%.0f,%.0f", ev.Snapshot, d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2)
			}
			if d.Score < f.spec.MinScore {
				continue
			}
		}
		for _, c := range r.Counts {
			if c.Zone == e.Zone && c.ClassID == e.ClassID {
				ev.Counts = append(ev.Counts, api.ZoneCount(c))
			}
		}
		if !f.cool(r.Camera+"/zone/"+e.Zone+"/"+label(e.ClassID, e.Label), r.CaptureTime) {
			continue
		}
		out = append(out, ev)
	}
	if f.kinds == nil || f.kinds[KindDetected] {
		out = append(out, f.detected(r, base)...)
	}
	return out
}

// detected makes one event per class of the result's detections.
func (f *filter) detected(r wire.Result, base api.SinkEvent) []api.SinkEvent {
	var out []api.SinkEvent
	byClass := map[string]int{} // label → index in out
	for _, d := range r.Detections {
		if d.Score < f.spec.MinScore || !f.classOK(d.ClassID, d.Label) {
			continue
		}
		l := label(d.ClassID, d.Label)
		i, ok := byClass[l]
		if !ok {
			ev := base
			ev.Kind, ev.ClassID, ev.Label = KindDetected, d.ClassID, d.Label
			ev.ID = r.ID + "/detected/" + l
			i = len(out)
			byClass[l] = i
			out = append(out, ev)
		}
		ev := &out[i]
		ev.Detections = append(ev.Detections, api.Detection{ClassID: d.ClassID, Label: d.Label, Score: d.Score, TrackID: d.TrackID,
			Box: api.Box{X1: d.Box.X1, Y1: d.Box.Y1, X2: d.Box.X2, Y2: d.Box.Y2}})
		if d.Score > ev.Score {
			ev.Score = d.Score
		}
	}
	return slices.DeleteFunc(out, func(ev api.SinkEvent) bool {
		return !f.cool(r.Camera+"/class/"+label(ev.ClassID, ev.Label), r.CaptureTime)
	})
}

// Counts returns the result's zone counts that changed since the last ones returned,
// filtered by camera, zone and class (MQTT keeps them as retained messages).
func (f *filter) Counts(r wire.Result) []api.SinkCount {
	if r.Status != wire.StatusOK || (f.spec.Function != "" && r.Function != f.spec.Function) ||
		(f.cameras != nil && !f.cameras[r.Camera]) {
		return nil
	}
	var out []api.SinkCount
	for _, c := range r.Counts {
		if (f.zones != nil && !f.zones[c.Zone]) || !f.classOK(c.ClassID, c.Label) {
			continue
		}
		key := r.Camera + "/" + c.Zone + "/" + label(c.ClassID, c.Label)
		if prev, ok := f.counts[key]; ok && prev == api.ZoneCount(c) {
			continue
		}
		f.counts[key] = api.ZoneCount(c)
		out = append(out, api.SinkCount{Stream: r.Stream, Camera: r.Camera, Zone: c.Zone, Class: label(c.ClassID, c.Label),
			In: c.In, Out: c.Out, Entered: c.Entered, Left: c.Left, Inside: c.Inside, CaptureTime: r.CaptureTime})
	}
	return out
}

func (f *filter) snapshot(r wire.Result) string {
	if f.gateway == "" {
		return ""
	}
	return fmt.Sprintf("%s/v1/streams/%s/frames/%d/%d", f.gateway, r.Stream, r.Source.Partition, r.Source.Offset)
}
