package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

// fn quantize through the binary (issue #26), on frames of the sample video the stream
// recorded: too few frames, a window outside retention and an image that is not a
// function are refused with exit 2; 30 frames calibrate, --method auto scores each way of
// choosing ranges on 20 others and keeps the best, 30 more check it: the check's F1 of
// INT8 against FP32 is printed, the pushed image says where it came from, quantizing
// it again is refused, and the INT8 image deploys and still finds the astronaut where
// ../shared/models/SOURCE.md says YOLOX-Nano does (person 0.926 [11 20 369 507]).
func TestFnQuantizeOnTheStreamsOwnFrames(t *testing.T) {
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr)
	stream := testkit.Name("quant")
	run(t, 0, "stream", "create", stream, "--partitions", "2", gw)
	store, cache := t.TempDir(), t.TempDir()
	fp32, int8 := addr+"/fn/yolox-nano:v1", addr+"/fn/yolox-nano:int8"
	run(t, 0, "fn", "build", "../../functions/examples/yolox-nano", "-t", fp32, "--store", store, "--push")
	quantize := func(want int, args ...string) string {
		t.Helper()
		return run(t, want, append([]string{"fn", "quantize", "--calibrate", stream, "-t", int8, "--store", store, "--cache", cache, gw}, args...)...)
	}

	cl := gatewayClient(t, addr)
	jpegs := ingest.SplitJPEGs(testkit.Media(t, "vtest_10s.mjpeg"))
	push := func(frames [][]byte) {
		for _, b := range frames {
			if _, err := cl.PushFrame(t.Context(), stream, apiclient.Frame{Camera: "vtest", Image: b, ContentType: "image/jpeg"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	push(jpegs[:8])
	if msg := quantize(2, fp32); !strings.Contains(msg, "holds 8 frames") || !strings.Contains(msg, "at least 10") {
		t.Fatalf("8 recorded frames: %s", msg)
	}
	push(jpegs[8:80])
	if msg := quantize(2, fp32, "--from", "2020-01-01T00:00:00Z"); !strings.Contains(msg, "before the earliest retained frame") {
		t.Fatalf("a window outside retention: %s", msg)
	}
	notFn := addr + "/fn/not-a-function:v1"
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	notFnRef, err := name.ParseReference(notFn)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(notFnRef, img); err != nil {
		t.Fatal(err)
	}
	if msg := quantize(2, notFn); !strings.Contains(msg, "not a diplip function image") {
		t.Fatalf("an image that is not a function: %s", msg)
	}

	out := quantize(0, fp32, "--frames", "30", "--choose-frames", "20", "--check", "--check-frames", "30", "--push", "-o", "json")
	var q quantized
	if err := json.Unmarshal([]byte(out), &q); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("fn quantize: %s; check %+v", q.Report, q.Check)
	if q.Calibrated != 30 || q.Report == nil || q.Report.Quantized["Conv"] == 0 || !q.Pushed {
		t.Fatalf("fn quantize: %+v", q)
	}
	if q.Check == nil || q.Check.Frames != 30 || q.Check.Overall.Primary == 0 {
		t.Fatalf("check: %+v", q.Check)
	}
	a := q.Auto
	if a == nil || a.Frames != 20 || len(a.Candidates) != 4 {
		t.Fatalf("auto: %+v", a)
	}
	chosen := a.Candidates[a.Chosen]
	for _, s := range a.Candidates {
		if s.Overall.Primary == 0 || s.Overall.F1 > chosen.Overall.F1 {
			t.Fatalf("auto kept %s (F1 %.3f) of %+v", chosen.Candidate, chosen.Overall.F1, a.Candidates)
		}
	}
	if q.Report.Method != chosen.Candidate.String() {
		t.Fatalf("the written model's method %q, auto chose %s", q.Report.Method, chosen.Candidate)
	}
	// The floor is what this model and window give (F1 ≈ 0.9; the closing note of issue
	// #26 has the measurements), not a target.
	if f1 := q.Check.Overall.F1; f1 < 0.8 {
		t.Fatalf("INT8 against FP32 on 30 frames neither calibrated nor chosen on: F1 %.3f (%+v)", f1, q.Check.Overall)
	}
	fp32Ref, err1 := name.ParseReference(fp32)
	int8Ref, err2 := name.ParseReference(int8)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	pinned, err := registry.Resolve(t.Context(), fp32Ref)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(int8Ref)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := registry.LabelsOf(pulled)
	if err != nil {
		t.Fatal(err)
	}
	if labels[registry.LabelQuantizedFrom] != pinned.String() || labels[registry.LabelQuantizedStream] != stream ||
		!strings.HasPrefix(labels[registry.LabelQuantizedMethod], string(chosen.Method)+" frames=30") ||
		!strings.HasSuffix(labels[registry.LabelQuantizedMethod], "chosen-by=auto") ||
		labels[registry.LabelQuantizedAgreement] != fmt.Sprintf("f1=%.3f frames=30 on=check", q.Check.Overall.F1) {
		t.Fatalf("labels of %s: %v", int8, labels)
	}
	var in inspected
	if err := json.Unmarshal([]byte(run(t, 0, "fn", "inspect", int8, "-o", "json")), &in); err != nil || in.Quantized["from"] != pinned.String() {
		t.Fatalf("fn inspect of the INT8 image: %+v, %v", in.Quantized, err)
	}
	if out := run(t, 0, "fn", "inspect", int8); !strings.Contains(out, "INT8 from "+pinned.String()+", calibrated on stream "+stream) {
		t.Fatalf("fn inspect of the INT8 image:\n%s", out)
	}
	if msg := quantize(2, int8); !strings.Contains(msg, "already quantized") {
		t.Fatalf("quantizing an INT8 image: %s", msg)
	}

	// The INT8 image is a function like any other.
	photos := testkit.Name("quant-photo")
	run(t, 0, "stream", "create", photos, "--partitions", "1", gw)
	run(t, 0, "fn", "deploy", int8, "--stream", photos, "--min", "0", "--max", "1", "--policy", "replay", gw)
	// The deployment says it runs an INT8 copy, and how well it agreed (the dashboard's
	// INT8 badge reads this).
	deps, err := cl.Deployments(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(deps, func(d api.Deployment) bool { return d.Stream == photos })
	if i < 0 || deps[i].Quantized["from"] != pinned.String() || !strings.HasPrefix(deps[i].Quantized["agreement"], "f1=") {
		t.Fatalf("deployment of the INT8 image on %s: %+v", photos, deps)
	}
	shot := screenshotPath(t, "dashboard-int8.png")
	b, err := exec.Command(browserTools(t), "../../internal/uitest/int8.mjs", "http://"+addr+"/", photos, pinned.String(), shot).CombinedOutput()
	t.Logf("%s", b)
	if err != nil {
		t.Fatalf("browser check of the INT8 badge: %v", err)
	}
	pushFrame(t, addr, photos, "space", "image/png", "astronaut.png")
	rs := waitResults(t, gw, photos, 1)
	want := wire.Box{X1: 11, Y1: 20, X2: 369, Y2: 507}
	for _, d := range rs[0].Detections {
		if d.Label == "person" && iou(d.Box, want) > 0.8 {
			return
		}
	}
	t.Fatalf("INT8 YOLOX-Nano on astronaut.png: %+v, want a person near %+v", rs[0].Detections, want)
}
