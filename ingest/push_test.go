package ingest_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
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
	return pushServerWith(t, addrs, topic, func(c *ingest.PushConfig) { c.MaxFrameBytes = maxFrame })
}

// pushServerWith is pushServer with a config that edit changes.
func pushServerWith(t *testing.T, addrs []string, topic string, edit func(*ingest.PushConfig)) (*httptest.Server, *ingest.HTTPPush) {
	t.Helper()
	cfg := kafkaclient.NewConfig("test-ingest")
	cfg.Producer.Retry.Max, cfg.Producer.Retry.Backoff = 3, 100*time.Millisecond
	prod, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	pc := ingest.PushConfig{
		Producer: prod,
		Topic: func(_ context.Context, s string) (string, error) {
			if s != "lobby" {
				return "", fmt.Errorf("%w: %s", ingest.ErrUnknownStream, s)
			}
			return topic, nil
		},
	}
	edit(&pc)
	push, err := ingest.NewHTTPPush(pc)
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
			f, err := kafkaclient.DecodeFrame(m)
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
	if !f.CameraSeq || got[1].CameraSeq { // only a camera's own seq can drop a retried push
		t.Errorf("CameraSeq: %v for ?seq=7, %v for a gateway-numbered frame; want true, false", f.CameraSeq, got[1].CameraSeq)
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

// gatedSender holds every send while its gate is set, to keep pushes waiting for Kafka.
type gatedSender struct {
	ingest.Sender
	mu      sync.Mutex
	gate    chan struct{} // nil: sends go straight through
	entered chan struct{}
}

func (g *gatedSender) SendMessage(m *sarama.ProducerMessage) (int32, int64, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.entered <- struct{}{}
		<-gate
	}
	return g.Sender.SendMessage(m)
}

func (g *gatedSender) hold() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
	return g.gate
}

// slowUpload starts a push over a raw connection: headers, then only the first bytes of
// body, the rest held back until the returned function sends it and reads the answer.
func slowUpload(t *testing.T, srvURL, path string, body []byte) (finish func() int) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srvURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", path, len(body))
	if _, err := conn.Write(body[:100]); err != nil {
		t.Fatal(err)
	}
	return func() int {
		if _, err := conn.Write(body[100:]); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
}

// Uploads still sending their body hold no in-flight place: with more slow uploads than
// places, a fast push is stored, and the slow ones are too once they finish. Pushes
// waiting for Kafka still do hold places, and beyond MaxInFlight the answer is 503.
func TestSlowUploadsDoNotHoldInFlightPlaces(t *testing.T) {
	addrs, topic := testkit.Topic(t, 1)
	reading := make(chan struct{}, 8)
	var sender *gatedSender
	srv, _ := pushServerWith(t, addrs, topic, func(c *ingest.PushConfig) {
		c.MaxInFlight = 2
		sender = &gatedSender{Sender: c.Producer, entered: make(chan struct{}, 8)}
		c.Producer = sender
		lobby := c.Topic
		c.Topic = func(ctx context.Context, s string) (string, error) {
			if s == "slow" { // slow uploads say when their handler has started
				reading <- struct{}{}
				return topic, nil
			}
			return lobby(ctx, s)
		}
	})
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	var slow []func() int
	for i := range 3 {
		slow = append(slow, slowUpload(t, srv.URL, fmt.Sprintf("/v1/streams/slow/frames?camera=slow-%d", i), jpg))
	}
	for range 3 {
		select {
		case <-reading:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow uploads did not reach the handler")
		}
	}
	time.Sleep(200 * time.Millisecond) // let each handler get as far as it goes
	if code, v, _ := post(t, srv.URL+"/v1/streams/lobby/frames?camera=fast", "image/jpeg", jpg); code != http.StatusCreated {
		t.Fatalf("a fast push while 3 uploads trickle in (MaxInFlight 2): %d %v; want 201", code, v)
	}
	for i, finish := range slow {
		if code := finish(); code != http.StatusCreated {
			t.Fatalf("slow upload %d, once finished: %d; want 201", i, code)
		}
	}

	gate := sender.hold()
	codes := make(chan int, 2)
	for i := range 2 {
		go func() {
			resp, err := http.Post(fmt.Sprintf("%s/v1/streams/lobby/frames?camera=held-%d", srv.URL, i), "image/jpeg", bytes.NewReader(jpg))
			if err != nil {
				t.Error(err)
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
		select {
		case <-sender.entered:
		case code := <-codes:
			t.Fatalf("a push meant to wait for Kafka was answered %d", code)
		case <-time.After(20 * time.Second):
			t.Fatal("a push did not reach Kafka")
		}
	}
	code, v, h := post(t, srv.URL+"/v1/streams/lobby/frames?camera=third", "image/jpeg", jpg)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(v["error"]), "2 frames are already being stored") {
		t.Fatalf("a push while 2 wait for Kafka (MaxInFlight 2): %d %v (Retry-After %q); want 503 naming the limit", code, v, h.Get("Retry-After"))
	}
	close(gate)
	for range 2 {
		if code := <-codes; code != http.StatusCreated {
			t.Fatalf("a push held at Kafka: %d; want 201", code)
		}
	}
}

// Beyond MaxMJPEGStreams open MJPEG pushes, another is answered 503 with Retry-After and
// the limit; once one ends, a new one is taken.
func TestMJPEGStreamLimit(t *testing.T) {
	addrs, topic := testkit.Topic(t, 1)
	srv, push := pushServerWith(t, addrs, topic, func(c *ingest.PushConfig) { c.MaxMJPEGStreams = 1 })
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	part := fmt.Sprintf("--cam\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n", len(jpg), jpg)

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/streams/lobby/mjpeg?camera=open HTTP/1.1\r\nHost: gateway\r\n"+
		"Content-Type: multipart/x-mixed-replace; boundary=cam\r\nContent-Length: 100000000\r\n\r\n%s--cam\r\n", part)
	testkit.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := push.Accepted.Load(); n < 1 {
			return fmt.Errorf("the open stream's first frame is not stored yet")
		}
		return nil
	})

	body := []byte(part + "--cam--\r\n")
	url := srv.URL + "/v1/streams/lobby/mjpeg?camera=second"
	code, v, h := post(t, url, "multipart/x-mixed-replace; boundary=cam", body)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(v["error"]), "at most 1 MJPEG streams") {
		t.Fatalf("a second MJPEG stream with MaxMJPEGStreams 1: %d %v (Retry-After %q); want 503 naming the limit", code, v, h.Get("Retry-After"))
	}
	conn.Close()
	testkit.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if code, v, _ := post(t, url, "multipart/x-mixed-replace; boundary=cam", body); code != http.StatusOK {
			return fmt.Errorf("an MJPEG stream after the first ended: %d %v", code, v)
		}
		return nil
	})
}

