package gateway

import (
	"net/http"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/gateway/zones"
)

// zoneRoutes serves the zones of tracking deployments, /v1/zones, which package
// gateway/zones checks and keeps: 501 when the gateway has no zones store.
func (s *Server) zoneRoutes() {
	svc := &zones.Service{Zones: s.cfg.Zones, Store: s.cfg.Store, Kafka: s.cfg.Kafka, Rollout: s.cfg.Rollout}
	route := func(pattern string, status int, call func(*http.Request) (any, error)) {
		s.mux.Handle(pattern, requireToken(s.cfg.Token, s.handler(func(w http.ResponseWriter, r *http.Request) error {
			if s.cfg.Zones == nil {
				return errorf(http.StatusNotImplemented, "this gateway has no zones store")
			}
			v, err := call(r)
			if err == nil && status == http.StatusNoContent {
				w.WriteHeader(status)
			} else if err == nil {
				writeJSON(w, status, v)
			}
			return err
		})))
	}
	route("POST /v1/zones", http.StatusCreated, func(r *http.Request) (any, error) {
		var req api.ZoneRequest
		if err := decodeJSON(r, &req); err != nil {
			return nil, err
		}
		return svc.Add(r.Context(), req)
	})
	route("GET /v1/zones", http.StatusOK, func(r *http.Request) (any, error) { return svc.List(r.Context(), r.URL.Query().Get("stream")) })
	route("DELETE /v1/zones/{stream}/{camera}/{name}", http.StatusNoContent, func(r *http.Request) (any, error) {
		return nil, svc.Remove(r.Context(), r.PathValue("stream"), r.PathValue("camera"), r.PathValue("name"))
	})
}
