// Package gateway is diplip's HTTP server: the /v1 API (streams, functions, deployments,
// replays, shadows, cameras, zones, resources, results, frames), the dashboard, /metrics
// and the health endpoints, and it serves the registry handler it is given under /v2. It
// is HTTP only: it routes, decodes requests, turns errors into statuses in one place
// (statusOf: the kinds of package rollout, the sentinels of package ingest), and converts
// records to the api types. Its request and answer types are in package api.
//
// What a request changes is done elsewhere: the life of streams, functions and
// deployments by package rollout, pulled cameras by ingest.Supervisor, pushed frames by
// ingest.HTTPPush. It runs no background loop (package node owns and runs them), decides
// no scaling (it sees the scaler through the Scaler interface), and imports neither sarama
// nor runner, scaler, ONNX Runtime or gocv, so it starts fast and runs where no model does.
package gateway
