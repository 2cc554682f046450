package pipeline_test

import (
	"math"
	"testing"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/internal/testkit"
)

// RunCropsOf, the crops of several frames in one inference, answers each crop as
// RunCrops does frame by frame; a frame that does not decode fails alone.
func TestRunCropsOfMatchesRunCrops(t *testing.T) {
	det := loadExample(t)
	reid, err := pipeline.Load("../examples/person-reid", pipeline.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer reid.Close()
	frames := mjpegFrames(testkit.Media(t, "vtest_10s.mjpeg"))[:3]
	var boxes [][]functions.Box
	for _, f := range frames {
		res, _, err := det.Run([][]byte{f})
		if err != nil || res[0].Err != nil {
			t.Fatal(err, res[0].Err)
		}
		var bs []functions.Box
		for _, d := range res[0].Detections {
			if d.Label == "person" && d.Box.Y2-d.Box.Y1 >= 60 {
				bs = append(bs, d.Box)
			}
		}
		boxes = append(boxes, bs)
	}
	all, frameErrs, _, err := reid.RunCropsOf(append(frames, []byte("not a jpeg")), append(boxes, []functions.Box{{X2: 10, Y2: 10}}))
	if err != nil {
		t.Fatal(err)
	}
	if frameErrs[3] == nil || len(all[3]) != 1 || all[3][0].Embedding != nil {
		t.Fatalf("the frame that does not decode: %v, %+v", frameErrs[3], all[3])
	}
	crops := 0
	for j, f := range frames {
		one, _, err := reid.RunCrops(f, boxes[j])
		if err != nil || frameErrs[j] != nil {
			t.Fatal(err, frameErrs[j])
		}
		for i := range one {
			crops++
			a, b := one[i].Embedding, all[j][i].Embedding
			if len(a) != 256 || len(b) != 256 {
				t.Fatalf("frame %d crop %d: %d and %d values", j, i, len(a), len(b))
			}
			for k := range a {
				if math.Abs(float64(a[k]-b[k])) > 1e-4 {
					t.Fatalf("frame %d crop %d value %d: %v alone, %v batched", j, i, k, a[k], b[k])
				}
			}
		}
	}
	if crops == 0 {
		t.Fatal("no person crops on the first frames")
	}
}
