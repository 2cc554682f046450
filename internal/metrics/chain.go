package metrics

import "github.com/prometheus/client_golang/prometheus"

// A second stage's (chained function's) work.
var (
	// ChainCrops counts the crops a second stage ran its model on (rate: crops per second).
	ChainCrops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_chain_crops_total", Help: "Crops a second stage ran its model on.",
	}, []string{"deployment"})

	// ChainCropsPerFrame is how many of a frame's detections a second stage selected.
	ChainCropsPerFrame = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "diplip_chain_crops_per_frame", Help: "Detections a second stage selected per frame.",
		Buckets: []float64{0, 1, 2, 4, 8, 16, 32, 64},
	}, []string{"deployment"})

	// ChainTooSmall counts the detections of a selected class a second stage skipped
	// because their box was less than its min size high (skipped, not an error).
	ChainTooSmall = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_chain_too_small_total", Help: "Detections of a selected class a second stage skipped as smaller than its min size.",
	}, []string{"deployment"})

	// ChainFrameBytes counts the bytes of the frames a second stage cropped (one decode
	// each); ChainFrameReadBytes the frame bytes it read from the frames topic for them,
	// read-ahead included (by the offsets its first stage's results name).
	ChainFrameBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_chain_frame_bytes_total", Help: "Bytes of the frames a second stage cropped.",
	}, []string{"deployment"})
	ChainFrameReadBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_chain_frame_read_bytes_total", Help: "Frame bytes a second stage read from the frames topic, read-ahead included.",
	}, []string{"deployment"})
)

func init() {
	Registry.MustRegister(ChainTooSmall, ChainCrops, ChainCropsPerFrame, ChainFrameBytes, ChainFrameReadBytes)
}
