package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/wire"
)

// The gateway serves results as they are stored (wire.Result); clients read them as
// api.Result. A field that one has and the other lacks would be lost on the way: every
// field of a fully filled record must come back out of the API type unchanged.
func TestResultMatchesTheRecord(t *testing.T) {
	r := wire.Result{ID: "s/c/1/abc", Stream: "s", Camera: "c", Seq: 1, CaptureTime: time.UnixMilli(1700000000000).UTC(),
		Function: "f", Digest: "d", Status: wire.StatusOK, Error: "e", Width: 640, Height: 480,
		Detections: []wire.Detection{{ClassID: 1, Label: "person", Score: 0.5, Box: wire.Box{X1: 1, Y1: 2, X2: 3, Y2: 4}, TrackID: 7,
			Embedding: []float32{0.6, 0.8}, Labels: []wire.ClassScore{{ClassID: 2, Label: "red", Score: 0.9}},
			Detections: []wire.Detection{{ClassID: 5, Label: "plate", Score: 0.8, Box: wire.Box{X1: 1.5, Y1: 2.5, X2: 2.5, Y2: 3.5}}}}},
		Raw:       map[string][]float32{"out": {1, 2}},
		Labels:    []wire.ClassScore{{ClassID: 3, Label: "tabby", Score: 0.75}},
		Embedding: []float32{0.6, -0.8},
		Events:    []wire.ZoneEvent{{Zone: "z", Kind: wire.EventCrossed, Direction: "in", TrackID: 7, ClassID: 1, Label: "person"}},
		Counts:    []wire.ZoneCount{{Zone: "z", ClassID: 1, Label: "person", In: 1, Out: 2, Entered: 3, Left: 4, Inside: 5}},
		Timings:   wire.Timings{Queue: 1, Decode: 2, Preprocess: 3, Infer: 4, EndToEnd: 5, Batch: 6},
		Source:    wire.Source{Partition: 3, Offset: 9},
		Stages:    []wire.Stage{{Function: "a", Digest: "da"}, {Function: "f", Digest: "d"}}}
	stored, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var read api.Result
	if err := json.Unmarshal(stored, &read); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(read)
	if string(again) != string(stored) {
		t.Fatalf("api.Result loses or changes fields of wire.Result:\nstored %s\nread   %s", stored, again)
	}
}

// api.Runner carries every field of a runner's heartbeat.
func TestRunnerCarriesTheHeartbeat(t *testing.T) {
	hb := wire.Heartbeat{ID: "r1", Host: "h", PID: 2, CPUs: 4, MemoryMB: 5, Devices: []wire.Device{wire.DeviceCPU, "cuda:0"},
		Providers: []string{"CPUExecutionProvider"}, GPUs: []wire.GPU{{Index: 0, Name: "H100", MemoryMB: 80}},
		State: wire.StateActive, Deployment: "f.s", Digest: "d", Generation: 2, Partitions: []int32{0, 1}, Frames: 9,
		RateFPS: 1.5, Lanes: 2, BatchMode: "batch", MetricsURL: "http://x", Unhealthy: "u", LastError: "l",
		Sent: time.UnixMilli(1700000000000).UTC()}
	want, _ := json.Marshal(hb)
	got, _ := json.Marshal(apiRunner(hb))
	if string(got) != string(want) {
		t.Fatalf("api.Runner differs from the heartbeat:\nheartbeat %s\napi       %s", want, got)
	}
}
