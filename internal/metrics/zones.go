package metrics

import "github.com/prometheus/client_golang/prometheus"

// Zone metrics of tracking deployments, on the runner that holds the camera.
var (
	ZoneCrossings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_zone_crossings_total",
		Help: "Tracked objects that crossed a counting line, by direction (in or out).",
	}, []string{"stream", "camera", "zone", "class", "direction"})
	ZoneEntries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_zone_entries_total",
		Help: "Tracked objects that entered a counting area.",
	}, []string{"stream", "camera", "zone", "class"})
	ZoneOccupancy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_zone_occupancy",
		Help: "Tracked objects inside a counting area now.",
	}, []string{"stream", "camera", "zone", "class"})
	TrackerCheckpointErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_tracker_checkpoint_errors_total",
		Help: "Checkpoints of a camera's tracker state that could not be decoded (the camera started fresh) or were too large to save.",
	}, []string{"deployment"})
)

func init() {
	Registry.MustRegister(ZoneCrossings, ZoneEntries, ZoneOccupancy, TrackerCheckpointErrors)
}
