package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/registry"
	"github.com/diplip/diplip/runner"
)

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

func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "content type %q: want application/json", ct)
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "request body: %v", err)
	}
	return nil
}

func (s *Server) routes() {
	api := http.NewServeMux()
	api.HandleFunc("GET /v1/streams", s.handler(s.listStreams))
	api.HandleFunc("POST /v1/streams", s.handler(s.createStream))
	api.HandleFunc("GET /v1/streams/{name}", s.handler(oneOf(s.stream)))
	api.HandleFunc("DELETE /v1/streams/{name}", s.handler(s.deleteStream))
	api.HandleFunc("POST /v1/streams/{stream}/frames", s.push.Frames)
	api.HandleFunc("POST /v1/streams/{stream}/mjpeg", s.push.MJPEG)
	api.HandleFunc("GET /v1/functions", s.handler(listOf(s.store.Functions)))
	api.HandleFunc("POST /v1/functions", s.handler(s.registerFunction))
	api.HandleFunc("GET /v1/functions/{name}", s.handler(oneOf(s.function)))
	api.HandleFunc("DELETE /v1/functions/{name}", s.handler(s.deleteFunction))
	api.HandleFunc("GET /v1/deployments", s.handler(listOf(s.store.Deployments)))
	api.HandleFunc("POST /v1/deployments", s.handler(s.deploy))
	api.HandleFunc("DELETE /v1/deployments/{function}/{stream}", s.handler(s.undeploy))
	api.HandleFunc("GET /v1/resources", s.handler(s.resources))
	api.HandleFunc("GET /v1/streams/{stream}/frames/{partition}/{offset}", s.handler(s.frame))
	api.HandleFunc("GET /v1/cameras", s.handler(s.listCameras))
	api.HandleFunc("POST /v1/cameras", s.handler(s.addCamera))
	api.HandleFunc("DELETE /v1/cameras/{id}", s.handler(s.removeCamera))
	api.HandleFunc("GET /v1/streams/{stream}/results", s.handler(s.results))
	api.HandleFunc("/v1/", s.handler(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}))
	s.mux.Handle("/v1/", requireToken(s.token, api))
}

// StreamRequest is the body of POST /v1/streams.
type StreamRequest struct {
	Name           string `json:"name"`
	Partitions     int32  `json:"partitions"`
	Replication    int16  `json:"replication,omitempty"` // 0: min(3, brokers)
	RetentionMs    int64  `json:"retention_ms,omitempty"`
	RetentionBytes int64  `json:"retention_bytes,omitempty"`
}

func (s *Server) stream(ctx context.Context, name string) (controlplane.Stream, error) {
	st, err := s.store.Stream(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return st, errorf(http.StatusNotFound, "stream %q not found; create it with: diplip stream create %s", name, name)
	}
	return st, err
}

