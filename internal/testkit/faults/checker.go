package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// Checker reads a results topic from its start with a plain sarama consumer, as any
// Kafka tool would, and keeps what it needs to count every frame.
type Checker struct {
	Brokers []string
	Topic   string
	// Isolation is the consumer's isolation level: read_uncommitted (the default, what
	// at-least-once delivery gives readers) or read_committed (exactly-once results).
	Isolation sarama.IsolationLevel

	mu      sync.Mutex
	results map[FrameKey][]seen // by frame
	ids     map[string]int      // result id → records
	sources map[wire.Source]int // the frame record a result is for → results
	status  map[string]int
	records int
}

type seen struct {
	id string
	at time.Time // the record's timestamp (when the runner produced it)
}

// Run consumes every partition until ctx ends. A broker loss only pauses it (sarama
// follows the new leaders).
func (c *Checker) Run(ctx context.Context) error {
	cfg := kafkaclient.NewConfig("diplip-faults-checker")
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.IsolationLevel = c.Isolation
	cfg.Consumer.Return.Errors = false
	cfg.Metadata.Retry.Max = 20
	cfg.Metadata.Retry.Backoff = 500 * time.Millisecond
	consumer, err := sarama.NewConsumer(c.Brokers, cfg)
	if err != nil {
		return fmt.Errorf("faults: checker: %w", err)
	}
	defer consumer.Close()
	parts, err := consumer.Partitions(c.Topic)
	if err != nil {
		return fmt.Errorf("faults: checker: partitions of %s: %w", c.Topic, err)
	}
	c.mu.Lock()
	c.results, c.ids, c.status, c.sources = map[FrameKey][]seen{}, map[string]int{}, map[string]int{}, map[wire.Source]int{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(c.Topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("faults: checker: %s/%d: %w", c.Topic, p, err)
		}
		wg.Go(func() {
			defer pc.Close()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-pc.Messages():
					c.add(m)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

func (c *Checker) add(m *sarama.ConsumerMessage) {
	var r wire.Result
	if err := json.Unmarshal(m.Value, &r); err != nil {
		return
	}
	at := m.Timestamp
	if at.Year() < 2000 {
		at = time.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records++
	c.status[r.Status]++
	c.ids[r.ID]++
	c.sources[r.Source]++
	k := FrameKey{r.Camera, r.Seq}
	c.results[k] = append(c.results[k], seen{id: r.ID, at: at})
}

// Missing counts the acknowledged frames of pushes that have no result yet.
func (c *Checker) Missing(pushes map[FrameKey]Push) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, p := range pushes {
		if p.Acked && len(c.results[k]) == 0 {
			n++
		}
	}
	return n
}

// Report counts every frame of pushes against the results read so far.
func (c *Checker) Report(mode string, pushes map[FrameKey]Push) Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Report{Mode: mode, Statuses: map[string]int{}, Stalls: map[string]time.Duration{}}
	for s, n := range c.status {
		r.Statuses[s] = n
	}
	r.Records = c.records
	for _, n := range c.ids {
		if n > 1 {
			r.Duplicates += n - 1
		}
	}
	for _, n := range c.sources {
		if n > 1 {
			r.Redone += n - 1
		}
	}
	times := map[string][]time.Time{}
	for k, p := range pushes {
		got := c.results[k]
		switch {
		case p.Acked:
			r.Acknowledged++
			if len(got) > 0 {
				r.WithResults++
			} else {
				r.Lost++
				r.LostFrames = append(r.LostFrames, k)
			}
		default:
			r.Failed++
			if len(got) > 0 {
				r.FailedWithResults++
			}
		}
		if p.Attempts > 1 {
			r.Retried++
		}
		for _, s := range got {
			times[k.Camera] = append(times[k.Camera], s.at)
		}
	}
	for cam, ts := range times {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		var longest time.Duration
		for i := 1; i < len(ts); i++ {
			longest = max(longest, ts[i].Sub(ts[i-1]))
		}
		r.Stalls[cam] = longest
		r.LongestStall = max(r.LongestStall, longest)
	}
	slices.SortFunc(r.LostFrames, func(a, b FrameKey) int {
		if c := strings.Compare(a.Camera, b.Camera); c != 0 {
			return c
		}
		return int(a.Seq) - int(b.Seq)
	})
	return r
}

// Report is what a run of the schedule found.
type Report struct {
	Mode         string
	Acknowledged int // frames a pusher got 2xx for
	WithResults  int // of those, frames with at least one result
	Lost         int // acknowledged frames without a result: must be 0
	LostFrames   []FrameKey
	Duplicates   int // result records beyond the first for the same result id
	// Redone counts result records beyond the first for the same frame record (partition
	// and offset): the runners' duplicates. Duplicates minus Redone are frames stored
	// twice by a push the camera retried (ingest is at-least-once in both modes).
	Redone            int
	Records           int // result records read
	Failed            int // frames whose push the camera gave up on
	FailedWithResults int // of those, frames that got a result anyway (allowed)
	Retried           int // frames pushed more than once
	Statuses          map[string]int
	Stalls            map[string]time.Duration // per camera: the longest gap between its results
	LongestStall      time.Duration
	ControlPlane      error // nil: every stream, deployment and camera present and unchanged
}

// Line is the one-line summary `go tool task faults` ends with.
func (r Report) Line() string {
	cp := "control plane intact"
	if r.ControlPlane != nil {
		cp = "control plane NOT intact: " + r.ControlPlane.Error()
	}
	return fmt.Sprintf("faults: %s: %d acknowledged, %d with results, %d lost, %d duplicates (%d of one frame record), longest stall %.1f s, %s",
		r.Mode, r.Acknowledged, r.WithResults, r.Lost, r.Duplicates, r.Redone, r.LongestStall.Seconds(), cp)
}

// Details says the rest: duplicates as a share of frames, failed pushes, statuses,
// every camera's stall, the first lost frames.
func (r Report) Details() string {
	var b strings.Builder
	share := 0.0
	if r.Acknowledged > 0 {
		share = 100 * float64(r.Duplicates) / float64(r.Acknowledged)
	}
	fmt.Fprintf(&b, "duplicates %.2f %% of acknowledged frames (%d of the same frame record, %d of frames stored twice by a retried push); %d result records; statuses %v\n",
		share, r.Redone, r.Duplicates-r.Redone, r.Records, r.Statuses)
	fmt.Fprintf(&b, "pushes given up: %d (%d of them with a result anyway); frames pushed more than once: %d\n", r.Failed, r.FailedWithResults, r.Retried)
	cams := make([]string, 0, len(r.Stalls))
	for c := range r.Stalls {
		cams = append(cams, c)
	}
	slices.Sort(cams)
	b.WriteString("longest stall per camera:")
	for _, c := range cams {
		fmt.Fprintf(&b, " %s %.1fs", c, r.Stalls[c].Seconds())
	}
	b.WriteString("\n")
	if len(r.LostFrames) > 0 {
		fmt.Fprintf(&b, "lost frames (first 20): %v\n", r.LostFrames[:min(20, len(r.LostFrames))])
	}
	return b.String()
}
