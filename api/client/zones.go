package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/diplip/diplip/api"
)

// AddZone records a counting line or area on a stream's camera.
func (c *Client) AddZone(ctx context.Context, req api.ZoneRequest) (api.Zone, error) {
	var z api.Zone
	return z, c.do(ctx, http.MethodPost, "/v1/zones", req, &z)
}

// Zones lists the zones of a stream ("" for all).
func (c *Client) Zones(ctx context.Context, stream string) ([]api.Zone, error) {
	var zs []api.Zone
	path := "/v1/zones"
	if stream != "" {
		path += "?stream=" + url.QueryEscape(stream)
	}
	return zs, c.do(ctx, http.MethodGet, path, nil, &zs)
}

// RemoveZone deletes a zone.
func (c *Client) RemoveZone(ctx context.Context, stream, camera, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/zones/"+url.PathEscape(stream)+"/"+url.PathEscape(camera)+"/"+url.PathEscape(name), nil, nil)
}
