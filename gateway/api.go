package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// maxRequestBytes bounds a JSON request body on the API.
const maxRequestBytes = 1 << 20

// httpError is an error about the HTTP request itself (its body, its query, an endpoint
// this gateway does not serve), with the status it is answered with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// statusOf is the one place where an error becomes an HTTP status: the gateway's own, the
// kind of a rollout error, or an ingest sentinel. Anything else is a 500.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	switch rollout.KindOf(err) {
	case rollout.Invalid:
		return http.StatusBadRequest
	case rollout.NotFound:
		return http.StatusNotFound
	case rollout.Conflict:
		return http.StatusConflict
	case rollout.Upstream:
		return http.StatusBadGateway
	case rollout.Unavailable:
		return http.StatusServiceUnavailable
	}
	switch {
	case errors.Is(err, ingest.ErrBadCamera):
		return http.StatusBadRequest
	case errors.Is(err, ingest.ErrUnknownStream), errors.Is(err, ingest.ErrCameraNotFound):
		return http.StatusNotFound
	case errors.Is(err, ingest.ErrCameraExists):
		return http.StatusConflict
	case errors.Is(err, ingest.ErrNoVideo):
		return http.StatusNotImplemented
	case errors.Is(err, ingest.ErrStopped):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// handler adapts a handler that returns an error to http.HandlerFunc: the error is
// answered with statusOf's status and the body {"error": "..."}; a 500 is logged.
func (s *Server) handler(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		status := statusOf(err)
		if status == http.StatusInternalServerError {
			s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
	}
}

// requireToken refuses requests without "Authorization: Bearer TOKEN" (or HTTP Basic with
// the token as password, which is what OCI registry clients send) when a token is set.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			_, got, ok = r.BasicAuth()
		}
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			const msg = "missing or wrong token: pass --token or set DIPLIP_TOKEN (HTTP: Authorization: Bearer TOKEN; registry clients: the token as password)"
			w.Header().Set("WWW-Authenticate", `Basic realm="diplip"`)
			if strings.HasPrefix(r.URL.Path, "/v2/") {
				// The OCI distribution error format, which registry clients print.
				writeJSON(w, http.StatusUnauthorized, map[string]any{"errors": []map[string]string{{"code": "UNAUTHORIZED", "message": msg}}})
				return
			}
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// decodeJSON reads a JSON request body. The Content-Type must say application/json: a
// web page can send a cross-site "simple" request only with a form or text/plain type, so
// this also keeps other sites from driving the API.
func decodeJSON(r *http.Request, v any) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "content type %q: want application/json", r.Header.Get("Content-Type"))
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "request body: %v", err)
	}
	return nil
}

func (s *Server) routes() {
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /v1/streams", s.handler(s.listStreams))
	v1.HandleFunc("POST /v1/streams", s.handler(s.createStream))
	v1.HandleFunc("GET /v1/streams/{name}", s.handler(oneOf(s.cfg.Rollout.Stream, apiStream)))
	v1.HandleFunc("DELETE /v1/streams/{name}", s.handler(s.deleteStream))
	v1.HandleFunc("POST /v1/streams/{stream}/frames", s.push.Frames)
	v1.HandleFunc("POST /v1/streams/{stream}/mjpeg", s.push.MJPEG)
	v1.HandleFunc("GET /v1/functions", s.handler(listOf(s.cfg.Store.Functions, apiFunction)))
	v1.HandleFunc("POST /v1/functions", s.handler(s.registerFunction))
	v1.HandleFunc("GET /v1/functions/{name}", s.handler(oneOf(s.cfg.Rollout.Function, apiFunction)))
	v1.HandleFunc("DELETE /v1/functions/{name}", s.handler(s.deleteFunction))
	v1.HandleFunc("GET /v1/deployments", s.handler(listOf(s.cfg.Store.Deployments, apiDeployment)))
	v1.HandleFunc("POST /v1/deployments", s.handler(s.deploy))
	v1.HandleFunc("DELETE /v1/deployments/{function}/{stream}", s.handler(s.undeploy))
	v1.HandleFunc("GET /v1/resources", s.handler(s.resources))
	v1.HandleFunc("GET /v1/streams/{stream}/frames/{partition}/{offset}", s.handler(s.frame))
	v1.HandleFunc("GET /v1/streams/{stream}/sample", s.handler(s.sample))
	v1.HandleFunc("GET /v1/cameras", s.handler(s.listCameras))
	v1.HandleFunc("POST /v1/cameras", s.handler(s.addCamera))
	v1.HandleFunc("DELETE /v1/cameras/{id}", s.handler(s.removeCamera))
	v1.HandleFunc("GET /v1/streams/{stream}/results", s.handler(s.results))
	v1.HandleFunc("GET /v1/streams/{stream}/diff", s.handler(s.diff))
	v1.HandleFunc("POST /v1/streams/{stream}/promote", s.handler(s.promote))
	v1.HandleFunc("GET /v1/replays", s.handler(s.listReplays))
	v1.HandleFunc("POST /v1/replays", s.handler(s.startReplay))
	v1.HandleFunc("GET /v1/replays/{name}", s.handler(s.getReplay))
	v1.HandleFunc("DELETE /v1/replays/{name}", s.handler(s.removeReplay))
	v1.HandleFunc("/v1/", s.handler(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}))
	s.mux.Handle("/v1/", requireToken(s.cfg.Token, v1))
}