// png16 builds a valid PNG of w×h 16-bit RGB pixels, all black, without encoding them one
// by one: its zlib stream repeats one flushed deflate block of zero rows.
func png16(t *testing.T, w, h int) []byte {
	t.Helper()
	row := 1 + w*6 // filter byte, then 3 × 16 bits a pixel
	const rowsPerBlock = 100
	if h%rowsPerBlock != 0 {
		t.Fatalf("png16: height %d is not a multiple of %d", h, rowsPerBlock)
	}
	var block bytes.Buffer
	fw, _ := flate.NewWriter(&block, flate.BestSpeed)
	fw.Write(make([]byte, row*rowsPerBlock))
	fw.Flush()
	var idat bytes.Buffer
	idat.Write([]byte{0x78, 0x01})
	for range h / rowsPerBlock {
		idat.Write(block.Bytes())
	}
	idat.Write([]byte{0x03, 0x00}) // the final, empty block
	n := uint32(row * h % 65521)   // Adler-32 of n zero bytes
	idat.Write(binary.BigEndian.AppendUint32(nil, n<<16|1))

	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		out.Write(binary.BigEndian.AppendUint32(nil, uint32(len(data))))
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		out.WriteString(typ)
		out.Write(data)
		out.Write(crc.Sum(nil))
	}
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	chunk("IHDR", append(ihdr, 16, 2, 0, 0, 0)) // 16-bit truecolor
	chunk("IDAT", idat.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

// A PNG is refused from its header when decoding it would take more than
// MaxDecodedBytes, though its pixel count is within MaxPixels; a small 16-bit PNG is
// still converted and stored.
func TestPushRefusesPNGsTooLargeToDecode(t *testing.T) {
	small := png16(t, 64, 100)
	if img, err := png.Decode(bytes.NewReader(small)); err != nil || img.Bounds().Dx() != 64 {
		t.Fatalf("png16 does not build a valid PNG: %v", err)
	}
	big := png16(t, 3000, 3000) // 9 Mpx of RGBA64: 72 MB decoded
	if cfg, err := png.DecodeConfig(bytes.NewReader(big)); err != nil || cfg.ColorModel != color.RGBA64Model || len(big) > ingest.DefaultMaxFrameBytes {
		t.Fatalf("png16 (3000x3000): %v %+v, %d bytes", err, cfg, len(big))
	}

	addrs, topic := testkit.Topic(t, 1)
	srv, push := pushServer(t, addrs, topic, 0)
	code, v, _ := post(t, srv.URL+"/v1/streams/lobby/frames?camera=c", "image/png", big)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(fmt.Sprint(v["error"]), "3000x3000 pixels of 8 bytes each (68 MiB decoded)") {
		t.Fatalf("3000x3000 16-bit PNG: %d %v; want 413 saying how much decoding it takes", code, v)
	}
	if code, v, _ := post(t, srv.URL+"/v1/streams/lobby/frames?camera=c", "image/png", small); code != http.StatusCreated {
		t.Fatalf("64x100 16-bit PNG: %d %v; want 201", code, v)
	}
	if push.Accepted.Load() != 1 {
		t.Fatalf("%d frames stored; want only the small one", push.Accepted.Load())
	}
	if f := readFrames(t, addrs, topic, 1)[0]; f.ContentType != "image/jpeg" {
		t.Fatalf("stored %s", f.ContentType)
	}
}
