package runner

import (
	"context"
	"encoding/json"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

// delivery writes what the pipeline finished to Kafka and settles the partitions'
// offsets. A worker picks one when it starts, from the deployment's delivery mode:
// atLeastOnce (atleastonce.go) or transactional (transactional.go).
//
// An item's life: membership takes it into the claim of its partition (claim.take), the
// pipeline runs it, and the sequencer submits it (delivery.submit); it is finished when
// its result is durable and its offset settled, or when it is abandoned (its record is
// redone by the partition's next owner). A claim's release returns only when every item
// it took is finished.
type delivery interface {
	// claim starts delivering a partition handed to this worker, before any of its
	// records is read. It retries what it needs from Kafka until it works or ctx ends
	// (then the error).
	claim(ctx context.Context, s sarama.ConsumerGroupSession, partition int32) (claim, error)
	// submit takes an item out of the pipeline: encoded, skipped or given up. It is called
	// from one goroutine, in consumption order within each partition, once per item taken.
	// It may wait for room in flight, never for Kafka to answer.
	submit(it *flow.Item)
	// close is called once the pipeline has ended (nothing more is submitted, every claim
	// was released): it closes what the delivery opened.
	close()
}

// claim is the delivery of one claimed partition, used by that claim's ConsumeClaim.
type claim interface {
	// from is the first offset to process: the records before it are done already
	// (exactly-once: the previous owner's last transaction committed them). -1 for all.
	from() int64
	// state takes the partition's records in the deployment's state topic (read when the
	// deployment has one, before any record is taken), removing those that are its own:
	// what is left are the cameras' tracker checkpoints.
	state(states map[string][]byte)
	// take registers a consumed record before it enters the pipeline, in offset order;
	// it sets it.Meta, which submit reads.
	take(it *flow.Item)
	// abandon finishes a taken item that never entered the pipeline.
	abandon(it *flow.Item)
	// release ends the claim: what it still holds gets one attempt at being written (no
	// retries). It returns once every item the claim took is finished.
	release()
}

// outMsg is a record handed to a producer for an item: its result or its checkpoint.
type outMsg struct {
	it    *flow.Item
	state bool
}

// records are the records written for an item: its result and, when it tracks, the
// camera's checkpoint (same key, so the same partition as the camera's frames).
func (w *Worker) records(it *flow.Item) []*sarama.ProducerMessage {
	key := sarama.StringEncoder(it.Result.Camera)
	out := []*sarama.ProducerMessage{{Topic: w.cfg.Stream.ResultsTopic, Key: key,
		Value: sarama.ByteEncoder(it.Payload), Metadata: &outMsg{it: it}}}
	if it.State != nil {
		out = append(out, &sarama.ProducerMessage{Topic: wire.StateTopic(w.cfg.Deployment), Key: key,
			Value: sarama.ByteEncoder(it.State), Metadata: &outMsg{it: it, state: true}})
	}
	return out
}

// txnRecords are the records of one transaction: the items' (but the skipped ones'), then
// the partition's cameras' seqs under seqsKey when they moved (not nil).
func (w *Worker) txnRecords(items []*flow.Item, seqsKey string, seqs cameraSeqs) ([]*sarama.ProducerMessage, error) {
	var msgs []*sarama.ProducerMessage
	for _, it := range items {
		if !it.Skip {
			msgs = append(msgs, w.records(it)...)
		}
	}
	if seqs != nil {
		b, err := json.Marshal(seqs)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: wire.StateTopic(w.cfg.Deployment),
			Key: sarama.StringEncoder(seqsKey), Value: sarama.ByteEncoder(b), Metadata: &outMsg{it: items[len(items)-1], state: true}})
	}
	return msgs, nil
}

// delivered counts a result that is durable in Kafka and publishes it live.
func (w *Worker) delivered(it *flow.Item) {
	r := &it.Result
	key := w.cfg.Deployment.Key()
	metrics.FramesProcessed.WithLabelValues(key, r.Status).Inc()
	if r.Timings.EndToEnd > 0 {
		metrics.EndToEnd.WithLabelValues(key).Observe(r.Timings.EndToEnd / 1000)
	}
	if w.cfg.NATS != nil {
		// The result id as the message id: a JetStream stream over these subjects drops the
		// duplicates that at-least-once delivery can send.
		_ = w.cfg.NATS.PublishMsg(&nats.Msg{Subject: w.cfg.Deployment.ResultSubject(r.Camera), Data: it.Payload,
			Header: nats.Header{nats.MsgIdHdr: []string{r.ID}}})
	}
	switch r.Status {
	case wire.StatusOK:
		w.Stats.OK.Add(1)
	case wire.StatusSkipped:
		w.Stats.Skipped.Add(1)
	default:
		w.Stats.Errors.Add(1)
	}
	w.Stats.Frames.Add(1)
	w.Stats.LastResult.Store(time.Now().UnixNano())
}
