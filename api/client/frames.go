package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/diplip/diplip/api"
)

// SampleFrames names up to n of stream's recorded frames spread evenly over the window
// from..to (RFC 3339; empty: the whole retained window).
func (c *Client) SampleFrames(ctx context.Context, stream string, n int, from, to string) (api.FrameSample, error) {
	q := url.Values{"n": {strconv.Itoa(n)}}
	if from != "" {
		q.Set("from", from)
	}
	if to != "" {
		q.Set("to", to)
	}
	var s api.FrameSample
	return s, c.do(ctx, http.MethodGet, "/v1/streams/"+url.PathEscape(stream)+"/sample?"+q.Encode(), nil, &s)
}

// Frame reads one recorded frame (its JPEG bytes) of stream by position.
func (c *Client) Frame(ctx context.Context, stream string, partition int32, offset int64) ([]byte, error) {
	return c.roundTrip(ctx, c.http, http.MethodGet, fmt.Sprintf("/v1/streams/%s/frames/%d/%d", url.PathEscape(stream), partition, offset), "", nil)
}