// createStream creates the stream's frames and results topics, then records the stream.
// If any step fails, what was created is removed again.
func (s *Server) createStream(w http.ResponseWriter, r *http.Request) error {
	var req StreamRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := controlplane.ValidName("stream", req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if req.Partitions < 1 || req.Partitions > 1024 {
		return errorf(http.StatusBadRequest, "partitions %d: want 1..1024", req.Partitions)
	}
	if req.RetentionMs < 0 || req.RetentionBytes < 0 {
		return errorf(http.StatusBadRequest, "retention must not be negative")
	}
	if _, err := s.store.Stream(r.Context(), req.Name); err == nil {
		return errorf(http.StatusConflict, "stream %q already exists", req.Name)
	}
	admin, err := sarama.NewClusterAdmin(s.kafka, kafkaclient.NewConfig("diplip-gateway-admin"))
	if err != nil {
		return errorf(http.StatusServiceUnavailable, "kafka unreachable at %v: %v", s.kafka, err)
	}
	defer admin.Close()
	rf := req.Replication
	if rf == 0 {
		brokers, _, err := admin.DescribeCluster()
		if err != nil {
			return errorf(http.StatusServiceUnavailable, "kafka: describing the cluster: %v", err)
		}
		rf = int16(min(3, len(brokers)))
	}
	st := controlplane.Stream{
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
	var created []string
	undo := func() {
		for _, t := range created {
			if err := admin.DeleteTopic(t); err != nil {
				s.log.Warn("could not remove topic after a failed stream create", "topic", t, "err", err)
			}
		}
	}
	for _, topic := range []string{st.Topic, st.ResultsTopic} {
		err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: req.Partitions, ReplicationFactor: rf, ConfigEntries: cfg}, false)
		if err != nil {
			undo()
			return errorf(http.StatusBadGateway, "kafka: creating topic %s: %v", topic, err)
		}
		created = append(created, topic)
	}
	if err := s.store.CreateStream(r.Context(), st); err != nil {
		undo()
		if errors.Is(err, controlplane.ErrExists) {
			return errorf(http.StatusConflict, "stream %q already exists", req.Name)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, st)
	return nil
}

func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stream(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	deps, err := s.store.Deployments(r.Context())
	if err != nil {
		return err
	}
	for _, d := range deps {
		if d.Stream == st.Name {
			return errorf(http.StatusConflict, "stream %q has deployment %s; remove it first with: diplip fn undeploy %s --stream %s",
				st.Name, d.Key(), d.Function, d.Stream)
		}
	}
	admin, err := sarama.NewClusterAdmin(s.kafka, kafkaclient.NewConfig("diplip-gateway-admin"))
	if err != nil {
		return errorf(http.StatusServiceUnavailable, "kafka unreachable at %v: %v", s.kafka, err)
	}
	defer admin.Close()
	// The record goes last: while a topic deletion fails, the stream stays listed and the
	// delete can be retried.
	for _, topic := range []string{st.Topic, st.ResultsTopic} {
		if err := admin.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return errorf(http.StatusBadGateway, "kafka: deleting topic %s: %v", topic, err)
		}
	}
	if err := s.store.DeleteStream(r.Context(), st.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// StreamStatus is a stream with what flows through it, as GET /v1/streams answers.
type StreamStatus struct {
	controlplane.Stream
	// Frames is how many frames the stream holds (end offsets minus earliest retained).
	Frames int64 `json:"frames"`
	// Lag is each deployment's consumer lag on the stream, by deployment key.
	Lag map[string]int64 `json:"lag"`
	// Error says why Frames and Lag are missing (Kafka unreachable).
	Error string `json:"error,omitempty"`
}

func (s *Server) listStreams(w http.ResponseWriter, r *http.Request) error {
	sts, err := s.store.Streams(r.Context())
	if err != nil {
		return err
	}
	deps, err := s.store.Deployments(r.Context())
	if err != nil {
		return err
	}
	out := make([]StreamStatus, len(sts))
	client, err := sarama.NewClient(s.kafka, kafkaclient.NewConfig("diplip-gateway-streams"))
	var admin sarama.ClusterAdmin
	if err == nil {
		defer client.Close()
		admin, err = sarama.NewClusterAdminFromClient(client)
	}
	for i, st := range sts {
		out[i] = StreamStatus{Stream: st, Lag: map[string]int64{}}
		if err != nil {
			out[i].Error = "kafka: " + err.Error()
			continue
		}
		if n, ferr := storedFrames(client, st.Topic); ferr == nil {
			out[i].Frames = n
		} else {
			out[i].Error = ferr.Error()
		}
		for _, d := range deps {
			if d.Stream == st.Name {
				if lag, lerr := Lag(client, admin, d.Group(), st.Topic); lerr == nil {
					out[i].Lag[d.Key()] = lag
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// storedFrames counts the records a topic holds now.
func storedFrames(client sarama.Client, topic string) (int64, error) {
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range parts {
		start, end, err := retained(client, topic, p)
		if err != nil {
			return 0, err
		}
		n += end - start
	}
	return n, nil
}

// retained returns the earliest offset a partition still holds and its end offset.
func retained(client sarama.Client, topic string, partition int32) (start, end int64, err error) {
	if end, err = client.GetOffset(topic, partition, sarama.OffsetNewest); err != nil {
		return 0, 0, err
	}
	if start, err = client.GetOffset(topic, partition, sarama.OffsetOldest); err != nil {
		return 0, 0, err
	}
	return start, end, nil
}

// FunctionRequest is the body of POST /v1/functions: a function image reference.
type FunctionRequest struct {
	Ref      string `json:"ref"`
	Insecure bool   `json:"insecure,omitempty"` // plain HTTP to a non-loopback registry
}

func (s *Server) function(ctx context.Context, name string) (controlplane.Function, error) {
	fn, err := s.store.Function(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		return fn, errorf(http.StatusNotFound, "function %q not found; deploy an image with: diplip fn deploy REF --stream S", name)
	}
	return fn, err
}

func (s *Server) registerFunction(w http.ResponseWriter, r *http.Request) error {
	var req FunctionRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	fn, err := s.resolveFunction(r.Context(), req.Ref, req.Insecure)
	if err != nil {
		return err
	}
	if err := s.store.PutFunction(r.Context(), fn); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fn)
	return nil
}

// resolveFunction reads a function image's manifest and config from its registry (no
// layer download) and returns the record pinned to its digest.
func (s *Server) resolveFunction(ctx context.Context, refStr string, insecure bool) (controlplane.Function, error) {
	var fn controlplane.Function
	ref, err := registry.ParseReference(refStr, insecure)
	if err != nil {
		return fn, errorf(http.StatusBadRequest, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := registry.Inspect(ctx, ref, s.registryOpts...)
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
	return controlplane.Function{
		Name: info.Spec.Name, Ref: ref.String(), Digest: info.Digest.String(),
		Spec: specJSON, Size: info.Size, Created: time.Now().UTC(),
	}, nil
}

func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.function(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	deps, err := s.store.Deployments(r.Context())
	if err != nil {
		return err
	}
	for _, d := range deps {
		if d.Function == fn.Name {
			return errorf(http.StatusConflict, "function %q is deployed on stream %q; remove that first with: diplip fn undeploy %s --stream %s",
				fn.Name, d.Stream, fn.Name, d.Stream)
		}
	}
	if err := s.store.DeleteFunction(r.Context(), fn.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DeployRequest is the body of POST /v1/deployments.
type DeployRequest struct {
	Ref      string `json:"ref"` // a function image; its tag is resolved to a digest now
	Insecure bool   `json:"insecure,omitempty"`
	Stream   string `json:"stream"`
	Min      int    `json:"min"`
	Max      int    `json:"max,omitempty"`    // default 1
	Batch    int    `json:"batch,omitempty"`  // default: the spec's batch.max
	Device   string `json:"device,omitempty"` // default: the spec's resources.device (gpu → cuda:0)
	Policy   string `json:"policy,omitempty"` // default live
	MaxAge   string `json:"max_age,omitempty"`
}

// deploy resolves the image, checks the stream and the request against the function's
// spec, records the function and then the deployment (a rolling update when the
// function already runs on that stream).
func (s *Server) deploy(w http.ResponseWriter, r *http.Request) error {
	var req DeployRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Ref == "" {
		return errorf(http.StatusBadRequest, "ref: required (a function image, e.g. 127.0.0.1:8080/fn/yolox-nano:v1)")
	}
	if _, err := s.stream(r.Context(), req.Stream); err != nil {
		return err
	}
	fn, err := s.resolveFunction(r.Context(), req.Ref, req.Insecure)
	if err != nil {
		return err
	}
	var spec functions.Spec
	if err := json.Unmarshal(fn.Spec, &spec); err != nil {
		return err
	}
	d := controlplane.Deployment{
		Function: fn.Name, Stream: req.Stream, Digest: fn.Digest, Min: req.Min, Max: req.Max,
		Batch: req.Batch, Device: req.Device, Policy: req.Policy, Updated: time.Now().UTC(),
	}
	if d.Max == 0 {
		d.Max = max(1, d.Min)
	}
	if d.Batch == 0 {
		d.Batch = spec.Batch.Max
	}
	if d.Policy == "" {
		d.Policy = "live"
	}
	switch {
	case d.Device == "" && spec.Resources.Device == "gpu":
		d.Device = "cuda:0"
	case d.Device == "":
		d.Device = spec.Resources.Device
	case spec.Resources.Device == "cpu" && d.Device != "cpu" && d.Device != "any":
		return errorf(http.StatusBadRequest, "device %s: function %s declares resources.device: cpu", d.Device, fn.Name)
	case spec.Resources.Device == "gpu" && d.Device == "cpu":
		return errorf(http.StatusBadRequest, "device cpu: function %s declares resources.device: gpu", fn.Name)
	}
	if req.MaxAge != "" {
		v, err := time.ParseDuration(req.MaxAge)
		if err != nil {
			return errorf(http.StatusBadRequest, "max_age %q: want a duration like 2s", req.MaxAge)
		}
		d.MaxAge = controlplane.Duration(v)
	}
	if err := d.Validate(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err := s.store.PutFunction(r.Context(), fn); err != nil {
		return err
	}
	stored, err := s.store.PutDeployment(r.Context(), d)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if stored.Generation > 1 {
		status = http.StatusOK
	}
	writeJSON(w, status, stored)
	return nil
}

func (s *Server) undeploy(w http.ResponseWriter, r *http.Request) error {
	fn, st := r.PathValue("function"), r.PathValue("stream")
	err := s.store.DeleteDeployment(r.Context(), fn, st)
	if errors.Is(err, controlplane.ErrNotFound) {
		return errorf(http.StatusNotFound, "function %q is not deployed on stream %q (see: diplip fn ls)", fn, st)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listOf answers a GET of a collection with what list returns ([] when empty).
func listOf[T any](list func(context.Context) ([]T, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := list(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, nonNil(v))
		return nil
	}
}

// oneOf answers a GET of /.../{name} with what get returns for that name.
func oneOf[T any](get func(context.Context, string) (T, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := get(r.Context(), r.PathValue("name"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	}
}

func ptr[T any](v T) *T { return &v }

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Resources is the answer of GET /v1/resources: DiPLIP's step 1, which resources are
// available and what each is running.
type Resources struct {
	Runners     []runner.Heartbeat `json:"runners"`
	Deployments []DeploymentStatus `json:"deployments"`
}

func (s *Server) resources(w http.ResponseWriter, r *http.Request) error {
	res := Resources{Runners: []runner.Heartbeat{}, Deployments: []DeploymentStatus{}}
	if s.scaler != nil {
		res.Runners = nonNil(s.scaler.Runners())
		res.Deployments = nonNil(s.scaler.Status())
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
