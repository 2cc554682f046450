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
// per result) when the client accepts text/event-stream, as the dashboard does.
func (s *Server) results(w http.ResponseWriter, r *http.Request) error {
	st, err := s.cfg.Rollout.Stream(r.Context(), r.PathValue("stream"))
	if err != nil {
		return err
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
		sub, err := s.cfg.NATS.ChanSubscribe(wire.ResultSubject(st.Name, "*"), live)
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
	}
	history, err := s.cfg.Kafka.LastResults(r.Context(), st.ResultsTopic, last)
	if err != nil {
		return errorf(http.StatusBadGateway, "reading %s: %v", st.ResultsTopic, err)
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
