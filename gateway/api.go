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
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

// DefaultMaxAge is a live deployment's max age when it names none: frames older than this
// when their batch starts get a "skipped" result, so latency stays bounded under overload.
const DefaultMaxAge = 5 * time.Second

// maxRequestBytes bounds a JSON request body on the API.
const maxRequestBytes = 1 << 20

// apiError is an error with the HTTP status it should be answered with.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// handler adapts a handler that returns an error to http.HandlerFunc: an apiError is
// answered with its status, anything else with 500; the body is {"error": "..."}.
func (s *Server) handler(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		status := http.StatusInternalServerError
		var ae *apiError
		if errors.As(err, &ae) {
			status = ae.status
		} else {
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
	v1.HandleFunc("GET /v1/streams/{name}", s.handler(oneOf(s.stream, apiStream)))
	v1.HandleFunc("DELETE /v1/streams/{name}", s.handler(s.deleteStream))
	v1.HandleFunc("POST /v1/streams/{stream}/frames", s.push.Frames)
	v1.HandleFunc("POST /v1/streams/{stream}/mjpeg", s.push.MJPEG)
	v1.HandleFunc("GET /v1/functions", s.handler(listOf(s.cfg.Store.Functions, apiFunction)))
	v1.HandleFunc("POST /v1/functions", s.handler(s.registerFunction))
	v1.HandleFunc("GET /v1/functions/{name}", s.handler(oneOf(s.function, apiFunction)))
	v1.HandleFunc("DELETE /v1/functions/{name}", s.handler(s.deleteFunction))
	v1.HandleFunc("GET /v1/deployments", s.handler(listOf(s.cfg.Store.Deployments, apiDeployment)))
	v1.HandleFunc("POST /v1/deployments", s.handler(s.deploy))
	v1.HandleFunc("DELETE /v1/deployments/{function}/{stream}", s.handler(s.undeploy))
	v1.HandleFunc("GET /v1/resources", s.handler(s.resources))
	v1.HandleFunc("GET /v1/streams/{stream}/frames/{partition}/{offset}", s.handler(s.frame))
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

func (s *Server) stream(ctx context.Context, name string) (wire.Stream, error) {
	st, err := s.cfg.Store.Stream(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return st, errorf(http.StatusNotFound, "stream %q not found; create it with: diplip stream create %s", name, name)
	}
	return st, err
}

// createStream creates the stream's frames and results topics, then records the stream.
// If any step fails, what was created is removed again.
func (s *Server) createStream(w http.ResponseWriter, r *http.Request) error {
	var req api.StreamRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := wire.ValidName("stream", req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if req.Partitions < 1 || req.Partitions > 1024 {
		return errorf(http.StatusBadRequest, "partitions %d: want 1..1024", req.Partitions)
	}
	if req.RetentionMs < 0 || req.RetentionBytes < 0 {
		return errorf(http.StatusBadRequest, "retention must not be negative")
	}
	if _, err := s.cfg.Store.Stream(r.Context(), req.Name); err == nil {
		return errorf(http.StatusConflict, "stream %q already exists", req.Name)
	}
	rf := req.Replication
	if rf == 0 {
		n, err := s.cfg.Kafka.BrokerCount()
		if err != nil {
			return errorf(http.StatusServiceUnavailable, "kafka: describing the cluster: %v", err)
		}
		rf = int16(min(3, n))
	}
	st := wire.Stream{
		Name: req.Name, Topic: "diplip.frames." + req.Name, ResultsTopic: "diplip.results." + req.Name,
		Partitions: req.Partitions, Replication: rf, RetentionMs: req.RetentionMs, RetentionBytes: req.RetentionBytes,
		Created: time.Now().UTC(),
	}
	cfg := map[string]*string{}
	if req.RetentionMs > 0 {
		cfg["retention.ms"] = ptr(fmt.Sprint(req.RetentionMs))
	}
	if req.RetentionBytes > 0 {
		cfg["retention.bytes"] = ptr(fmt.Sprint(req.RetentionBytes))
	}
	topics := []kafkaclient.TopicSpec{
		{Name: st.Topic, Partitions: req.Partitions, Replication: rf, Config: cfg},
		{Name: st.ResultsTopic, Partitions: req.Partitions, Replication: rf, Config: cfg},
	}
	if err := s.cfg.Kafka.CreateTopics(topics); err != nil {
		return errorf(http.StatusBadGateway, "kafka: %v", err)
	}
	undo := func() {
		if err := s.cfg.Kafka.DeleteTopics(st.Topic, st.ResultsTopic); err != nil {
			s.log.Warn("could not remove topics after a failed stream create", "stream", st.Name, "err", err)
		}
	}
	if err := s.cfg.Store.CreateStream(r.Context(), st); err != nil {
		undo()
		if errors.Is(err, controlplane.ErrExists) {
			return errorf(http.StatusConflict, "stream %q already exists", req.Name)
		}
		return err
	}
	s.cfg.Streams.Remember(st)
	writeJSON(w, http.StatusCreated, apiStream(st))
	return nil
}

func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stream(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	deps, err := s.cfg.Store.Deployments(r.Context())
	if err != nil {
		return err
	}
	for _, d := range deps {
		if d.Stream != st.Name {
			continue
		}
		switch d.Role {
		case wire.RoleReplay:
			return errorf(http.StatusConflict, "stream %q has deployment %s (a replay); remove it first with: diplip replay rm %s",
				st.Name, d.Key(), d.ReplayName())
		case wire.RoleShadow:
			return errorf(http.StatusConflict, "stream %q has deployment %s (a shadow); remove it first with: diplip fn undeploy %s --stream %s --shadow",
				st.Name, d.Key(), d.Function, d.Stream)
		}
		return errorf(http.StatusConflict, "stream %q has deployment %s; remove it first with: diplip fn undeploy %s --stream %s",
			st.Name, d.Key(), d.Function, d.Stream)
	}
	cams, err := s.cfg.Store.Cameras(r.Context())
	if err != nil {
		return err
	}
	for _, c := range cams {
		if c.Stream == st.Name {
			return errorf(http.StatusConflict, "stream %q has camera %s; remove it first with: diplip camera rm %s", st.Name, c.ID, c.ID)
		}
	}
	// The record goes last: while a topic deletion fails, the stream stays listed and the
	// delete can be retried.
	// A shadow's results topic outlives its shadow (see docs/replay.md); it goes with the stream.
	if err := s.cfg.Kafka.DeleteTopics(st.Topic, st.ResultsTopic, wire.ShadowResultsTopic(st.Name)); err != nil {
		return errorf(http.StatusBadGateway, "kafka: %v", err)
	}
	if err := s.cfg.Store.DeleteStream(r.Context(), st.Name); err != nil {
		return err
	}
	s.cfg.Streams.Forget(st.Name)
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
				if lag, err := s.cfg.Kafka.Lag(d.Group(), st.Topic); err == nil {
					out[i].Lag[d.Key()] = lag
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) function(ctx context.Context, name string) (wire.Function, error) {
	fn, err := s.cfg.Store.Function(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return fn, errorf(http.StatusNotFound, "function %q not found; deploy an image with: diplip fn deploy REF --stream S", name)
	}
	return fn, err
}

func (s *Server) registerFunction(w http.ResponseWriter, r *http.Request) error {
	var req api.FunctionRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	fn, err := s.resolveFunction(r.Context(), req.Ref, req.Insecure)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.PutFunction(r.Context(), fn); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiFunction(fn))
	return nil
}

// resolveFunction reads a function image's manifest and config from its registry (no
// layer download) and returns the record pinned to its digest.
func (s *Server) resolveFunction(ctx context.Context, refStr string, insecure bool) (wire.Function, error) {
	var fn wire.Function
	ref, err := registry.ParseReference(refStr, insecure)
	if err != nil {
		return fn, errorf(http.StatusBadRequest, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := registry.Inspect(ctx, ref, s.cfg.RegistryOptions...)
	var te *transport.Error
	switch {
	case errors.Is(err, registry.ErrNotFunction):
		return fn, errorf(http.StatusBadRequest, "%v", err)
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		return fn, errorf(http.StatusNotFound, "function image %s not found in its registry; push it first with: diplip fn push %s", ref, ref)
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return fn, errorf(http.StatusBadGateway, "the registry of %s refused the gateway's credentials (%v); log the gateway's host in to it (docker config)", ref, err)
	case err != nil:
		return fn, errorf(http.StatusBadGateway, "%v", err)
	}
	specJSON, _ := json.Marshal(info.Spec)
	return wire.Function{
		Name: info.Spec.Name, Ref: ref.String(), Digest: info.Digest.String(),
		Spec: specJSON, Size: info.Size, Created: time.Now().UTC(),
	}, nil
}

func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.function(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	deps, err := s.cfg.Store.Deployments(r.Context())
	if err != nil {
		return err
	}
	for _, d := range deps {
		if d.Function == fn.Name {
			return errorf(http.StatusConflict, "function %q is deployed on stream %q; remove that first with: diplip fn undeploy %s --stream %s",
				fn.Name, d.Stream, fn.Name, d.Stream)
		}
	}
	if err := s.cfg.Store.DeleteFunction(r.Context(), fn.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deploy resolves the image, checks the stream and the request against the function's
// spec, records the function and then the deployment (a rolling update when the
// function already runs on that stream).
func (s *Server) deploy(w http.ResponseWriter, r *http.Request) error {
	var req api.DeployRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Ref == "" {
		return errorf(http.StatusBadRequest, "ref: required (a function image, e.g. 127.0.0.1:8080/fn/yolox-nano:v1)")
	}
	st, err := s.stream(r.Context(), req.Stream)
	if err != nil {
		return err
	}
	fn, err := s.resolveFunction(r.Context(), req.Ref, req.Insecure)
	if err != nil {
		return err
	}
	if req.Shadow {
		return s.deployShadow(w, r, req, st, fn)
	}
	var spec functions.Spec
	if err := json.Unmarshal(fn.Spec, &spec); err != nil {
		return err
	}
	d, from, err := deploymentFor(req, fn, spec)
	if err != nil {
		return err
	}
	if err := s.checkDelivery(d); err != nil {
		return err
	}
	if err := s.cfg.Store.PutFunction(r.Context(), fn); err != nil {
		return err
	}
	stored, err := s.cfg.Store.PutDeployment(r.Context(), d)
	if err != nil {
		return err
	}
	if stored.Generation == 1 {
		// Where a new deployment starts: live at the stream's end (not its retained past),
		// replay at --from or the earliest retained frame. A group that already committed
		// (an earlier deployment of the pair) keeps its place.
		var err error
		switch {
		case stored.Policy == wire.PolicyLive:
			err = s.cfg.Kafka.StartGroupAtEnd(stored.Group(), st.Topic)
		case !from.IsZero():
			err = s.cfg.Kafka.StartGroupAt(stored.Group(), st.Topic, from)
		}
		if err != nil {
			_ = s.cfg.Store.DeleteDeployment(context.WithoutCancel(r.Context()), stored.Function, stored.Stream) // nothing half-done
			return errorf(http.StatusBadGateway, "kafka: setting where deployment %s starts: %v", stored.Key(), err)
		}
	}
	status := http.StatusCreated
	if stored.Generation > 1 {
		status = http.StatusOK
	}
	writeJSON(w, status, apiDeployment(stored))
	return nil
}

// checkDelivery refuses an exactly-once deployment on a cluster that cannot run Kafka
// transactions, before anything is stored.
func (s *Server) checkDelivery(d wire.Deployment) error {
	if !d.Delivery.Transactional() {
		return nil
	}
	err := s.cfg.Kafka.CheckTransactions()
	switch {
	case errors.Is(err, kafkaclient.ErrNoTransactions):
		return errorf(http.StatusConflict, "delivery exactly-once: %v", err)
	case err != nil:
		return errorf(http.StatusBadGateway, "delivery exactly-once: asking kafka whether it runs transactions: %v", err)
	}
	return nil
}

// deploymentFor checks a deploy request against the function's spec and fills the
// defaults; from is the replay policy's start time (zero: none given).
func deploymentFor(req api.DeployRequest, fn wire.Function, spec functions.Spec) (d wire.Deployment, from time.Time, err error) {
	d = wire.Deployment{
		Function: fn.Name, Stream: req.Stream, Digest: fn.Digest, Min: req.Min, Max: req.Max,
		Batch: req.Batch, Device: wire.Device(req.Device), Policy: wire.Policy(req.Policy), Updated: time.Now().UTC(),
	}
	if d.Max == 0 {
		d.Max = max(1, d.Min)
	}
	if d.Batch == 0 {
		d.Batch = spec.Batch.Max
	}
	d.Lanes = req.Lanes
	if d.Lanes == 0 {
		d.Lanes = spec.Resources.Lanes
	}
	switch t := spec.Track; {
	case t != nil:
		d.Track = &wire.TrackParams{HighThresh: t.HighThresh, LowThresh: t.LowThresh, MatchIoU: t.MatchIoU,
			MaxLost: t.MaxLost, ClassAgnostic: t.ClassAgnostic, IdleTimeout: wire.Duration(t.IdleTimeout)}
	case req.Track:
		d.Track = &wire.TrackParams{}
	}
	if d.Policy == "" {
		d.Policy = wire.PolicyLive
	}
	if d.Delivery, err = wire.ParseDelivery(req.Delivery); err != nil {
		return d, from, errorf(http.StatusBadRequest, "%v", err)
	}
	if d.Delivery == wire.AtLeastOnce {
		d.Delivery = "" // the default is stored as nothing, as before the option existed
	}
	switch {
	case d.Device == "" && spec.Resources.Device == "gpu":
		d.Device = wire.CUDA(0)
	case d.Device == "":
		d.Device = wire.Device(spec.Resources.Device)
	case spec.Resources.Device == "cpu" && d.Device != "cpu" && d.Device != "any":
		return d, from, errorf(http.StatusBadRequest, "device %s: function %s declares resources.device: cpu", d.Device, fn.Name)
	case spec.Resources.Device == "gpu" && d.Device == "cpu":
		return d, from, errorf(http.StatusBadRequest, "device cpu: function %s declares resources.device: gpu", fn.Name)
	}
	if req.MaxAge != "" {
		v, err := time.ParseDuration(req.MaxAge)
		if err != nil {
			return d, from, errorf(http.StatusBadRequest, "max_age %q: want a duration like 2s", req.MaxAge)
		}
		d.MaxAge = wire.Duration(v)
	} else if d.Policy == wire.PolicyLive {
		d.MaxAge = wire.Duration(DefaultMaxAge)
	}
	if req.From != "" {
		if from, err = time.Parse(time.RFC3339, req.From); err != nil {
			return d, from, errorf(http.StatusBadRequest, "from %q: want an RFC 3339 time like 2026-11-26T10:00:00Z", req.From)
		}
		if d.Policy != wire.PolicyReplay {
			return d, from, errorf(http.StatusBadRequest, "from: only a replay deployment starts at a time (add policy replay)")
		}
	}
	if err := d.Validate(); err != nil {
		return d, from, errorf(http.StatusBadRequest, "%v", err)
	}
	return d, from, nil
}

func (s *Server) undeploy(w http.ResponseWriter, r *http.Request) error {
	fn, st := r.PathValue("function"), r.PathValue("stream")
	switch role := r.URL.Query().Get("role"); role {
	case "shadow":
		// Only the shadow goes; its results topic stays (until stream rm), and its group
		// is reset when a shadow is deployed again.
		err := s.cfg.Store.DeleteDeploymentKey(r.Context(), wire.ShadowKey(fn, st))
		if errors.Is(err, controlplane.ErrNotFound) {
			return errorf(http.StatusNotFound, "function %q has no shadow on stream %q (see: diplip fn ls)", fn, st)
		}
		if err != nil {
			return err
		}
		metrics.ForgetShadow(st)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case "", "primary":
	default:
		return errorf(http.StatusBadRequest, "role %q: want primary or shadow (a replay is removed with: diplip replay rm NAME)", role)
	}
	if sh, err := s.cfg.Store.DeploymentByKey(r.Context(), wire.ShadowKey(fn, st)); err == nil {
		return errorf(http.StatusConflict, "function %q has a shadow on stream %q (%s); promote it (diplip fn promote %s) or remove it first (diplip fn undeploy %s --stream %s --shadow)",
			fn, st, sh.Digest, st, fn, st)
	}
	err := s.cfg.Store.DeleteDeployment(r.Context(), fn, st)
	if errors.Is(err, controlplane.ErrNotFound) {
		return errorf(http.StatusNotFound, "function %q is not deployed on stream %q (see: diplip fn ls)", fn, st)
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

func ptr[T any](v T) *T { return &v }

func (s *Server) resources(w http.ResponseWriter, r *http.Request) error {
	res := api.Resources{Runners: []api.Runner{}, Deployments: []api.DeploymentStatus{}}
	if s.cfg.Scaler != nil {
		for _, hb := range s.cfg.Scaler.Runners() {
			res.Runners = append(res.Runners, apiRunner(hb))
		}
		for _, st := range s.cfg.Scaler.Status() {
			res.Deployments = append(res.Deployments, apiDeploymentStatus(st))
		}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
