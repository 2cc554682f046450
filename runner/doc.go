// Package runner claims a stream's Kafka partitions on demand, batches frames, runs a
// function's model on them and publishes the results; it owns the activation life cycle
// that lets runners scale to zero.
//
// It knows nothing about HTTP cameras. Its rooms, one file (or package) each:
//
//   - worker.go: Worker, one deployment's work on one runner; it wires the rooms below
//     and picks the delivery once, from the deployment's delivery mode.
//   - membership.go: the consumer group (sarama's ConsumerGroupHandler): each partition
//     it is handed is claimed from the delivery, and its records are fed to the pipeline
//     until the partition moves on; Partitions lists the claims. Each claim has a context
//     of its own, ended when sarama revokes it (its Messages() closes, which a feed
//     goroutine per claim hears at once) or when the session ends.
//   - flow (runner/flow): the pipeline, with no Kafka in it: batcher → lanes (the model,
//     retried with backoff, unhealthy after UnhealthyAfter failures in a row) →
//     sequencer (consumption order per partition, the tracker stage, encoding).
//   - delivery.go: what a delivery is (claim a partition, take its records, submit
//     finished items, abandon, release the claim), and what both write and count.
//   - atleastonce.go and ledger.go: at-least-once, the default: one async producer; an
//     offset is marked only when it and every earlier one of its partition are
//     acknowledged (the ledger of pending offsets), with a bound on records in flight.
//   - transactional.go: exactly-once: a transactional producer per claimed partition,
//     fencing its previous owner; results, tracker checkpoints and the next offset in
//     one transaction, retried with backoff.
//   - budget.go: the bound on bytes in flight (both deliveries): a claim waits for room
//     before it takes a record.
//   - dedup.go: exactly-once from the camera: a frame whose camera sent its seq already
//     is skipped, and the cameras' seqs move with the partition.
//   - tracking.go: object tracking, the tracker stage (track ids, zone counts) and its
//     checkpoints, which move with their partition. "Track" means this only.
//   - chain.go: a second stage (wire.Deployment.SecondStage) reads the frames its first stage's
//     results name, by offset, with a read-ahead window per partition; the pipeline's
//     flow/chain.go crops and enriches.
//   - agent.go: the runner process: heartbeats, activation (pull, load, run a Worker)
//     and deactivation.
package runner
