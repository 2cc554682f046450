package gateway

import (
	"context"
	"net/http"
	"strconv"

	"github.com/diplip/diplip/api"
)

// Sinks is what the gateway does with sinks, in the API's terms (package node adapts
// package sinks to it; errors carry rollout's kinds).
type Sinks interface {
	Add(context.Context, api.SinkRequest) (api.Sink, error)
	List(context.Context) ([]api.Sink, error)
	Remove(ctx context.Context, name string) error
	Test(ctx context.Context, name string) (api.SinkTestResult, error)
	Dead(ctx context.Context, name string, limit int) ([]api.DeadLetter, error)
	ReplayDead(ctx context.Context, name string) (api.ReplayDeadResult, error)
}

// sinkRoutes serves /v1/sinks: 501 when the gateway has no Sinks.
func (s *Server) sinkRoutes() {
	route := func(pattern string, status int, call func(Sinks, *http.Request) (any, error)) {
		s.mux.Handle(pattern, requireToken(s.cfg.Token, s.handler(func(w http.ResponseWriter, r *http.Request) error {
			if s.cfg.Sinks == nil {
				return errorf(http.StatusNotImplemented, "this gateway runs no sinks")
			}
			v, err := call(s.cfg.Sinks, r)
			if err == nil {
				writeJSON(w, status, v)
			}
			return err
		})))
	}
	route("POST /v1/sinks", http.StatusCreated, func(k Sinks, r *http.Request) (any, error) {
		var req api.SinkRequest
		if err := decodeJSON(r, &req); err != nil {
			return nil, err
		}
		return k.Add(r.Context(), req)
	})
	route("GET /v1/sinks", http.StatusOK, func(k Sinks, r *http.Request) (any, error) { return k.List(r.Context()) })
	route("DELETE /v1/sinks/{name}", http.StatusOK, func(k Sinks, r *http.Request) (any, error) {
		return map[string]string{"removed": r.PathValue("name")}, k.Remove(r.Context(), r.PathValue("name"))
	})
	route("POST /v1/sinks/{name}/test", http.StatusOK, func(k Sinks, r *http.Request) (any, error) {
		return k.Test(r.Context(), r.PathValue("name"))
	})
	route("GET /v1/sinks/{name}/dead", http.StatusOK, func(k Sinks, r *http.Request) (any, error) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		return k.Dead(r.Context(), r.PathValue("name"), limit)
	})
	route("POST /v1/sinks/{name}/replay-dead", http.StatusOK, func(k Sinks, r *http.Request) (any, error) {
		return k.ReplayDead(r.Context(), r.PathValue("name"))
	})
}
