package runner

import (
	"encoding/json"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

// Exactly-once from the camera: a camera that numbers its frames itself (?seq=N, the
// record's diplip-seq-from header) sends the same seq when it retries a push whose
// answer it lost, and the gateway may have stored the frame twice. An exactly-once
// claim remembers, per camera, the highest such seq it took, and skips a frame record
// whose seq is not newer: its offset is committed, it gets no result. What the claim
// remembers is written in every transaction that moves it (one record per partition,
// in the deployment's state topic, beside the tracker's checkpoints), so it moves with
// the partition: the next owner reads it with the committed offset.
//
// Frames numbered by the gateway (no seq from the camera) are never skipped: a retry
// gets a new number there, so a repeat cannot be told from a new frame.

// seqsKey is the key of partition p's camera seqs in the state topic: no camera id (it
// has dots), and one the producers' hash partitioner puts on partition p of a topic of
// partitions partitions, so it is read and written with that partition's checkpoints.
func seqsKey(p, partitions int32) string {
	if p >= partitions { // a stream that does not know its partitions: no key fits
		return fmt.Sprintf("diplip.seqs.p%d", p)
	}
	hp := sarama.NewHashPartitioner("")
	for i := 0; ; i++ {
		k := fmt.Sprintf("diplip.seqs.p%d.%d", p, i)
		if got, err := hp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(k)}, partitions); err == nil && got == p {
			return k
		}
	}
}

// cameraSeqs is the highest seq of each camera that numbers its frames, taken by a claim.
type cameraSeqs map[string]uint64

func parseSeqs(b []byte) cameraSeqs {
	s := cameraSeqs{}
	_ = json.Unmarshal(b, &s) // unreadable: nothing remembered, nothing skipped
	return s
}

// cameraSeq is an item's camera and seq when the camera numbered it; ok false otherwise.
func cameraSeq(it *flow.Item) (camera string, seq uint64, ok bool) {
	if it.Skip || it.GivenUp || it.Result.Camera == "" {
		return "", 0, false
	}
	for _, h := range it.Headers {
		if h.Key == wire.HeaderSeqFrom && h.Value == "camera" {
			return it.Result.Camera, it.Result.Seq, true
		}
	}
	return "", 0, false
}

// repeat reports whether it repeats a seq seen already, remembering it when it does not.
func (s cameraSeqs) repeat(it *flow.Item) bool {
	camera, seq, ok := cameraSeq(it)
	if !ok {
		return false
	}
	if seen, had := s[camera]; had && seq <= seen {
		return true
	}
	s[camera] = seq
	return false
}

// after is s with items' seqs (in order) taken in; nil when they change nothing.
func (s cameraSeqs) after(items []*flow.Item) cameraSeqs {
	var out cameraSeqs
	for _, it := range items {
		camera, seq, ok := cameraSeq(it)
		if !ok {
			continue
		}
		if seen, had := s[camera]; had && seq <= seen {
			continue
		}
		if out == nil {
			out = make(cameraSeqs, len(s)+1)
			for k, v := range s {
				out[k] = v
			}
		}
		out[camera] = max(out[camera], seq)
	}
	return out
}

// skipRepeat turns an item that repeats its camera's seq into a skipped one (committed
// without a result) and counts it.
func (w *Worker) skipRepeat(it *flow.Item) {
	it.Skip, it.Payload, it.State = true, nil, nil
	metrics.DuplicateFramesSkipped.WithLabelValues(w.cfg.Deployment.Key()).Inc()
	w.Stats.Duplicates.Add(1)
	w.log.Debug("frame skipped: its camera sent this seq already", "camera", it.Result.Camera, "seq", it.Result.Seq,
		"partition", it.Partition, "offset", it.Offset)
}
