package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/engines/kafkanode"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// pushServer serves the push endpoints for one stream, "lobby", on a fresh topic.
func pushServer(t *testing.T, addrs []string, topic string, maxFrame int64) (*httptest.Server, *ingest.HTTPPush) {
	t.Helper()
	cfg := kafkaclient.NewConfig("test-ingest")
	cfg.Producer.Retry.Max, cfg.Producer.Retry.Backoff = 3, 100*time.Millisecond
	prod, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	push, err := ingest.NewHTTPPush(ingest.PushConfig{
		Producer: prod, MaxFrameBytes: maxFrame,
		Topic: func(_ context.Context, s string) (string, error) {
			if s != "lobby" {
				return "", fmt.Errorf("%w: %s", ingest.ErrUnknownStream, s)
			}
			return topic, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/streams/{stream}/frames", push.Frames)
	mux.HandleFunc("POST /v1/streams/{stream}/mjpeg", push.MJPEG)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, push
}

func post(t *testing.T, url, contentType string, body []byte) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v, resp.Header
}

// readFrames reads n frames from the whole topic (all partitions), in per-partition order.
func readFrames(t *testing.T, addrs []string, topic string, n int) []wire.Frame {
	t.Helper()
	c, err := sarama.NewConsumer(addrs, kafkaclient.NewConfig("test-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *sarama.ConsumerMessage, n+10)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				msgs <- m
			}
		}()
	}
	var out []wire.Frame
	for len(out) < n {
		select {
		case m := <-msgs:
			f, err := wire.DecodeFrame(m)
			if err != nil {
				t.Fatalf("record at %d/%d: %v", m.Partition, m.Offset, err)
			}
			out = append(out, f)
		case <-time.After(30 * time.Second):
			t.Fatalf("read %d of %d frames", len(out), n)
		}
	}
	return out
}

func TestPushOneFrame(t *testing.T) {
	addrs, topic := testkit.Topic(t, 2)
	srv, _ := pushServer(t, addrs, topic, 0)
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	code, ack, _ := post(t, srv.URL+"/v1/streams/lobby/frames?camera=gate-1&seq=7&ts=1700000000123", "image/jpeg", jpg)
	if code != http.StatusCreated || ack["seq"] != float64(7) {
		t.Fatalf("push: %d %v", code, ack)
	}
	png := testkit.Media(t, "astronaut.png")
	if code, ack, _ := post(t, srv.URL+"/v1/streams/lobby/frames?camera=gate-1", "image/png", png); code != http.StatusCreated {
		t.Fatalf("png push: %d %v", code, ack)
	}

	got := readFrames(t, addrs, topic, 2)
	f := got[0]
	if !bytes.Equal(f.Data, jpg) {
		t.Fatal("the JPEG was not stored byte for byte")
	}
	if f.Camera != "gate-1" || f.Seq != 7 || f.CaptureTime.UnixMilli() != 1700000000123 || f.ContentType != "image/jpeg" ||
		time.Since(f.IngestTime) > time.Minute {
		t.Fatalf("frame metadata: %+v", f)
	}
	if got[1].Seq <= 7 {
		t.Errorf("the gateway's own seq %d should follow the camera's 7", got[1].Seq)
	}
	img, err := jpeg.Decode(bytes.NewReader(got[1].Data))
	if err != nil || img.Bounds() != image.Rect(0, 0, 512, 512) {
		t.Fatalf("the PNG was not stored as a 512x512 JPEG: %v %v", err, img)
	}
}

func TestPushBadInput(t *testing.T) {
	addrs, topic := testkit.Topic(t, 1)
	srv, push := pushServer(t, addrs, topic, 300_000)
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	big := append(bytes.Clone(jpg), make([]byte, 300_000)...)
	for _, tc := range []struct {
		name, path, ct string
		body           []byte
		code           int
		want           string
	}{
		{"unknown stream", "/v1/streams/hall/frames?camera=c", "image/jpeg", jpg, 404, "diplip stream create hall"},
		{"no camera", "/v1/streams/lobby/frames", "image/jpeg", jpg, 400, "camera: required"},
		{"bad camera", "/v1/streams/lobby/frames?camera=a.b", "image/jpeg", jpg, 400, `camera id "a.b"`},
		{"content type", "/v1/streams/lobby/frames?camera=c", "text/plain", jpg, 415, "want image/jpeg or image/png"},
		{"not an image", "/v1/streams/lobby/frames?camera=c", "image/jpeg", []byte("hello"), 400, "not a decodable image"},
		{"png labelled jpeg", "/v1/streams/lobby/frames?camera=c", "image/jpeg", testkit.Media(t, "chelsea.png"), 400, "png image but Content-Type says image/jpeg"},
		{"oversize", "/v1/streams/lobby/frames?camera=c", "image/jpeg", big, 413, "larger than 300000 bytes"},
		{"bad ts", "/v1/streams/lobby/frames?camera=c&ts=noon", "image/jpeg", jpg, 400, "Unix milliseconds"},
		{"mjpeg without boundary", "/v1/streams/lobby/mjpeg?camera=c", "", jpg, 415, "-content_type 'multipart/x-mixed-replace;boundary=ffmpeg'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, v, _ := post(t, srv.URL+tc.path, tc.ct, tc.body)
			if code != tc.code || !strings.Contains(fmt.Sprint(v["error"]), tc.want) {
				t.Fatalf("%d %v; want %d mentioning %q", code, v, tc.code, tc.want)
			}
		})
	}
	if push.Accepted.Load() != 0 {
		t.Fatalf("%d bad frames reached Kafka", push.Accepted.Load())
	}
}

