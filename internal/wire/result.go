package wire

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Result statuses.
const (
	StatusOK      = "ok"      // the function ran on the frame
	StatusSkipped = "skipped" // live policy: the frame was older than the deployment's max age
	StatusError   = "error"   // the frame could not be processed (e.g. a corrupt JPEG)
)

// Result is what a runner made of one frame. It is JSON on the stream's results topic
// (key: camera) and on NATS subject ResultSubject(stream, camera). ID is stable for a
// given frame and function digest, so consumers can drop duplicates (delivery is at least
// once).
type Result struct {
	ID          string               `json:"id"`
	Stream      string               `json:"stream"`
	Camera      string               `json:"camera"`
	Seq         uint64               `json:"seq"`
	CaptureTime time.Time            `json:"capture_time"`
	Function    string               `json:"function"`
	Digest      string               `json:"digest"`
	Status      string               `json:"status"`
	Error       string               `json:"error,omitempty"`
	Width       int                  `json:"width,omitempty"`
	Height      int                  `json:"height,omitempty"`
	Detections  []Detection          `json:"detections,omitempty"`
	Raw         map[string][]float32 `json:"raw,omitempty"`
	// Labels are a classifier's top classes, best first (the classify decoder).
	Labels []ClassScore `json:"labels,omitempty"`
	// Embedding is an embedder's L2-normalised vector (the embed decoder), as a JSON
	// array of numbers: compare two with their dot product (their cosine similarity).
	Embedding []float32 `json:"embedding,omitempty"`
	// Events and Counts are the tracker stage's zone events on this frame and the
	// running counts of the camera's zones.
	Events  []ZoneEvent `json:"events,omitempty"`
	Counts  []ZoneCount `json:"counts,omitempty"`
	Timings Timings     `json:"timings_ms"`
	Source  Source      `json:"source"`
	// Stages, on a second stage's enriched result, are the chain's functions, first
	// stage first; Function and Digest are the last one's.
	Stages []Stage `json:"stages,omitempty"`
}

// Detection is one object found in a frame, in source-image pixels.
type Detection struct {
	ClassID int     `json:"class_id"`
	Label   string  `json:"label,omitempty"`
	Score   float32 `json:"score"`
	Box     Box     `json:"box"`
	// TrackID is the detection's track, stable across the camera's frames, when the
	// deployment tracks (0: untracked, or not yet confirmed).
	TrackID uint64 `json:"track_id,omitempty"`
	// Embedding and Labels are a second stage's output on this detection's crop (an
	// embedder's unit vector, a classifier's top classes), on an enriched result.
	Embedding []float32    `json:"embedding,omitempty"`
	Labels    []ClassScore `json:"labels,omitempty"`
	// Detections are a detector second stage's detections inside this detection's crop,
	// in the frame's pixels (a plate inside a car), on an enriched result.
	Detections []Detection `json:"detections,omitempty"`
}

// ClassScore is one class a classifier gave a frame, with its score (a probability,
// softmax or sigmoid as the function's spec says).
type ClassScore struct {
	ClassID int     `json:"class_id"`
	Label   string  `json:"label,omitempty"`
	Score   float32 `json:"score"`
}

// Box is an axis-aligned box in pixels: (x1,y1) top-left, (x2,y2) bottom-right.
type Box struct {
	X1 float32 `json:"x1"`
	Y1 float32 `json:"y1"`
	X2 float32 `json:"x2"`
	Y2 float32 `json:"y2"`
}

// Timings of one frame, in milliseconds. Batch stages are shared by the frames of a batch
// and reported per frame as the batch's time divided by its size.
type Timings struct {
	Queue      float64 `json:"queue"`      // ingest to the start of its batch
	Decode     float64 `json:"decode"`     // per frame
	Preprocess float64 `json:"preprocess"` // per frame
	Infer      float64 `json:"infer"`      // the batch's inference / batch size
	EndToEnd   float64 `json:"end_to_end"` // capture to result produced
	Batch      int     `json:"batch_size"`
}

// Source locates the frame record the result answers.
type Source struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// ResultID is the stable identity of the result of frame (camera, seq) on stream by the
// function image digest.
func ResultID(stream, camera string, seq uint64, digest string) string {
	if i := strings.LastIndex(digest, "sha256:"); i >= 0 && len(digest) >= i+19 {
		digest = digest[i+7 : i+19]
	}
	return fmt.Sprintf("%s/%s/%d/%s", stream, camera, seq, digest)
}

// ResultIDAt is the identity of the result of a record that carries no usable frame
// identity (it is not a valid frame): its position in the stream's topic.
func ResultIDAt(stream string, partition int32, offset int64, digest string) string {
	return ResultID(stream, fmt.Sprintf("p%d", partition), uint64(offset), digest)
}

// ResultSubject is the NATS subject live results of a camera are published on;
// subscribe to ResultSubject(stream, "*") for a whole stream.
func ResultSubject(stream, camera string) string { return "diplip.results." + stream + "." + camera }

// Summarize counts detections by label, most frequent first: "7 person, 1 car".
func Summarize(dets []Detection) string {
	counts := map[string]int{}
	for _, d := range dets {
		l := d.Label
		if l == "" {
			l = fmt.Sprintf("class %d", d.ClassID)
		}
		counts[l]++
	}
	labels := slices.Collect(maps.Keys(counts))
	slices.SortFunc(labels, func(a, b string) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf("%d %s", counts[l], l)
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
