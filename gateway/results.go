package gateway

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// results serves GET /v1/streams/{stream}/results?last=N&follow=1: the last N results
// from the durable results topic, then, with follow, every new one live from NATS until
// the client goes away. The format is NDJSON, or server-sent events (one "data:" event
// per result) when the client accepts text/event-stream, as the dashboard does.
func (s *Server) results(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stream(r.Context(), r.PathValue("stream"))
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
		sub, err := s.nc.ChanSubscribe(wire.ResultSubject(st.Name, "*"), live)
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
	}
	history, err := lastResults(s.kafka, st.ResultsTopic, last)
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

// lastResults reads up to n of the newest results of topic, oldest first by capture time.
func lastResults(brokers []string, topic string, n int) ([][]byte, error) {
	if n == 0 {
		return nil, nil
	}
	cfg := kafkaclient.NewConfig("diplip-gateway-results")
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return nil, err
	}
	type rec struct {
		at time.Time
		b  []byte
	}
	var recs []rec
	for _, p := range parts {
		start, end, err := retained(client, topic, p)
		if err != nil {
			return nil, err
		}
		from := max(start, end-int64(n))
		if from >= end {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, from)
		if err != nil {
			return nil, err
		}
		for off := from; off < end; {
			select {
			case m := <-pc.Messages():
				off = m.Offset + 1
				var res struct {
					CaptureTime time.Time `json:"capture_time"`
				}
				_ = json.Unmarshal(m.Value, &res)
				recs = append(recs, rec{res.CaptureTime, m.Value})
			case <-time.After(10 * time.Second):
				off = end // a compacted or deleted range: give what we have
			}
		}
		pc.Close()
	}
	slices.SortStableFunc(recs, func(a, b rec) int { return cmp.Compare(a.at.UnixNano(), b.at.UnixNano()) })
	if len(recs) > n {
		recs = recs[len(recs)-n:]
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.b
	}
	return out, nil
}