// createStream creates the stream (its topics, then its record) and shows it to ingest at
// once.
func (s *Server) createStream(w http.ResponseWriter, r *http.Request) error {
	var req api.StreamRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	st, err := s.cfg.Rollout.CreateStream(r.Context(), rollout.StreamRequest{Name: req.Name, Partitions: req.Partitions,
		Replication: req.Replication, RetentionMs: req.RetentionMs, RetentionBytes: req.RetentionBytes})
	if err != nil {
		return err
	}
	s.cfg.Streams.Remember(st)
	writeJSON(w, http.StatusCreated, apiStream(st))
	return nil
}

func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.cfg.Rollout.DeleteStream(r.Context(), name); err != nil {
		return err
	}
	s.cfg.Streams.Forget(name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listStreams(w http.ResponseWriter, r *http.Request) error {
	sts, err := s.cfg.Store.Streams(r.Context())
	if err != nil {
		return err
	}
	deps, err := s.cfg.Store.Deployments(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.StreamStatus, len(sts))
	for i, st := range sts {
		out[i] = api.StreamStatus{Stream: apiStream(st), Lag: map[string]int64{}}
		n, err := s.cfg.Kafka.StoredRecords(st.Topic)
		if err != nil {
			out[i].Error = "kafka: " + err.Error()
			continue
		}
		out[i].Frames = n
		if n > 0 {
			if w, err := s.cfg.Kafka.RetentionWindow(r.Context(), st.Topic); err == nil {
				out[i].FirstFrame, out[i].LastFrame = w.First, w.Last
			}
		}
		for _, d := range deps {
			// A replay's lag is what is left of its window, not of the stream: replay ls shows it.
			if d.Stream == st.Name && d.Role != wire.RoleReplay {
				if lag, err := s.cfg.Kafka.Lag(d.Group(), d.InputTopic(st)); err == nil {
					out[i].Lag[d.Key()] = lag
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) registerFunction(w http.ResponseWriter, r *http.Request) error {
	var req api.FunctionRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	fn, err := s.cfg.Rollout.RegisterFunction(r.Context(), req.Ref, req.Insecure)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiFunction(fn))
	return nil
}

func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request) error {
	if err := s.cfg.Rollout.DeleteFunction(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deploy records a deployment, or its shadow: 201 for a new one, 200 for a rolling update.
func (s *Server) deploy(w http.ResponseWriter, r *http.Request) error {
	var req api.DeployRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	role := wire.RolePrimary
	if req.Shadow {
		role = wire.RoleShadow
	}
	d, err := s.cfg.Rollout.Deploy(r.Context(), rollout.Request{Ref: req.Ref, Insecure: req.Insecure, Stream: req.Stream,
		Role: role, Min: req.Min, Max: req.Max, Batch: req.Batch, Lanes: req.Lanes, Device: req.Device, Policy: req.Policy,
		MaxAge: req.MaxAge, Delivery: req.Delivery, From: req.From, Track: req.Track, After: req.After, Classes: req.Classes, MinSize: req.MinSize, MaxPerFrame: req.MaxPerFrame})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if d.Generation > 1 {
		status = http.StatusOK
	}
	writeJSON(w, status, apiDeployment(d))
	return nil
}

func (s *Server) undeploy(w http.ResponseWriter, r *http.Request) error {
	fn, st := r.PathValue("function"), r.PathValue("stream")
	var err error
	switch role := r.URL.Query().Get("role"); role {
	case "shadow":
		err = s.cfg.Rollout.UndeployShadow(r.Context(), fn, st)
	case "", "primary":
		err = s.cfg.Rollout.UndeployChain(r.Context(), fn, st, rollout.Undeploying{After: r.URL.Query().Get("after"), Cascade: r.URL.Query().Has("cascade")})
	default:
		return errorf(http.StatusBadRequest, "role %q: want primary or shadow (a replay is removed with: diplip replay rm NAME)", role)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listOf answers a GET of a collection with what list returns, converted to the API's
// type ([] when empty).
func listOf[T, A any](list func(context.Context) ([]T, error), conv func(T) A) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := list(r.Context())
		if err != nil {
			return err
		}
		out := make([]A, len(v))
		for i, x := range v {
			out[i] = conv(x)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

// oneOf answers a GET of /.../{name} with what get returns for that name.
func oneOf[T, A any](get func(context.Context, string) (T, error), conv func(T) A) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := get(r.Context(), r.PathValue("name"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, conv(v))
		return nil
	}
}

func (s *Server) resources(w http.ResponseWriter, r *http.Request) error {
	res := api.Resources{Runners: []api.Runner{}, Deployments: []api.DeploymentStatus{}}
	if s.cfg.Scaler != nil {
		for _, hb := range s.cfg.Scaler.Runners() {
			res.Runners = append(res.Runners, apiRunner(hb))
		}
		res.Deployments = append(res.Deployments, s.cfg.Scaler.Deployments()...)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
