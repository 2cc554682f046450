// Package runner claims a stream's Kafka partitions on demand, batches frames, runs a
// function's model on them and publishes the results; it owns the activation life cycle
// that lets runners scale to zero.
//
// It knows nothing about HTTP cameras.
package runner