// ffmpeg, a real encoder, pushes the sample video as MJPEG over HTTP, the way an IP camera
// would (and without a Content-Type, as ffmpeg does by default): every frame arrives in
// Kafka, in order, readable with the documented headers.
func TestFFmpegMJPEGPush(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg not found: install it with: go tool task setup (Debian package ffmpeg)")
	}
	video, err := assets.Media("vtest_h264.mp4")
	if err != nil {
		t.Fatal(err)
	}
	addrs, topic := testkit.Topic(t, 3)
	srv, _ := pushServer(t, addrs, topic, 0)
	const n = 60
	cmd := exec.Command(ffmpeg, "-loglevel", "error", "-i", video, "-frames:v", fmt.Sprint(n), "-f", "mpjpeg", "-q:v", "5",
		srv.URL+"/v1/streams/lobby/mjpeg?camera=ffmpeg-cam")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	frames := readFrames(t, addrs, topic, n)
	for i, f := range frames {
		if f.Camera != "ffmpeg-cam" {
			t.Fatalf("frame %d camera %q", i, f.Camera)
		}
		if i > 0 && f.Seq != frames[i-1].Seq+1 {
			t.Fatalf("frame %d seq %d after %d: out of order or lost", i, f.Seq, frames[i-1].Seq)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(f.Data))
		if err != nil || cfg.Width != 768 || cfg.Height != 576 {
			t.Fatalf("frame %d is not a 768x576 JPEG: %v", i, err)
		}
	}
}

