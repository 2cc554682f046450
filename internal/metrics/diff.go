package metrics

import "github.com/prometheus/client_golang/prometheus"

// The shadow diff: a stream's shadow deployment scored against its primary, frame by
// frame (package functions/compare), over the frames whose results were written in the
// last 5 minutes, as rollout's incremental shadow diff last computed it. Class "all" is
// every class together.
var (
	// ShadowPrecision is the shadow's precision against the primary, by stream and class.
	ShadowPrecision = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_shadow_precision_ratio", Help: "Shadow deployment's precision against the primary, by stream and class.",
	}, []string{"stream", "class"})
	// ShadowRecall is the shadow's recall against the primary.
	ShadowRecall = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_shadow_recall_ratio", Help: "Shadow deployment's recall against the primary, by stream and class.",
	}, []string{"stream", "class"})
	// ShadowF1 is the harmonic mean of the two.
	ShadowF1 = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_shadow_f1_ratio", Help: "Shadow deployment's F1 against the primary, by stream and class.",
	}, []string{"stream", "class"})
	// ShadowMeanIoU is the mean IoU of matched detections.
	ShadowMeanIoU = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_shadow_mean_iou_ratio", Help: "Mean IoU of the shadow's detections matched to the primary's, by stream and class.",
	}, []string{"stream", "class"})
	// ShadowCountDelta is the shadow's detections minus the primary's over the compared frames.
	ShadowCountDelta = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_shadow_count_delta", Help: "Shadow's detections minus the primary's on the compared frames, by stream and class.",
	}, []string{"stream", "class"})
	// ShadowFrames counts compared frames: both, only_primary, only_shadow; and pending,
	// the frames one side has that wait for the other (in flight, not compared yet).
	ShadowFrames = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_shadow_frames", Help: "Frames in the shadow diff of the last 5 minutes, by stream and side (both, only_primary, only_shadow; pending: waiting for the other side).",
	}, []string{"stream", "side"})
	// ShadowLatency is each side's end-to-end latency percentiles over the compared frames.
	ShadowLatency = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_shadow_latency_seconds", Help: "End-to-end latency percentiles over the compared frames, by stream, side (primary, shadow) and quantile.",
	}, []string{"stream", "side", "quantile"})
)

var shadowVecs = []*prometheus.GaugeVec{ShadowPrecision, ShadowRecall, ShadowF1, ShadowMeanIoU, ShadowCountDelta, ShadowFrames, ShadowLatency}

func init() {
	for _, v := range shadowVecs {
		Registry.MustRegister(v)
	}
}

// ForgetShadow drops every shadow gauge of stream (its shadow is gone).
func ForgetShadow(stream string) {
	for _, v := range shadowVecs {
		v.DeletePartialMatch(prometheus.Labels{"stream": stream})
	}
}
