// Package functions holds the function spec, the pre- and post-processing of model
// families (letterbox, NMS, decoders) and the ONNX Runtime session wrapper.
//
// It knows nothing about Kafka or NATS.
package functions
