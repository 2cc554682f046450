package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/diplip/diplip/api"
)

// AddSink records a sink: a consumer of a stream's results that delivers events to a
// webhook or an MQTT broker. A URL that is malformed, unreachable or link-local (without
// AllowLinkLocal) is refused with a 400 that names it.
func (c *Client) AddSink(ctx context.Context, req api.SinkRequest) (api.Sink, error) {
	var s api.Sink
	return s, c.do(ctx, http.MethodPost, "/v1/sinks", req, &s)
}

// Sinks lists the sinks with their state; secrets are never in it.
func (c *Client) Sinks(ctx context.Context) ([]api.Sink, error) {
	var ss []api.Sink
	return ss, c.do(ctx, http.MethodGet, "/v1/sinks", nil, &ss)
}

// RemoveSink deletes a sink, its consumer group and its dead letters.
func (c *Client) RemoveSink(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/sinks/"+url.PathEscape(name), nil, nil)
}

// TestSink sends one sample event to a sink's target and returns its answer.
func (c *Client) TestSink(ctx context.Context, name string) (api.SinkTestResult, error) {
	var r api.SinkTestResult
	return r, c.do(ctx, http.MethodPost, "/v1/sinks/"+url.PathEscape(name)+"/test", struct{}{}, &r)
}

// DeadLetters lists a sink's dead letters, the last limit of them (0: all).
func (c *Client) DeadLetters(ctx context.Context, name string, limit int) ([]api.DeadLetter, error) {
	var d []api.DeadLetter
	return d, c.do(ctx, http.MethodGet, "/v1/sinks/"+url.PathEscape(name)+"/dead?limit="+strconv.Itoa(limit), nil, &d)
}

// ReplayDead sends a sink's dead letters not yet replayed to its target again.
func (c *Client) ReplayDead(ctx context.Context, name string) (api.ReplayDeadResult, error) {
	var r api.ReplayDeadResult
	return r, c.do(ctx, http.MethodPost, "/v1/sinks/"+url.PathEscape(name)+"/replay-dead", struct{}{}, &r)
}
