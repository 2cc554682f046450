package sinks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/testkit"
)

// BenchmarkWebhookSink: events per second one webhook sink delivers to a local receiver
// (one crossing per result, 4 cameras on 2 partitions), and the latency it adds, from the
// result's capture time (set when it is produced) to the receiver.
//
//	go run ./internal/testkit/testenv -- go test -run '^$' -bench WebhookSink -benchtime 2000x ./sinks/
func BenchmarkWebhookSink(b *testing.B) {
	e := newEnvWith(b, true)
	var mu sync.Mutex
	var lat []time.Duration
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev api.SinkEvent
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		lat = append(lat, time.Since(ev.CaptureTime))
		mu.Unlock()
	}))
	defer rcv.Close()
	if _, err := e.mgr.Add(context.Background(), api.SinkRequest{Name: "bench", Stream: e.stream, Webhook: rcv.URL, Events: []string{"crossed"}}); err != nil {
		b.Fatal(err)
	}
	testkit.CheckFor(b, 30*time.Second, 50*time.Millisecond, func() error {
		if st := e.status("bench"); st.State != api.SinkRunning {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	cams := []string{"cam1", "cam2", "cam3", "cam4"}
	msgs := make([]*sarama.ProducerMessage, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		r := e.result(cams[i%len(cams)], uint64(i/len(cams)+1))
		r.CaptureTime = time.Now()
		v, _ := json.Marshal(r)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: e.topic, Key: sarama.StringEncoder(r.Camera), Value: sarama.ByteEncoder(v)})
		if len(msgs) == 100 || i == b.N-1 {
			if err := e.prod.SendMessages(msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	testkit.CheckFor(b, 5*time.Minute, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(lat) < b.N {
			return fmt.Errorf("%d of %d delivered", len(lat), b.N)
		}
		return nil
	})
	elapsed := time.Since(start)
	b.StopTimer()
	mu.Lock()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	mu.Unlock()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}
