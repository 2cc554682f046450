// Package metrics defines diplip's Prometheus metrics, with conventional names and
// units, in one registry per process that /metrics serves (the gateway's listener, a
// runner's --metrics-listen). Components update them; nothing here reads them back.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every diplip metric of this process, plus Go and process metrics.
var Registry = prometheus.NewRegistry()

// latencyBuckets span 1 ms to 10 s, for per-frame and per-batch times.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 14)

var (
	// IngestFrames counts pushed frames by stream and outcome: accepted (Kafka has it),
	// rejected (bad input, 4xx) or failed (Kafka or capacity, 5xx).
	IngestFrames = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_ingest_frames_total", Help: "Frames pushed to the gateway, by stream and outcome.",
	}, []string{"stream", "outcome"})

	// FramesProcessed counts results by deployment and status (ok, skipped, error).
	FramesProcessed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_frames_processed_total", Help: "Frames a runner produced a result for, by deployment and status.",
	}, []string{"deployment", "status"})

	// EndToEnd is capture time to result produced, per frame.
	EndToEnd = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "diplip_end_to_end_latency_seconds", Help: "Capture to result produced, per frame.", Buckets: latencyBuckets,
	}, []string{"deployment"})

	// Inference is the model's run time per batch.
	Inference = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "diplip_inference_latency_seconds", Help: "Model run time per batch.", Buckets: latencyBuckets,
	}, []string{"deployment"})

	// BatchSize is the number of frames per inference batch.
	BatchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "diplip_batch_size_frames", Help: "Frames per batch.", Buckets: prometheus.LinearBuckets(1, 1, 16),
	}, []string{"deployment"})

	// ConsumerLag is each deployment's lag, in frames, as the autoscaler last read it.
	ConsumerLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_consumer_lag_frames", Help: "Frames in a deployment's stream not yet committed by its runners.",
	}, []string{"deployment"})

	// Runners counts registered runners by state (idle, active).
	Runners = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "diplip_runners", Help: "Runners heard from, by state.",
	}, []string{"state"})

	// CameraReconnects counts pulled cameras dropping and reconnecting.
	CameraReconnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_camera_reconnects_total", Help: "Times a pulled camera dropped and was reconnected.",
	}, []string{"camera"})

	// ColdStarts measures activations: image pull (when not cached), model load, joining
	// the group.
	ColdStarts = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "diplip_cold_start_seconds", Help: "Runner activation time: pull, load, join.", Buckets: latencyBuckets,
	}, []string{"deployment"})

	// Transactions counts an exactly-once deployment's Kafka transactions by outcome
	// (committed, retried, abandoned: the partition moved before it committed).
	Transactions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_transactions_total", Help: "Kafka transactions of exactly-once deployments, by deployment and outcome.",
	}, []string{"deployment", "outcome"})

	// TransactionFrames is how many frames one committed transaction finished.
	TransactionFrames = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "diplip_transaction_frames", Help: "Frames per committed transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 9),
	}, []string{"deployment"})

	// DuplicateFramesSkipped counts the frame records an exactly-once deployment skipped
	// because their camera had sent that seq (or a later one) already: a retried push.
	DuplicateFramesSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_duplicate_frames_skipped_total", Help: "Frame records skipped as repeats of a camera's seq (exactly-once deployments).",
	}, []string{"deployment"})
)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		IngestFrames, FramesProcessed, EndToEnd, Inference, BatchSize, ConsumerLag, Runners, ColdStarts, CameraReconnects,
		Transactions, TransactionFrames, DuplicateFramesSkipped)
}

// Handler serves the registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{})
}
