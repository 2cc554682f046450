// Package gateway is diplip's HTTP server: the /v1 API (streams, functions, deployments,
// cameras, resources, results, frames), the dashboard, /metrics and the health endpoints,
// and it serves the registry handler it is given under /v2. Pushed frames go through to
// ingest; pulled cameras are run here. Its request and answer types are in package api.
//
// It does not start services (package node assembles a whole node), decide scaling
// (package scaler), or run models: it must not import runner, ONNX Runtime or gocv's DNN
// code, so the gateway starts fast and runs where no model does.
package gateway
