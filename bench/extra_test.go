package bench

import (
	"bytes"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/compare"
	"github.com/diplip/diplip/internal/wire"
)

func TestPerSecondAndRatio(t *testing.T) {
	if got := perSecond(150, 10*time.Second); got != 15 {
		t.Errorf("perSecond(150, 10s) = %v, want 15", got)
	}
	if got := perSecond(5, 0); got != 0 {
		t.Errorf("perSecond over no time = %v, want 0", got)
	}
	if got := ratio(12.5, 50); got != 0.25 {
		t.Errorf("ratio(12.5, 50) = %v, want 0.25", got)
	}
	if got := ratio(3, 0); got != 0 {
		t.Errorf("ratio(3, 0) = %v, want 0 (no reference)", got)
	}
	// The two drains of the first stage alone bracketing the chain's: 13.8 and 39.0 fps
	// are 96 % apart (flagged), 44.0 and 45.7 under 4 % (not).
	if got := spread(13.8, 39.0); got < 0.95 || got > 0.96 {
		t.Errorf("spread(13.8, 39.0) = %v, want about 0.955", got)
	}
	if got := spread(44.0, 45.7); got > 0.04 {
		t.Errorf("spread(44.0, 45.7) = %v, want under 0.04", got)
	}
	if got := spread(0, 0); got != 0 {
		t.Errorf("spread(0, 0) = %v, want 0", got)
	}
}

func TestEmbeddedCountsCrops(t *testing.T) {
	r := wire.Result{Detections: []wire.Detection{
		{Label: "person", Embedding: []float32{1, 0}},
		{Label: "person"}, // under the minimum size: no crop
		{Label: "car"},
		{Label: "person", Embedding: []float32{0, 1}},
	}}
	if got := embedded(&r); got != 2 {
		t.Fatalf("embedded = %d, want the 2 detections with an embedding", got)
	}
}

func TestCPUNoteAndOnly(t *testing.T) {
	// 600 frames, 2,400 crops: stage 1 used 12 s of CPU, stage 2 36 s.
	if got, want := cpuNote(12, 36, 600, 2400), "CPU ms per frame: stage 1 runner 20.0, stage 2 runner 60.0 (15.0 per crop)"; got != want {
		t.Errorf("cpuNote = %q, want %q", got, want)
	}
	if got := cpuNote(0, 36, 600, 0); !strings.Contains(got, "stage 1 runner n/a") || !strings.Contains(got, "(n/a per crop)") {
		t.Errorf("cpuNote without stage 1 or crops = %q", got)
	}
	procs := map[string]int{"gateway": 1, "kafka": 2, stageName(1, "a"): 3, stageName(2, "b"): 4}
	if got := only(procs, stageName(2, "b"), "missing"); len(got) != 1 || got["stage 2 runner (b)"] != 4 {
		t.Errorf("only = %v", got)
	}
	if sumCounts(map[string]int64{"skipped": 3, "error": 2}) != 5 {
		t.Error("sumCounts")
	}
}

func TestLimitConfigFollowsTheLimitRow(t *testing.T) {
	if c := limitConfig(Row{Runners: 2}); c != (lanesConfig{2, 1}) {
		t.Errorf("limit with 2 lanes: %v, want 2×1", c)
	}
	if c := limitConfig(Row{Runners: 1}); c != (lanesConfig{1, runtime.NumCPU()}) {
		t.Errorf("limit with 1 lane: %v, want 1×%d", c, runtime.NumCPU())
	}
}

func TestF1NoteAndDetectionsFrame(t *testing.T) {
	box := functions.Box{X1: 0, Y1: 0, X2: 10, Y2: 20}
	fp32 := []compare.Frame{compare.FromResult("sample", 0, functions.FrameResult{Detections: []functions.Detection{{ClassID: 0, Label: "person", Box: box}}})}
	// INT8 finds the person and a car FP32 did not: precision 0.5, recall 1.
	int8 := []compare.Frame{compare.FromResult("sample", 0, functions.FrameResult{Detections: []functions.Detection{
		{ClassID: 0, Label: "person", Box: box}, {ClassID: 2, Label: "car", Box: box}}})}
	note := f1Note(compare.Compare(fp32, int8, compare.DefaultIoU))
	for _, want := range []string{"over 1 frames", "IoU 0.5", "F1 0.667", "precision 0.500", "recall 1.000", "detections 2 vs 1"} {
		if !strings.Contains(note, want) {
			t.Errorf("%q does not say %q", note, want)
		}
	}
}

