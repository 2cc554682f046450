package gateway_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/registry"
)

// A second stage's results (GET /v1/streams/S/results?after=FIRST[&function=FN]): 404
// naming the second stages on the stream when none matches, 400 for function= without
// after=, and its own (empty) results topic once it is deployed, with or without function=.
func TestResultsOfASecondStage(t *testing.T) {
	ctx := context.Background()
	l, c := startLocal(t, "")
	stream := testkit.Name("chain")
	if _, err := c.CreateStream(ctx, api.StreamRequest{Name: stream, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	det := pushExample(t, l, "v1")
	img, _, err := registry.Build("../functions/examples/person-reid", nil)
	if err != nil {
		t.Fatal(err)
	}
	reid, err := registry.ParseReference(strings.TrimPrefix(l.URL, "http://")+"/fn/person-reid:v1", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(ctx, img, reid, nil); err != nil {
		t.Fatal(err)
	}
	none := func(api.Result) error { t.Fatal("a result where none was written"); return nil }
	if _, err := c.Deploy(ctx, api.DeployRequest{Ref: det, Stream: stream}); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.ResultsAfter(ctx, stream, "yolox-nano", "person-reid", 1, false, none), 404,
		"person-reid does not run after yolox-nano on stream "+stream+" (second stages there: none; deploy one with: diplip fn deploy REF --stream "+stream+" --after yolox-nano)")
	if _, err := c.Deploy(ctx, api.DeployRequest{Ref: reid.String(), Stream: stream, After: "yolox-nano"}); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.ResultsAfter(ctx, stream, "yolox-nano", "nanodet", 1, false, none), 404, "(second stages there: yolox-nano → person-reid)")
	wantAPIError(t, c.ResultsAfter(ctx, stream, "nanodet", "", 1, false, none), 404, "no second stage runs after nanodet")
	wantAPIError(t, c.ResultsAfter(ctx, "nope", "yolox-nano", "", 1, false, none), 404, "nope")
	resp, err := http.Get(l.URL + "/v1/streams/" + stream + "/results?function=person-reid")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "after=FIRST") {
		t.Fatalf("function= without after=: %d %s; want 400 asking for after=", resp.StatusCode, b)
	}
	for _, fn := range []string{"person-reid", ""} {
		if err := c.ResultsAfter(ctx, stream, "yolox-nano", fn, 10, false, none); err != nil {
			t.Fatalf("results of person-reid after yolox-nano (function %q): %v", fn, err)
		}
	}

	// A second second stage after the same first: without function= the answer is 400
	// naming both; with it, each one's own topic.
	dir := t.TempDir()
	for _, f := range []string{"function.yaml", "person-reidentification-retail-0288.onnx"} {
		b, err := os.ReadFile(filepath.Join("../functions/examples/person-reid", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "function.yaml" {
			b = []byte(strings.Replace(string(b), "name: person-reid", "name: person-reid-b", 1))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	imgB, _, err := registry.Build(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	reidB, err := registry.ParseReference(strings.TrimPrefix(l.URL, "http://")+"/fn/person-reid-b:v1", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(ctx, imgB, reidB, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(ctx, api.DeployRequest{Ref: reidB.String(), Stream: stream, After: "yolox-nano"}); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.ResultsAfter(ctx, stream, "yolox-nano", "", 1, false, none), 400, "2 second stages run after yolox-nano")
	for _, fn := range []string{"person-reid", "person-reid-b"} {
		if err := c.ResultsAfter(ctx, stream, "yolox-nano", fn, 10, false, none); err != nil {
			t.Fatalf("results of %s after yolox-nano: %v", fn, err)
		}
	}
}
