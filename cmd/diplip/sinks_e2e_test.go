package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/sinks"
)

// hookReceiver is a webhook target: it answers 204 and keeps every request.
type hookReceiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []hookRequest
}

type hookRequest struct {
	body   []byte
	header http.Header
	ev     api.SinkEvent
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev api.SinkEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body: %v: %s", err, body)
		}
		h.mu.Lock()
		h.got = append(h.got, hookRequest{body: body, header: r.Header.Clone(), ev: ev})
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

func distinctIDs(ids []string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// Issue #25's first check, through the binary on the sample video: YOLOX-Nano with
// tracking, a counting line across the walkway, a signed webhook sink to a receiver in
// the test and an MQTT sink to a real Mosquitto; a pulled camera reads the 10 s sample
// video once. Every crossing the results carry reaches the webhook (each with the
// documented fields, the documented headers and a signature that verifies) and the MQTT
// events topic; the snapshot and crop URLs serve JPEGs of the frame; a subscriber that
// comes after the end gets the retained count, equal to the counts of the camera's last
// result as `diplip results` shows them.
func TestSinksOnTheSampleVideo(t *testing.T) {
	started := time.Now()
	const (
		secretEnv = "DIPLIP_E2E_HOOK_SECRET"
		secret    = "e2e-hook-secret-0123456789abcdef"
		camID     = "walk"
		zone      = "walkway"
		prefix    = "site1"
	)
	// The secret is in the environment of diplip up (which runs the sinks) only through
	// this variable; the CLI never sends it.
	t.Setenv(secretEnv, secret)
	video, err := assets.Media("vtest_10s.mjpeg")
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr, "--camera-files", filepath.Dir(video))
	broker := testkit.StartMosquitto(t)
	hook := newHookReceiver(t)

	stream := testkit.Name("sinks")
	run(t, 0, "stream", "create", stream, "--partitions", "1", gw)
	ref, store := addr+"/fn/yolox-nano:v1", t.TempDir()
	run(t, 0, "fn", "build", "../../functions/examples/yolox-nano", "-t", ref, "--push", "--store", store)
	// min 0: the camera's first frame wakes the runner, by when the zone below exists.
	run(t, 0, "fn", "deploy", ref, "--stream", stream, "--min", "0", "--max", "1", "--policy", "replay", "--track", gw)

	run(t, 0, "sink", "add", "hook", "--stream", stream, "--webhook", hook.URL+"/diplip", "--secret-env", secretEnv,
		"--header", "X-Team=ops-7f3a", "--events", "crossed", gw)
	run(t, 0, "sink", "add", "home", "--stream", stream, "--mqtt", broker.URL(), "--topic-prefix", prefix, "--events", "crossed", gw)
	if ls := run(t, 0, "sink", "ls", "-o", "json", gw); strings.Contains(ls, secret) || strings.Contains(ls, "ops-7f3a") {
		t.Errorf("sink ls echoes a secret or a header value: %s", ls)
	}
	eventsTopic := sinks.EventsTopic(prefix, stream, camID)
	live := testkit.SubscribeMQTT(t, broker.Addr(), eventsTopic)

	// The sample video read once, every frame (the raw MJPEG has no timestamps: OpenCV
	// plays it at 25 fps, so its 100 frames take 4 s).
	run(t, 0, "camera", "add", stream, "--id", camID, "--url", video, gw)
	run(t, 0, "zone", "add", stream, "--camera", camID, "--name", zone, "--line", "0,300,767,300", gw)
	var cam api.CameraStatus
	testkit.CheckFor(t, 60*time.Second, 250*time.Millisecond, func() error {
		if cam = camera(t, gw, camID); !cam.Health.Ended {
			return fmt.Errorf("camera not at the end of the file yet: %+v", cam.Health)
		}
		return nil
	})
	if cam.Health.Frames < 90 {
		t.Fatalf("the camera stored %d frames of the 100-frame video", cam.Health.Frames)
	}
	// policy replay: every stored frame gets a result.
	var rs []wire.Result
	testkit.CheckFor(t, 90*time.Second, time.Second, func() error {
		rs = rs[:0]
		dec := json.NewDecoder(strings.NewReader(run(t, 0, "results", stream, "--last", "1000", "-o", "json", gw)))
		for {
			var r wire.Result
			if dec.Decode(&r) != nil {
				break
			}
			if r.Camera == camID {
				rs = append(rs, r)
			}
		}
		if int64(len(rs)) < cam.Health.Frames {
			return fmt.Errorf("%d of %d frames have results", len(rs), cam.Health.Frames)
		}
		return nil
	})
	slices.SortFunc(rs, func(a, b wire.Result) int { return int(a.Seq) - int(b.Seq) })
	resultOf := map[string]wire.Result{}
	var want []string // the crossings the results carry, in frame order
	for _, r := range rs {
		if r.Status != wire.StatusOK {
			t.Fatalf("frame %d: %s: %s", r.Seq, r.Status, r.Error)
		}
		for _, e := range r.Events {
			if e.Kind == wire.EventCrossed {
				id := fmt.Sprintf("%s/crossed/%s/%d/%s", r.ID, e.Zone, e.TrackID, e.Direction)
				want = append(want, id)
				resultOf[id] = r
			}
		}
	}
	last := rs[len(rs)-1]
	t.Logf("%d frames, %d crossings; the last result's counts: %+v", len(rs), len(want), last.Counts)
	if len(want) == 0 {
		t.Fatalf("no crossing of the walkway line in the %d frames of the sample video", len(rs))
	}
	if len(last.Counts) == 0 {
		t.Fatalf("the last result (frame %d) has no counts", last.Seq)
	}

	// Both sinks deliver every crossing (at least once; counted by id) and catch up.
	testkit.CheckFor(t, 60*time.Second, 250*time.Millisecond, func() error {
		var hookIDs, mqttIDs []string
		for _, r := range hook.requests() {
			hookIDs = append(hookIDs, r.ev.ID)
		}
		for _, m := range live.Messages() {
			var ev api.SinkEvent
			if err := json.Unmarshal(m.Payload, &ev); err != nil {
				return fmt.Errorf("MQTT message on %s: %v: %s", m.Topic, err, m.Payload)
			}
			mqttIDs = append(mqttIDs, ev.ID)
		}
		if h, m := distinctIDs(hookIDs), distinctIDs(mqttIDs); len(h) < len(want) || len(m) < len(want) {
			return fmt.Errorf("%d crossings: the webhook got %d, MQTT %d", len(want), len(h), len(m))
		}
		var ss []api.Sink
		if err := json.Unmarshal([]byte(run(t, 0, "sink", "ls", "-o", "json", gw)), &ss); err != nil {
			return err
		}
		for _, s := range ss {
			if s.Status.Lag != 0 || s.Status.DeadLettered != 0 || s.Status.Delivered < int64(len(want)) {
				return fmt.Errorf("sink %s: %+v", s.Name, s.Status)
			}
		}
		return nil
	})

	// The webhook: the documented fields, headers and signature, in frame order.
	documented := []string{"id", "kind", "sink", "stream", "camera", "seq", "function", "result_id", "capture_time",
		"zone", "direction", "track_id", "class_id", "label", "score", "box", "counts", "snapshot_url", "crop_url"}
	got := hook.requests()
	seen, dups, lastSeq := map[string]bool{}, 0, uint64(0)
	for _, h := range got {
		ev := h.ev
		if seen[ev.ID] {
			dups++
			continue
		}
		seen[ev.ID] = true
		r, ok := resultOf[ev.ID]
		if !ok {
			t.Errorf("webhook event %s is no crossing of the results", ev.ID)
			continue
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(h.body, &fields); err != nil {
			t.Fatal(err)
		}
		for _, f := range documented {
			if _, ok := fields[f]; !ok {
				t.Errorf("event %s lacks %q: %s", ev.ID, f, h.body)
			}
		}
		snap := fmt.Sprintf("http://%s/v1/streams/%s/frames/%d/%d", addr, stream, r.Source.Partition, r.Source.Offset)
		var counts []api.ZoneCount
		for _, c := range r.Counts {
			if c.Zone == ev.Zone && c.ClassID == ev.ClassID {
				counts = append(counts, api.ZoneCount(c))
			}
		}
		switch {
		case ev.Kind != "crossed" || ev.Sink != "hook" || ev.Stream != stream || ev.Camera != camID || ev.Seq != r.Seq:
			t.Errorf("event %s: %+v", ev.ID, ev)
		case ev.Function != "yolox-nano" || ev.ResultID != r.ID || !ev.CaptureTime.Equal(r.CaptureTime):
			t.Errorf("event %s: function %q, result %q, capture %v; the result: %s %v", ev.ID, ev.Function, ev.ResultID, ev.CaptureTime, r.ID, r.CaptureTime)
		case ev.Zone != zone || (ev.Direction != "in" && ev.Direction != "out") || ev.TrackID == 0 || ev.Label == "":
			t.Errorf("event %s: zone %q, direction %q, track %d, label %q", ev.ID, ev.Zone, ev.Direction, ev.TrackID, ev.Label)
		case ev.Score <= 0 || ev.Box == nil || !slices.Equal(ev.Counts, counts):
			t.Errorf("event %s: score %v, box %v, counts %+v (the result's %+v)", ev.ID, ev.Score, ev.Box, ev.Counts, counts)
		case ev.Snapshot != snap || ev.Crop != fmt.Sprintf("%s?box=%.0f,%.0f,%.0f,%.0f", snap, ev.Box.X1, ev.Box.Y1, ev.Box.X2, ev.Box.Y2):
			t.Errorf("event %s: snapshot %q, crop %q; want %q", ev.ID, ev.Snapshot, ev.Crop, snap)
		}
		if ev.Seq < lastSeq {
			t.Errorf("event of frame %d arrived after frame %d's", ev.Seq, lastSeq)
		}
		lastSeq = ev.Seq
		hd := h.header
		if hd.Get("Idempotency-Key") != ev.ID || hd.Get("X-Diplip-Event-Id") != ev.ID || hd.Get("X-Diplip-Sink") != "hook" ||
			hd.Get("X-Team") != "ops-7f3a" || hd.Get("X-Diplip-Attempt") == "" || !strings.HasPrefix(hd.Get("Content-Type"), "application/json") {
			t.Errorf("event %s: headers %v", ev.ID, hd)
		}
	}
	for _, h := range got {
		ts, sig := h.header.Get("X-Diplip-Timestamp"), h.header.Get("X-Diplip-Signature")
		if !sinks.Verify([]byte(secret), ts, h.body, sig) {
			t.Errorf("event %s: signature %q (timestamp %s) does not verify", h.ev.ID, sig, ts)
		}
		if sinks.Verify([]byte("not-the-secret"), ts, h.body, sig) {
			t.Errorf("event %s: a wrong secret verifies", h.ev.ID)
		}
	}
	if !sameIDs(seen, distinctIDs(want)) {
		t.Errorf("webhook events %v, the results' crossings %v", sortedIDs(seen), want)
	}
	t.Logf("webhook: %d requests, %d distinct crossings, %d duplicates", len(got), len(seen), dups)

	// The snapshot is the frame's JPEG; the crop is the object's box of it.
	ev := got[0].ev
	for _, u := range []string{ev.Snapshot, ev.Crop} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || err != nil {
			t.Fatalf("GET %s: %d %s, %d bytes (%v)", u, resp.StatusCode, resp.Header.Get("Content-Type"), len(b), err)
		}
		w, h := 768, 576
		if u == ev.Crop {
			// source-image pixels, clamped to the frame
			w = min(768, int(ev.Box.X2+0.5)) - max(0, int(ev.Box.X1+0.5))
			h = min(576, int(ev.Box.Y2+0.5)) - max(0, int(ev.Box.Y1+0.5))
		}
		if absInt(cfg.Width-w) > 2 || absInt(cfg.Height-h) > 2 {
			t.Errorf("GET %s: a %dx%d JPEG, want %dx%d", u, cfg.Width, cfg.Height, w, h)
		}
	}

	// MQTT: the same crossings on PREFIX/STREAM/CAMERA/events, in frame order.
	mseen, mdups := map[string]bool{}, 0
	lastSeq = 0
	for _, m := range live.Messages() {
		var ev api.SinkEvent
		json.Unmarshal(m.Payload, &ev)
		if m.Topic != eventsTopic || ev.Kind != "crossed" || ev.Sink != "home" || ev.Zone != zone || ev.Snapshot == "" {
			t.Errorf("MQTT message on %s: %s", m.Topic, m.Payload)
		}
		if mseen[ev.ID] {
			mdups++
			continue
		}
		mseen[ev.ID] = true
		if ev.Seq < lastSeq {
			t.Errorf("MQTT: event of frame %d arrived after frame %d's", ev.Seq, lastSeq)
		}
		lastSeq = ev.Seq
	}
	if !sameIDs(mseen, distinctIDs(want)) {
		t.Errorf("MQTT events %v, the results' crossings %v", sortedIDs(mseen), want)
	}
	t.Logf("MQTT: %d distinct crossings, %d duplicates", len(mseen), mdups)

	// A subscriber that comes after the end gets the retained counts at once, equal to the
	// last result's running counts.
	late := testkit.SubscribeMQTT(t, broker.Addr(), prefix+"/"+stream+"/"+camID+"/+/+/count")
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if n := len(late.Messages()); n < len(last.Counts) {
			return fmt.Errorf("%d retained counts, want %d (%+v)", n, len(last.Counts), last.Counts)
		}
		return nil
	})
	for _, c := range last.Counts {
		class := c.Label
		if class == "" {
			class = fmt.Sprint(c.ClassID)
		}
		topic := sinks.CountTopic(prefix, stream, camID, c.Zone, class)
		i := slices.IndexFunc(late.Messages(), func(m testkit.MQTTMessage) bool { return m.Topic == topic })
		if i < 0 {
			t.Errorf("no retained count at %s", topic)
			continue
		}
		m := late.Messages()[i]
		var sc api.SinkCount
		if err := json.Unmarshal(m.Payload, &sc); err != nil || !m.Retained {
			t.Errorf("%s: retained %v, %s (%v)", topic, m.Retained, m.Payload, err)
		}
		if sc.In != c.In || sc.Out != c.Out || sc.Entered != c.Entered || sc.Left != c.Left || sc.Inside != c.Inside ||
			sc.Zone != zone || sc.Camera != camID || sc.Stream != stream {
			t.Errorf("retained count at %s: %s; the last result (frame %d) counts %+v", topic, m.Payload, last.Seq, c)
		} else {
			t.Logf("retained %s: %s", topic, m.Payload)
		}
	}
	t.Logf("took %v", time.Since(started).Round(time.Second))
}

func sameIDs(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func sortedIDs(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
