// Package gateway is diplip's control point: the HTTP API (/v1), the embedded OCI registry
// (/v2), health endpoints, the control plane on NATS, and the wiring that runs every
// service on one machine for `diplip up`.
//
// It must not import ONNX Runtime or gocv's DNN code: the gateway starts fast and runs
// where no model does.
package gateway
