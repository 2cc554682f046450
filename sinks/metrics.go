package sinks

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/diplip/diplip/internal/metrics"
)

// A sink's counters, by sink name.
var (
	mDelivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_sink_delivered_total", Help: "Events a sink's target accepted, by sink.",
	}, []string{"sink"})
	mFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_sink_failed_total", Help: "Delivery attempts that failed, by sink.",
	}, []string{"sink"})
	mRetried = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_sink_retried_total", Help: "Delivery attempts that were retries, by sink.",
	}, []string{"sink"})
	mDead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diplip_sink_dead_lettered_total", Help: "Events a sink gave up on and wrote to its dead-letter topic, by sink.",
	}, []string{"sink"})
	mLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "diplip_sink_delivery_latency_seconds", Help: "Time from a frame's capture to its event's acceptance by the target, by sink.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
	}, []string{"sink"})
)

func init() {
	metrics.Registry.MustRegister(mDelivered, mFailed, mRetried, mDead, mLatency)
}

func forgetMetrics(sink string) {
	for _, v := range []*prometheus.CounterVec{mDelivered, mFailed, mRetried, mDead} {
		v.DeleteLabelValues(sink)
	}
	mLatency.DeleteLabelValues(sink)
}