// jpegOf is a gray JPEG of w×h.
func jpegOf(t *testing.T, w, h int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadHDChecksCountAndSize(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, frames ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(frames, nil), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hd := jpegOf(t, hdWidth, hdHeight)
	good := write("good.mjpeg", hd, hd)
	if fs, err := readHD(good, 2); err != nil || len(fs) != 2 {
		t.Fatalf("readHD(two 1080p frames) = %d frames, %v", len(fs), err)
	}
	if _, err := readHD(good, 3); err == nil || !strings.Contains(err.Error(), "2 frames, want 3") {
		t.Errorf("a short file: %v, want it refused", err)
	}
	small := write("small.mjpeg", hd, jpegOf(t, 768, 576))
	if _, err := readHD(small, 2); err == nil || !strings.Contains(err.Error(), "768x576") {
		t.Errorf("a frame not 1080p: %v, want it refused", err)
	}
	if _, err := readHD(filepath.Join(dir, "missing"), 2); err == nil {
		t.Error("a missing file read without error")
	}
	if a := strings.Join(hdArgs("in", "out"), " "); !strings.Contains(a, "scale=1920:1080:flags=lanczos") || !strings.HasSuffix(a, "-f mjpeg out") {
		t.Errorf("ffmpeg arguments %q", a)
	}
}

func TestSweepExtraRows(t *testing.T) {
	s, err := ParseSweep(strings.NewReader("name: q\ndirect: true\ndrain: 300\nchain: [0.25, 0.5]\nframes_1080p: true\nint8: true\nint8_dir: /x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Chain) != 2 || s.Chain[1] != 0.5 || !s.Frames1080p || !s.INT8 || s.INT8Dir != "/x" || s.Function != "yolox-nano" {
		t.Fatalf("%+v", s)
	}
	for _, tc := range []struct{ in, want string }{
		{"name: q\nchain: [0.5]\n", "direct: true and drain > 0"},
		{"name: q\ndirect: true\nframes_1080p: true\n", "direct: true and drain > 0"},
		{"name: q\ndirect: true\ndrain: 10\nchain: [-1]\n", "chain: load -1"},
		{"name: q\ndirect: true\ndrain: 10\nint8_dir: /x\n", "int8_dir without int8"},
		{"name: q\nfunction: ../x\n", "name of an example function"},
		{"name: q\nfunction: nanodet-m\ndirect: true\ndrain: 10\nchain: [0.5]\n", "function must be yolox-nano"},
	} {
		if _, err := ParseSweep(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSweep(%q) = %v, want it to mention %q", tc.in, err, tc.want)
		}
	}
}

// A drain's rate leaves out the first delivery: a transaction that held a second of frames
// arrives at once, and counting it from its arrival would inflate the rate.
func TestSteadyRateLeavesOutTheFirstDelivery(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	var at []time.Time
	for range 40 { // the first transaction: 40 results within a few ms
		at = append(at, t0.Add(time.Duration(len(at))*100*time.Microsecond))
	}
	for i := 5; i < 105; i++ { // then one every 10 ms: 100 a second, from 50 ms on
		at = append(at, t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	fps, burst := steadyRate(at) // 100 results over 1.04 s - 4 ms
	if burst != 40 || fps < 96 || fps > 97 {
		t.Fatalf("steadyRate: %.1f fps after a first delivery of %d; want 96.5 after 40", fps, burst)
	}
	if fps, burst := steadyRate(at[:1]); fps != 0 || burst != 1 {
		t.Fatalf("one result: %.1f fps, burst %d", fps, burst)
	}
}
