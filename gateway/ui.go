package gateway

import (
	_ "embed"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/kafkaclient"
)

// indexHTML is the dashboard: one page, no build step, talking to /v1 like the CLI does.
//
//go:embed ui/index.html
var indexHTML []byte

func (s *Server) ui(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	w.Write(indexHTML)
}

// frame serves GET /v1/streams/{stream}/frames/{partition}/{offset}: the JPEG of one frame
// record, which the live view draws a result's boxes on.
func (s *Server) frame(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stream(r.Context(), r.PathValue("stream"))
	if err != nil {
		return err
	}
	part, err1 := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	off, err2 := strconv.ParseInt(r.PathValue("offset"), 10, 64)
	if err1 != nil || err2 != nil || part < 0 || off < 0 {
		return errorf(http.StatusBadRequest, "want /v1/streams/STREAM/frames/PARTITION/OFFSET with non-negative integers")
	}
	consumer, err := sarama.NewConsumer(s.kafka, kafkaclient.NewConfig("diplip-gateway-frame"))
	if err != nil {
		return errorf(http.StatusServiceUnavailable, "kafka: %v", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(st.Topic, int32(part), off)
	if errors.Is(err, sarama.ErrOffsetOutOfRange) || errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return errorf(http.StatusNotFound, "no frame at partition %d offset %d of stream %s (expired or never written)", part, off, st.Name)
	}
	if err != nil {
		return errorf(http.StatusBadGateway, "kafka: %v", err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if m.Offset != off {
			return errorf(http.StatusNotFound, "no frame at offset %d of partition %d (next is %d)", off, part, m.Offset)
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("Cache-Control", "private, max-age=3600") // a record never changes
		w.Write(m.Value)
		return nil
	case <-time.After(5 * time.Second):
		return errorf(http.StatusNotFound, "no frame at partition %d offset %d of stream %s", part, off, st.Name)
	case <-r.Context().Done():
		return nil
	}
}
