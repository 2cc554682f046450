package main

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
)

// Bring your own model, the way a user would: `fn init` on the shipped NanoDet-m and
// person re-id files writes their specs, `fn build`, `fn push` and `fn deploy` take them
// unchanged, and a pushed photo comes back decoded by each family: NanoDet-m finds the
// astronaut where ../shared/models/SOURCE.md §2 says (person 0.676 [11 11 358 508]);
// the re-id embedder answers a unit 256-d vector.
func TestInitBuildDeployNanoDetAndReID(t *testing.T) {
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr)
	for _, tc := range []struct {
		name, model, labels string
		check               func(t *testing.T, r wire.Result)
	}{
		{"nanodet-m", "../../functions/examples/nanodet-m/nanodet_m_320.onnx", "../../functions/examples/nanodet-m/coco80.txt",
			func(t *testing.T, r wire.Result) {
				var best *wire.Detection
				for i, d := range r.Detections {
					if d.Label == "person" && (best == nil || d.Score > best.Score) {
						best = &r.Detections[i]
					}
				}
				want := wire.Box{X1: 11, Y1: 11, X2: 358, Y2: 508}
				if best == nil || math.Abs(float64(best.Score)-0.676) > 0.01 || iou(best.Box, want) < 0.9 {
					t.Fatalf("nanodet-m on astronaut.png: best person %+v, want 0.676 near %+v (all: %+v)", best, want, r.Detections)
				}
			}},
		{"person-reid", "../../functions/examples/person-reid/person-reidentification-retail-0288.onnx", "",
			func(t *testing.T, r wire.Result) {
				var norm float64
				for _, v := range r.Embedding {
					norm += float64(v) * float64(v)
				}
				if len(r.Embedding) != 256 || math.Abs(math.Sqrt(norm)-1) > 1e-3 {
					t.Fatalf("person-reid: embedding of %d values, norm %.4f; want 256, unit length", len(r.Embedding), math.Sqrt(norm))
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tc.name)
			args := []string{"fn", "init", tc.model, "-o", dir, "--name", tc.name}
			if tc.labels != "" {
				args = append(args, "--labels", tc.labels)
			}
			run(t, 0, args...)
			ref := addr + "/fn/" + tc.name + ":v1"
			store := t.TempDir()
			run(t, 0, "fn", "build", dir, "-t", ref, "--store", store)
			run(t, 0, "fn", "push", ref, "--store", store)
			stream := testkit.Name(tc.name)
			run(t, 0, "stream", "create", stream, "--partitions", "1", gw)
			run(t, 0, "fn", "deploy", ref, "--stream", stream, "--min", "0", "--max", "1", "--policy", "replay", gw)
			pushFrame(t, addr, stream, "space", "image/png", "astronaut.png")
			rs := waitResults(t, gw, stream, 1)
			if rs[0].Status != wire.StatusOK {
				t.Fatalf("%s: result %s: %s", tc.name, rs[0].Status, rs[0].Error)
			}
			tc.check(t, rs[0])
		})
	}
}

func iou(a, b wire.Box) float64 {
	ix := math.Max(0, math.Min(float64(a.X2), float64(b.X2))-math.Max(float64(a.X1), float64(b.X1)))
	iy := math.Max(0, math.Min(float64(a.Y2), float64(b.Y2))-math.Max(float64(a.Y1), float64(b.Y1)))
	inter := ix * iy
	area := func(x wire.Box) float64 { return float64(x.X2-x.X1) * float64(x.Y2-x.Y1) }
	return inter / (area(a) + area(b) - inter)
}
