package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// results serves GET /v1/streams/{stream}/results?last=N&follow=1: the last N results
// from the durable results topic, then, with follow, every new one live from NATS until
// the client goes away. The format is NDJSON, or server-sent events (one "data:" event
// per result) when the client accepts text/event-stream, as the dashboard does. With
// after=FIRST[&function=FUNCTION] they are a second stage's enriched results: its own
// results topic, then its own live subject (function may be left out when one second stage
// runs after FIRST).
func (s *Server) results(w http.ResponseWriter, r *http.Request) error {
	st, err := s.cfg.Rollout.Stream(r.Context(), r.PathValue("stream"))
	if err != nil {
		return err
	}
	topic, subject := st.ResultsTopic, wire.ResultSubject(st.Name, "*")
	if first, fn := r.URL.Query().Get("after"), r.URL.Query().Get("function"); first != "" {
		d, err := s.secondStage(r, st.Name, first, fn)
		if err != nil {
			return err
		}
		topic, subject = d.ResultsTopic(st), d.ResultSubject("*")
	} else if fn != "" {
		return errorf(http.StatusBadRequest, "function %s: name its first stage with after=FIRST (a stream's own results are its primaries')", fn)
	}
	last := 10
	if v := r.URL.Query().Get("last"); v != "" {
		if last, err = strconv.Atoi(v); err != nil || last < 0 || last > 10000 {
			return errorf(http.StatusBadRequest, "last %q: want 0..10000", v)
		}
	}
	follow := r.URL.Query().Get("follow") == "1" || r.URL.Query().Get("follow") == "true"

	var live chan *nats.Msg
	if follow { // subscribe first, so nothing falls between history and live
		live = make(chan *nats.Msg, 256)
		sub, err := s.cfg.NATS.ChanSubscribe(subject, live)
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
	}
	history, err := s.cfg.Kafka.LastResults(r.Context(), topic, last)
	if err != nil {
		return errorf(http.StatusBadGateway, "reading %s: %v", topic, err)
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	write := func(b []byte) error {
		if sse {
			_, err := fmt.Fprintf(w, "data: %s\n\n", b)
			return err
		}
		_, err := w.Write(append(b, '\n'))
		return err
	}
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	for _, b := range history {
		if write(b) != nil {
			return nil
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	if !follow {
		return nil
	}
	for {
		select {
		case <-r.Context().Done():
			return nil
		case m := <-live:
			if write(m.Data) != nil {
				return nil
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// secondStage is the second stage fn (any, when empty and only one does) that runs after
// first on stream: 404 naming the second stages there when there is none.
func (s *Server) secondStage(r *http.Request, stream, first, fn string) (wire.Deployment, error) {
	deps, err := s.cfg.Store.Deployments(r.Context())
	if err != nil {
		return wire.Deployment{}, err
	}
	var match []wire.Deployment
	there := []string{}
	for _, d := range deps {
		if d.Stream == stream && d.Role == wire.RoleAfter {
			there = append(there, d.AfterName()+" → "+d.Function)
			if d.AfterName() == first && (fn == "" || d.Function == fn) {
				match = append(match, d)
			}
		}
	}
	switch {
	case len(match) == 1:
		return match[0], nil
	case len(match) > 1:
		return wire.Deployment{}, errorf(http.StatusBadRequest, "%d second stages run after %s on stream %s (%s): name one with function= (diplip results: --fn)", len(match), first, stream, strings.Join(there, ", "))
	}
	what := strings.Join(there, ", ")
	if what == "" {
		what = "none; deploy one with: diplip fn deploy REF --stream " + stream + " --after " + first
	}
	who := "no second stage runs"
	if fn != "" {
		who = fn + " does not run"
	}
	return wire.Deployment{}, errorf(http.StatusNotFound, "%s after %s on stream %s (second stages there: %s)", who, first, stream, what)
}

// frame serves GET /v1/streams/{stream}/frames/{partition}/{offset}[?box=x1,y1,x2,y2]: the
// JPEG of one frame record, which the live view draws a result's boxes on, or a crop of it.
func (s *Server) frame(w http.ResponseWriter, r *http.Request) error {
	st, err := s.cfg.Rollout.Stream(r.Context(), r.PathValue("stream"))
	if err != nil {
		return err
	}
	part, err1 := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	off, err2 := strconv.ParseInt(r.PathValue("offset"), 10, 64)
	if err1 != nil || err2 != nil || part < 0 || off < 0 {
		return errorf(http.StatusBadRequest, "want /v1/streams/STREAM/frames/PARTITION/OFFSET with non-negative integers")
	}
	m, err := s.cfg.Kafka.ReadRecord(r.Context(), st.Topic, int32(part), off)
	if errors.Is(err, kafkaclient.ErrNoRecord) {
		return errorf(http.StatusNotFound, "stream %s: %v", st.Name, err)
	}
	if err != nil {
		return errorf(http.StatusBadGateway, "kafka: %v", err)
	}
	if box := r.URL.Query().Get("box"); box != "" { // an object's snapshot (a sink's event names it)
		if m.Value, err = ingest.CropJPEG(m.Value, box); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "private, max-age=3600") // a record never changes
	w.Write(m.Value)
	return nil
}
