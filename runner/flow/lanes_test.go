package flow_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

// classEmbedModel answers as a classifier and an embedder would: labels and a vector,
// with a NaN in either when the frame's first byte asks for it.
type classEmbedModel struct{}

func (classEmbedModel) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	out := make([]functions.FrameResult, len(frames))
	for i, f := range frames {
		out[i].Labels = []functions.ClassScore{{ClassID: 281, Label: "tabby", Score: 0.7}, {ClassID: 285, Label: "egyptian cat", Score: 0.2}}
		out[i].Embedding = []float32{0.6, 0.8}
		switch f[0] {
		case 1:
			out[i].Labels[1].Score = float32(math.NaN())
		case 2:
			out[i].Embedding[1] = float32(math.Inf(1))
		}
	}
	return out, functions.BatchTimings{}, nil
}

// Labels and embeddings reach the result record (and its JSON); a non-finite label is
// dropped, a non-finite embedding makes the frame an error result (JSON cannot carry it).
func TestLabelsAndEmbeddingReachTheRecord(t *testing.T) {
	items := []*flow.Item{record(0, 0, frame("cam", 1, 0)), record(0, 1, frame("cam", 2, 1)), record(0, 2, frame("cam", 3, 2))}
	got := runAll(t, flow.Config{Deployment: deployment(1), Model: classEmbedModel{}}, items)
	var r wire.Result
	if err := json.Unmarshal(got[0].Payload, &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != wire.StatusOK || len(r.Labels) != 2 || r.Labels[0] != (wire.ClassScore{ClassID: 281, Label: "tabby", Score: 0.7}) ||
		len(r.Embedding) != 2 || r.Embedding[0] != 0.6 || r.Embedding[1] != 0.8 {
		t.Fatalf("the record read back: %+v", r)
	}
	if r := got[1].Result; r.Status != wire.StatusOK || len(r.Labels) != 1 {
		t.Fatalf("a NaN label: %+v", r)
	}
	if r := got[2].Result; r.Status != wire.StatusError || r.Embedding != nil {
		t.Fatalf("an Inf embedding: %+v", r)
	}
}
