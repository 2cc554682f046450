package pipeline_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/internal/assets"
	"github.com/diplip/diplip/internal/testkit"
)

func loadExample(t *testing.T) *pipeline.Function {
	t.Helper()
	fn, err := pipeline.Load("../examples/yolox-nano", pipeline.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fn.Close() })
	return fn
}

// find returns the best detection of label whose box is within tol pixels of want.
func find(dets []functions.Detection, label string, want functions.Box, tol float32) (functions.Detection, bool) {
	for _, d := range dets {
		b := d.Box
		if d.Label == label && abs(b.X1-want.X1) <= tol && abs(b.Y1-want.Y1) <= tol && abs(b.X2-want.X2) <= tol && abs(b.Y2-want.Y2) <= tol {
			return d, true
		}
	}
	return functions.Detection{}, false
}

func abs(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// The detector finds what shared/models/SOURCE.md observed on real photos, with boxes
// within a few pixels (the references were resized by another bilinear implementation).
func TestYOLOXNanoFindsTheObservedObjects(t *testing.T) {
	fn := loadExample(t)
	if fn.DynamicBatch {
		t.Error("yolox_nano.onnx has a fixed batch axis of 1; the function should run per frame")
	}
	corrupt := []byte("\xff\xd8\xff\xe0 not really a jpeg")
	results, tm, err := fn.Run([][]byte{testkit.Media(t, "astronaut.png"), corrupt, testkit.Media(t, "vtest_frame600.jpg")})
	if err != nil {
		t.Fatal(err)
	}
	if tm.Infer <= 0 || tm.Decode <= 0 {
		t.Errorf("timings not measured: %+v", tm)
	}

	astro := results[0]
	if astro.Err != nil || astro.Width != 512 || astro.Height != 512 {
		t.Fatalf("astronaut: %+v", astro)
	}
	p, ok := find(astro.Detections, "person", functions.Box{X1: 11, Y1: 20, X2: 369, Y2: 507}, 8)
	if !ok || abs(p.Score-0.926) > 0.03 {
		t.Fatalf("astronaut: no person near [11 20 369 507] scoring ~0.926; got %+v", astro.Detections)
	}
	if astro.Detections[0] != p {
		t.Errorf("astronaut: the person should be the best detection; got %+v first", astro.Detections[0])
	}

	if results[1].Err == nil || !strings.Contains(results[1].Err.Error(), "corrupt frame") {
		t.Fatalf("corrupt frame: err = %v, want a corrupt-frame error", results[1].Err)
	}

	street := results[2]
	if street.Err != nil {
		t.Fatal(street.Err)
	}
	if c, ok := find(street.Detections, "car", functions.Box{X1: 732, Y1: 52, X2: 767, Y2: 94}, 6); !ok || abs(c.Score-0.793) > 0.05 {
		t.Fatalf("frame 600: no car near [732 52 767 94] scoring ~0.79; got %+v", street.Detections)
	}
	if _, ok := find(street.Detections, "person", functions.Box{X1: 282, Y1: 431, X2: 340, Y2: 576}, 8); !ok {
		t.Fatalf("frame 600: no person near [282 431 340 576]; got %+v", street.Detections)
	}
	persons := 0
	for _, d := range street.Detections {
		if d.Label == "person" {
			persons++
		}
	}
	if persons < 5 || persons > 9 {
		t.Fatalf("frame 600: %d persons, SOURCE.md observed 7 (one a sign)", persons)
	}
}

func BenchmarkRunOneFrame(b *testing.B) {
	fn, err := pipeline.Load("../examples/yolox-nano", pipeline.Options{IntraOpThreads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer fn.Close()
	p, _ := assets.Media("vtest_frame600.jpg")
	frame, _ := os.ReadFile(p)
	var tm functions.BatchTimings
	for b.Loop() {
		_, t, err := fn.Run([][]byte{frame})
		if err != nil {
			b.Fatal(err)
		}
		tm.Decode += t.Decode
		tm.Preprocess += t.Preprocess
		tm.Infer += t.Infer
		tm.Postprocess += t.Postprocess
	}
	n := float64(b.N)
	b.ReportMetric(float64(tm.Decode.Microseconds())/n/1000, "decode-ms")
	b.ReportMetric(float64(tm.Preprocess.Microseconds())/n/1000, "preprocess-ms")
	b.ReportMetric(float64(tm.Infer.Microseconds())/n/1000, "infer-ms")
}

// The raw decoder hands back the named outputs untouched: one frame's [3549 85] here.
func TestRawDecoderReturnsTheTensor(t *testing.T) {
	dir := t.TempDir()
	model, err := assets.Model("yolox_nano.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(model, filepath.Join(dir, "m.onnx")); err != nil {
		t.Fatal(err)
	}
	spec, err := functions.ParseSpec(strings.NewReader(`
name: raw
model: m.onnx
input: {tensor: images, width: 416, height: 416, channels: BGR}
output: {decoder: raw, tensors: [output]}
`))
	if err != nil {
		t.Fatal(err)
	}
	fn, err := pipeline.Open(dir, spec, pipeline.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	res, _, err := fn.Run([][]byte{testkit.Media(t, "chelsea.png"), testkit.Media(t, "astronaut.png")})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		out := r.Raw["output"]
		if r.Err != nil || len(out) != 3549*85 || r.Detections != nil {
			t.Fatalf("frame %d: err %v, %d values, %d detections; want 3549×85 raw values", i, r.Err, len(out), len(r.Detections))
		}
	}
	if slices.Equal(res[0].Raw["output"], res[1].Raw["output"]) {
		t.Fatal("two different photos gave the same raw output")
	}
}
