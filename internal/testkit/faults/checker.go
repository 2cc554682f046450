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
	id     string
	status string
	at     time.Time // the record's timestamp (when the runner produced it)
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
	c.results[k] = append(c.results[k], seen{id: r.ID, status: r.Status, at: at})
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
			if len(got) == 0 {
				r.Lost++
				r.LostFrames = append(r.LostFrames, k)
				break
			}
			r.WithResults++
			switch best := bestStatus(got); best {
			case wire.StatusOK:
				r.OK++
			case wire.StatusSkipped:
				r.Skipped++
				r.NotInferred = append(r.NotInferred, k)
			default:
				r.Errors++
				r.NotInferred = append(r.NotInferred, k)
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
	slices.SortFunc(r.LostFrames, compareKeys)
	slices.SortFunc(r.NotInferred, compareKeys)
	return r
}

func compareKeys(a, b FrameKey) int {
	if c := strings.Compare(a.Camera, b.Camera); c != 0 {
		return c
	}
	return int(a.Seq) - int(b.Seq)
}

// bestStatus is a frame's outcome over its results: ok if any result is (a redelivered
// frame may have been skipped once and inferred later), else skipped, else error.
func bestStatus(got []seen) string {
	best := wire.StatusError
	for _, s := range got {
		switch s.status {
		case wire.StatusOK:
			return wire.StatusOK
		case wire.StatusSkipped:
			best = wire.StatusSkipped
		}
	}
	return best
}

// Targets are what a run must meet beyond the rules every run keeps (Misses).
type Targets struct {
	// AllowSkips: the deployment uses the live policy, whose skipped results are by design.
	AllowSkips bool
	// MaxDuplicateShare bounds at-least-once duplicates by result id, as a share of the
	// acknowledged frames (0.01: under 1 %); 0 does not check.
	MaxDuplicateShare float64
	// MaxStall bounds the longest gap between a camera's results; 0 does not check.
	MaxStall time.Duration
}

// Misses names every target the run missed. Every run must lose nothing, infer every
// acknowledged frame (an error result of a good frame is a failure; a skip too, unless
// the targets allow skips), keep its control plane, and in exactly-once mode have no
// runner duplicate.
func (r Report) Misses(mode wire.Delivery, t Targets) []string {
	var m []string
	if r.Lost > 0 {
		m = append(m, fmt.Sprintf("%d acknowledged frames lost", r.Lost))
	}
	if r.Errors > 0 {
		m = append(m, fmt.Sprintf("%d frames with only error results", r.Errors))
	}
	if r.Skipped > 0 && !t.AllowSkips {
		m = append(m, fmt.Sprintf("%d frames only skipped, with no live policy in the schedule", r.Skipped))
	}
	if mode.Transactional() && r.Redone > 0 {
		m = append(m, fmt.Sprintf("%d runner duplicates in exactly-once", r.Redone))
	}
	if !mode.Transactional() && t.MaxDuplicateShare > 0 && r.Acknowledged > 0 {
		if share := float64(r.Duplicates) / float64(r.Acknowledged); share >= t.MaxDuplicateShare {
			m = append(m, fmt.Sprintf("duplicates %.2f %% ≥ %.2f %%", 100*share, 100*t.MaxDuplicateShare))
		}
	}
	if t.MaxStall > 0 && r.LongestStall > t.MaxStall {
		m = append(m, fmt.Sprintf("longest stall %.1f s > %.0f s", r.LongestStall.Seconds(), t.MaxStall.Seconds()))
	}
	if r.ControlPlane != nil {
		m = append(m, "control plane not intact")
	}
	return m
}

// Report is what a run of the schedule found.
type Report struct {
	Mode         string
	Acknowledged int // frames a pusher got 2xx for
	WithResults  int // of those, frames with at least one result...
	// ...counted by their best result: OK (inferred), Skipped (live policy) or Errors.
	OK, Skipped, Errors int
	NotInferred         []FrameKey // acknowledged frames with results, none of them ok
	Lost                int        // acknowledged frames without a result: must be 0
	LostFrames          []FrameKey
	Duplicates          int // result records beyond the first for the same result id
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
	ControlPlane      error // nil: every stream, deployment, camera and zone present and unchanged
	// Missed names the targets the run missed (Misses); empty: within every target.
	Missed []string
}

// Line is the one-line summary `go tool task faults` ends with.
func (r Report) Line() string {
	cp := "control plane intact"
	if r.ControlPlane != nil {
		cp = "control plane NOT intact: " + r.ControlPlane.Error()
	}
	line := fmt.Sprintf("faults: %s: %d acknowledged, %d with results (%d ok, %d skipped, %d error), %d lost, %d duplicates (%d of one frame record), longest stall %.1f s, %s",
		r.Mode, r.Acknowledged, r.WithResults, r.OK, r.Skipped, r.Errors, r.Lost, r.Duplicates, r.Redone, r.LongestStall.Seconds(), cp)
	if len(r.Missed) > 0 {
		line += "; MISSED: " + strings.Join(r.Missed, "; ")
	}
	return line
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
	if len(r.NotInferred) > 0 {
		fmt.Fprintf(&b, "frames never inferred (first 20): %v\n", r.NotInferred[:min(20, len(r.NotInferred))])
	}
	return b.String()
}
