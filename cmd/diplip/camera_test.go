package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

func camera(t *testing.T, gw, id string) api.CameraStatus {
	t.Helper()
	var cams []api.CameraStatus
	if err := json.Unmarshal([]byte(run(t, 0, "camera", "ls", "-o", "json", gw)), &cams); err != nil {
		t.Fatal(err)
	}
	for _, c := range cams {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("camera %s not listed: %+v", id, cams)
	return api.CameraStatus{}
}

// rtspServer starts a real RTSP camera (GStreamer's RTSP server) serving the sample video.
func rtspServer(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	video, err := assets.Media("vtest_h264.mp4")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", "../../internal/testkit/testdata/rtsp_server.py", strconv.Itoa(port), video)
	out := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if cmd.ProcessState != nil {
			t.Fatalf("RTSP server exited:\n%s\n(install it with: go tool task setup; Debian packages gir1.2-gst-rtsp-server-1.0 python3-gi)", out.String())
		}
		if !strings.Contains(out.String(), "rtsp_server: rtsp://") {
			return fmt.Errorf("RTSP server not ready: %s", out.String())
		}
		return nil
	})
	return cmd
}

// A real RTSP camera pulled into a stream: frames flow; the server goes away for a few
// seconds and the camera's health shows the outage; it comes back and the camera
// reconnects by itself. The camera survives a gateway restart.
func TestRTSPCameraReconnectsAndResumes(t *testing.T) {
	state, addr := t.TempDir(), freeAddr(t)
	gw := "--gateway=http://" + addr
	up := startUp(t, state, addr)
	stream := testkit.Name("cam")
	run(t, 0, "stream", "create", stream, gw)

	port := testkit.FreePort(t)
	srv := rtspServer(t, port)
	run(t, 0, "camera", "add", stream, "--id", "door", "--url", fmt.Sprintf("rtsp://127.0.0.1:%d/cam", port), "--fps", "5", gw)
	testkit.CheckFor(t, 60*time.Second, 250*time.Millisecond, func() error {
		if c := camera(t, gw, "door"); !c.Health.Connected || c.Health.Frames < 5 {
			return fmt.Errorf("camera: %+v", c.Health)
		}
		return nil
	})

	srv.Process.Signal(syscall.SIGKILL)
	srv.Wait()
	testkit.CheckFor(t, 60*time.Second, 250*time.Millisecond, func() error {
		if c := camera(t, gw, "door"); c.Health.Connected || c.Health.LastError == "" {
			return fmt.Errorf("the outage does not show: %+v", c.Health)
		}
		return nil
	})
	before := camera(t, gw, "door").Health.Frames
	rtspServer(t, port)
	testkit.CheckFor(t, 90*time.Second, 250*time.Millisecond, func() error {
		c := camera(t, gw, "door")
		if !c.Health.Connected || c.Health.Frames < before+5 || c.Health.Reconnects < 1 {
			return fmt.Errorf("not back: %+v (frames before the outage %d)", c.Health, before)
		}
		return nil
	})

	up.stop(t)
	startUp(t, state, addr)
	testkit.CheckFor(t, 60*time.Second, 250*time.Millisecond, func() error {
		if c := camera(t, gw, "door"); !c.Health.Connected || c.Health.Frames < 3 {
			return fmt.Errorf("camera not resumed after the gateway restart: %+v", c.Health)
		}
		return nil
	})
	run(t, 0, "camera", "rm", "door", gw)
	if msg := run(t, 3, "camera", "rm", "door", gw); !strings.Contains(msg, "not found") {
		t.Fatalf("second rm: %q", msg)
	}
}

// A video file as a camera plays in real time, in order, and the frames are JPEGs of the
// video's size.
func TestFileCamera(t *testing.T) {
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	video, err := assets.Media("vtest_h264.mp4")
	if err != nil {
		t.Fatal(err)
	}
	startUp(t, t.TempDir(), addr, "--camera-files", filepath.Dir(video))
	stream := testkit.Name("file")
	run(t, 0, "stream", "create", stream, gw)
	run(t, 0, "camera", "add", stream, "--id", "sample", "--url", video, gw)
	testkit.CheckFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		if c := camera(t, gw, "sample"); c.Health.Frames < 20 {
			return fmt.Errorf("camera: %+v", c.Health)
		}
		return nil
	})
	if c := camera(t, gw, "sample"); c.Health.FPS > 12 {
		t.Fatalf("the 10 fps file is read at %.1f fps: it should play in real time", c.Health.FPS)
	}
	// A plain sarama consumer reads the frames, in order, with the documented headers.
	cons, err := sarama.NewConsumer(testkit.Kafka(t), kafkaclient.NewConfig("test-camera-reader"))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition("diplip.frames."+stream, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var last wire.Frame
	for i := range 20 {
		m := <-pc.Messages()
		f, err := kafkaclient.DecodeFrame(m)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(f.Data))
		if err != nil || cfg.Width != 768 || cfg.Height != 576 || f.Camera != "sample" || f.ContentType != "image/jpeg" {
			t.Fatalf("record %d: %+v (%v)", i, cfg, err)
		}
		if i > 0 && (f.Seq != last.Seq+1 || f.CaptureTime.Before(last.CaptureTime)) {
			t.Fatalf("record %d: seq %d after %d: out of order", i, f.Seq, last.Seq)
		}
		last = f
	}
	var sts []api.StreamStatus
	if err := json.Unmarshal([]byte(run(t, 0, "stream", "ls", "-o", "json", gw)), &sts); err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Name == stream && st.Frames < 20 {
			t.Fatalf("stream ls: %d frames in %s, the camera stored more", st.Frames, stream)
		}
	}
	msg := run(t, 2, "camera", "add", stream, "--id", "bad id", "--url", video, gw)
	if !strings.Contains(msg, `camera id "bad id"`) {
		t.Fatalf("bad id: %q", msg)
	}
	if msg := run(t, 3, "camera", "add", "nostream", "--id", "x", "--url", video, gw); !strings.Contains(msg, "diplip stream create nostream") {
		t.Fatalf("missing stream: %q", msg)
	}
	// Camera sources are an allow-list: nothing outside --camera-files, no FFmpeg protocol
	// tricks, no link-local (cloud metadata) hosts.
	for _, bad := range []struct{ url, want string }{
		{"/etc/passwd", "--camera-files"},
		{"file:///etc/hostname", "--camera-files"},
		{"concat:" + video + "|" + video, "concat"},
		{"http://169.254.169.254/latest/meta-data/", "--camera-link-local"},
		{"gopher://127.0.0.1:1/", "gopher"},
	} {
		if msg := run(t, 2, "camera", "add", stream, "--id", "bad", "--url", bad.url, gw); !strings.Contains(msg, bad.want) {
			t.Errorf("camera add --url %s: %q, want it refused mentioning %q", bad.url, msg, bad.want)
		}
	}
}
