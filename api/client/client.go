// Package client is a small client of the gateway's /v1 API, used by the CLI, the bench,
// the sample cameras and tests; cameras push frames with PushFrame and PushMJPEG. It
// imports only package api, so it links nothing of the server. Errors carry the gateway's
// own message, which says what to do next, and its status (*Error).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/diplip/diplip/api"
)

// Client talks to one gateway. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// Option configures a Client made by New.
type Option func(*options) error

type options struct {
	http *http.Client
}

// WithHTTPClient sends every request through hc: its Transport decides connection reuse
// and its Timeout bounds each call, except the long-lived ones (Results with follow,
// PushMJPEG), which last as long as their context. Default: a client of its own on
// http.DefaultTransport with a 60 s timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) error {
		if hc == nil {
			return errors.New("WithHTTPClient: nil *http.Client")
		}
		o.http = hc
		return nil
	}
}

// New returns a client of the gateway at base (e.g. http://127.0.0.1:8080) that sends
// token, when not empty, as a bearer token.
func New(base, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gateway address %q: want http://HOST:PORT or https://HOST:PORT", base)
	}
	o := options{http: &http.Client{Timeout: 60 * time.Second}}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: o.http}, nil
}

// Error is an error answer from the gateway. Status tells a caller what to do: 503
// means the gateway could not take the request now and it may be sent again (after
// RetryAfter, when the gateway said); 4xx means the request itself was wrong.
type Error struct {
	Status  int
	Message string
	// RetryAfter is the gateway's Retry-After; 0 when it sent none.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// IsNotFound reports whether err is the gateway's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	contentType := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd, contentType = bytes.NewReader(b), "application/json"
	}
	b, err := c.roundTrip(ctx, c.http, method, path, contentType, rd)
	if err != nil {
		return err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("the gateway's answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, method, path, contentType string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// roundTrip sends one request through hc and reads the whole answer, so the connection
// can be reused. An answer of 300 or more is an *Error; its body is returned too.
func (c *Client) roundTrip(ctx context.Context, hc *http.Client, method, path, contentType string, body io.Reader) ([]byte, error) {
	req, err := c.newRequest(ctx, method, path, contentType, body)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway at %s is unreachable (%w); start one with: diplip up, or point --gateway / DIPLIP_GATEWAY at it", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return b, &Error{Status: resp.StatusCode, Message: e.Error, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
	return b, nil
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string) time.Duration {
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && time.Until(t) > 0 {
		return time.Until(t)
	}
	return 0
}

// CreateStream creates a stream.
func (c *Client) CreateStream(ctx context.Context, req api.StreamRequest) (api.Stream, error) {
	var st api.Stream
	return st, c.do(ctx, http.MethodPost, "/v1/streams", req, &st)
}

// Streams lists the streams with their frame counts and lag per deployment.
func (c *Client) Streams(ctx context.Context) ([]api.StreamStatus, error) {
	var st []api.StreamStatus
	return st, c.do(ctx, http.MethodGet, "/v1/streams", nil, &st)
}

// DeleteStream deletes a stream and its topics.
func (c *Client) DeleteStream(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/streams/"+url.PathEscape(name), nil, nil)
}

// RegisterFunction records the function image ref, pinned to its digest.
func (c *Client) RegisterFunction(ctx context.Context, req api.FunctionRequest) (api.Function, error) {
	var fn api.Function
	return fn, c.do(ctx, http.MethodPost, "/v1/functions", req, &fn)
}

// Functions lists the functions.
func (c *Client) Functions(ctx context.Context) ([]api.Function, error) {
	var fns []api.Function
	return fns, c.do(ctx, http.MethodGet, "/v1/functions", nil, &fns)
}

// Function returns one function.
func (c *Client) Function(ctx context.Context, name string) (api.Function, error) {
	var fn api.Function
	return fn, c.do(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name), nil, &fn)
}

// DeleteFunction removes a function record (not its image).
func (c *Client) DeleteFunction(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/functions/"+url.PathEscape(name), nil, nil)
}

// Deploy creates or updates the deployment of a function image on a stream.
func (c *Client) Deploy(ctx context.Context, req api.DeployRequest) (api.Deployment, error) {
	var d api.Deployment
	return d, c.do(ctx, http.MethodPost, "/v1/deployments", req, &d)
}

// Deployments lists the deployments.
func (c *Client) Deployments(ctx context.Context) ([]api.Deployment, error) {
	var ds []api.Deployment
	return ds, c.do(ctx, http.MethodGet, "/v1/deployments", nil, &ds)
}

// Undeploy removes the deployment of function on stream.
func (c *Client) Undeploy(ctx context.Context, function, stream string) error {
	return c.do(ctx, http.MethodDelete, "/v1/deployments/"+url.PathEscape(function)+"/"+url.PathEscape(stream), nil, nil)
}

// Resources returns the runners and the deployments' status.
func (c *Client) Resources(ctx context.Context) (api.Resources, error) {
	var r api.Resources
	return r, c.do(ctx, http.MethodGet, "/v1/resources", nil, &r)
}

// Results calls fn with each result of stream: the last n, then, with follow, new ones
// as they come, until ctx ends or fn returns an error.
func (c *Client) Results(ctx context.Context, stream string, last int, follow bool, fn func(api.Result) error) error {
	return c.results(ctx, stream, url.Values{}, last, follow, fn)
}

// ResultsAfter is Results for a second stage: the enriched results of function after
// first on stream, from its own results topic, then live. An empty function is the one
// second stage after first (the gateway answers 400 when several are). 404 names the
// second stages on the stream when none matches.
func (c *Client) ResultsAfter(ctx context.Context, stream, first, function string, last int, follow bool, fn func(api.Result) error) error {
	q := url.Values{"after": {first}}
	if function != "" {
		q.Set("function", function)
	}
	return c.results(ctx, stream, q, last, follow, fn)
}

func (c *Client) results(ctx context.Context, stream string, q url.Values, last int, follow bool, fn func(api.Result) error) error {
	q.Set("last", strconv.Itoa(last))
	if follow {
		q.Set("follow", "1")
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/streams/"+url.PathEscape(stream)+"/results?"+q.Encode(), "", nil)
	if err != nil {
		return err
	}
	hc := *c.http
	hc.Timeout = 0 // a follow lasts as long as ctx
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("gateway at %s is unreachable (%v)", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return &Error{Status: resp.StatusCode, Message: e.Error}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var r api.Result
		if err := dec.Decode(&r); err != nil {
			if err == io.EOF || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading results: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
}

// AddCamera records a pulled camera and starts it.
func (c *Client) AddCamera(ctx context.Context, req api.CameraRequest) (api.Camera, error) {
	var cam api.Camera
	return cam, c.do(ctx, http.MethodPost, "/v1/cameras", req, &cam)
}

// Cameras lists the pulled cameras with their health.
func (c *Client) Cameras(ctx context.Context) ([]api.CameraStatus, error) {
	var cams []api.CameraStatus
	return cams, c.do(ctx, http.MethodGet, "/v1/cameras", nil, &cams)
}

// RemoveCamera stops and forgets a pulled camera.
func (c *Client) RemoveCamera(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/cameras/"+url.PathEscape(id), nil, nil)
}

// UndeployAfter removes the second stage function running after first on stream.
func (c *Client) UndeployAfter(ctx context.Context, function, stream, first string) error {
	return c.do(ctx, http.MethodDelete, "/v1/deployments/"+url.PathEscape(function)+"/"+url.PathEscape(stream)+"?after="+url.QueryEscape(first), nil, nil)
}

// UndeployCascade removes the primary deployment of function on stream with every second
// stage that runs after it (Undeploy refuses, 409, while one does).
func (c *Client) UndeployCascade(ctx context.Context, function, stream string) error {
	return c.do(ctx, http.MethodDelete, "/v1/deployments/"+url.PathEscape(function)+"/"+url.PathEscape(stream)+"?cascade=1", nil, nil)
}

// UndeployShadow removes the shadow deployment of function on stream; the primary stays.
func (c *Client) UndeployShadow(ctx context.Context, function, stream string) error {
	return c.do(ctx, http.MethodDelete, "/v1/deployments/"+url.PathEscape(function)+"/"+url.PathEscape(stream)+"?role=shadow", nil, nil)
}

// Promote makes stream's shadow its primary: a rolling update of the primary to the
// shadow's digest; the shadow deployment is removed.
func (c *Client) Promote(ctx context.Context, stream string) (api.Deployment, error) {
	var d api.Deployment
	return d, c.do(ctx, http.MethodPost, "/v1/streams/"+url.PathEscape(stream)+"/promote", struct{}{}, &d)
}

// StartReplay starts a replay of a function image over a stream's retained frames.
func (c *Client) StartReplay(ctx context.Context, req api.ReplayRequest) (api.Replay, error) {
	var r api.Replay
	return r, c.do(ctx, http.MethodPost, "/v1/replays", req, &r)
}

// Replays lists the replays with their progress.
func (c *Client) Replays(ctx context.Context) ([]api.Replay, error) {
	var rs []api.Replay
	return rs, c.do(ctx, http.MethodGet, "/v1/replays", nil, &rs)
}

// Replay returns one replay with its progress.
func (c *Client) Replay(ctx context.Context, name string) (api.Replay, error) {
	var r api.Replay
	return r, c.do(ctx, http.MethodGet, "/v1/replays/"+url.PathEscape(name), nil, &r)
}

// RemoveReplay stops a replay and removes it with its results topic and consumer group.
func (c *Client) RemoveReplay(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/replays/"+url.PathEscape(name), nil, nil)
}

// Diff compares a candidate's results with the primary's on stream: replay names a
// replay; empty means the stream's shadow.
func (c *Client) Diff(ctx context.Context, stream, replay string) (api.Diff, error) {
	q := url.Values{"shadow": {"1"}}
	if replay != "" {
		q = url.Values{"replay": {replay}}
	}
	var d api.Diff
	return d, c.do(ctx, http.MethodGet, "/v1/streams/"+url.PathEscape(stream)+"/diff?"+q.Encode(), nil, &d)
}