// An MJPEG stream with a broken part keeps going; a malformed multipart stream ends
// with an error and keeps what came before it.
func TestMJPEGSkipsBadPartsAndStopsOnMalformedStream(t *testing.T) {
	addrs, topic := testkit.Topic(t, 1)
	srv, _ := pushServer(t, addrs, topic, 0)
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	part := func(b []byte) string {
		return fmt.Sprintf("--cam\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n", len(b), b)
	}
	body := part(jpg) + part([]byte("garbage")) + part(jpg) + "--cam--\r\n"
	code, v, _ := post(t, srv.URL+"/v1/streams/lobby/mjpeg?camera=c1", "multipart/x-mixed-replace; boundary=cam", []byte(body))
	if code != 200 || v["frames"] != float64(2) || v["skipped"] != float64(1) {
		t.Fatalf("%d %v; want 2 frames and 1 skipped", code, v)
	}
	body = part(jpg) + "--cam\r\nthis is not a header line at all\r\n"
	code, v, _ = post(t, srv.URL+"/v1/streams/lobby/mjpeg?camera=c2", "multipart/x-mixed-replace; boundary=cam", []byte(body))
	if code != 400 || v["frames"] != float64(1) || !strings.Contains(fmt.Sprint(v["error"]), "malformed multipart") {
		t.Fatalf("%d %v; want 400 after 1 frame", code, v)
	}
	if got := readFrames(t, addrs, topic, 3); got[2].Camera != "c2" {
		t.Fatalf("frames: %+v", got)
	}
}

// With Kafka down, a push is answered 503 with Retry-After, never 2xx; once Kafka is
// back, every frame that was answered 2xx is in the topic.
func TestPushWhileKafkaIsDown(t *testing.T) {
	cluster, err := kafkanode.Start(context.Background(), kafkanode.Config{Dir: t.TempDir(), FastStart: true, HeapMB: 256, StopTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop()
	addrs := cluster.Addrs()
	admin, err := sarama.NewClusterAdmin(addrs, kafkaclient.NewConfig("test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("frames", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	srv, _ := pushServer(t, addrs, "frames", 0)
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	url := srv.URL + "/v1/streams/lobby/frames?camera=c"

	var acked []uint64
	pushOne := func() (int, http.Header) {
		code, v, h := post(t, url, "image/jpeg", jpg)
		if code == http.StatusCreated {
			acked = append(acked, uint64(v["seq"].(float64)))
		}
		return code, h
	}
	testkit.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		if code, _ := pushOne(); code != http.StatusCreated {
			return fmt.Errorf("push before the outage: %d", code)
		}
		return nil
	})
	if err := cluster.StopNode(0); err != nil {
		t.Fatal(err)
	}
	code, h := pushOne()
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("push with Kafka down: %d (Retry-After %q), want 503 with Retry-After", code, h.Get("Retry-After"))
	}
	if err := cluster.RestartNode(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		if code, _ := pushOne(); code != http.StatusCreated {
			return fmt.Errorf("push after the outage: %d", code)
		}
		return nil
	})
	frames := readFrames(t, addrs, "frames", len(acked))
	stored := map[uint64]bool{}
	for _, f := range frames {
		stored[f.Seq] = true
	}
	for _, s := range acked {
		if !stored[s] {
			t.Fatalf("frame %d was answered 201 but is not in Kafka", s)
		}
	}
}

// PushMJPEGLoop, the bench's MJPEG camera, streams frames that the endpoint stores as
// they come, and ends the stream cleanly.
func TestPushMJPEGLoop(t *testing.T) {
	addrs, topic := testkit.Topic(t, 1)
	srv, push := pushServer(t, addrs, topic, 0)
	// Sub-slices of one buffer, as the bench passes them.
	frames := ingest.SplitJPEGs(testkit.Media(t, "vtest_10s.mjpeg"))[:5]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		status, err := ingest.PushMJPEGLoop(ctx, srv.URL, "", "lobby", "mj", frames, 20)
		if err != nil {
			t.Error(err)
		}
		done <- status
	}()
	testkit.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if n := push.Accepted.Load(); n < 10 {
			return fmt.Errorf("%d frames stored while the stream is open", n)
		}
		if n := push.Rejected.Load(); n > 0 {
			t.Fatalf("%d frames were refused: the camera corrupted them", n)
		}
		return nil
	})
	cancel()
	if status := <-done; status != http.StatusOK {
		t.Fatalf("the stream ended with %d, want 200", status)
	}
}
