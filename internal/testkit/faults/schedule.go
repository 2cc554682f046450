// Package faults runs a fault schedule against a cluster (internal/testkit/cluster)
// while cameras push frames, and counts every frame: each one a camera got 2xx for must
// have a result on the results topic. It reports lost frames, duplicates by result id,
// results of pushes the camera gave up on, the longest stall of each camera's results,
// and whether the control plane came through unchanged.
//
// The schedule is data (a list of timed Steps); the same schedule can be run in another
// delivery mode by reading the results with another Checker.Isolation. Product code
// never imports this package.
package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/testkit/cluster"
	"github.com/diplip/diplip/internal/wire"
)

// Fault is one kind of step.
type Fault string

const (
	// KillBroker SIGKILLs the broker that leads the most frame partitions and restarts it
	// after For.
	KillBroker Fault = "kill-broker"
	// KillNATS SIGKILLs the NATS server gateway Target is connected to and restarts it
	// after For.
	KillNATS Fault = "kill-nats"
	// KillRunner SIGKILLs an active runner (under steady load: mid-batch) and starts it
	// again after For.
	KillRunner Fault = "kill-runner"
	// RestartGateway stops gateway Target with SIGTERM and starts it again on the same
	// state after For.
	RestartGateway Fault = "restart-gateway"
	// CutRunner cuts an active runner off from every broker for For, then heals: its
	// partitions move to the others.
	CutRunner Fault = "cut-runner"
	// PauseRunner SIGSTOPs an active runner for For (longer than its group session
	// timeout makes it a zombie that wakes up holding results of partitions it lost),
	// then SIGCONTs it.
	PauseRunner Fault = "pause-runner"
)

// Step is one fault at a time after the schedule's start.
type Step struct {
	At     time.Duration
	Fault  Fault
	For    time.Duration // how long until the fault is undone
	Target int           // the gateway, for KillNATS and RestartGateway
}

// Schedule is a list of steps and how long the pushers run.
type Schedule struct {
	Name   string
	Steps  []Step
	Length time.Duration
}

// Event is something the schedule did, at a time after its start.
type Event struct {
	At   time.Duration
	What string
}

func (e Event) String() string { return fmt.Sprintf("t+%5.1fs %s", e.At.Seconds(), e.What) }

// Target is what the steps act on.
type Target struct {
	Cluster    *cluster.Cluster
	FrameTopic string
	Deployment string // its key, to find its active runners
}

// Run runs every step at its time, each in a goroutine of its own (steps overlap), and
// returns once all are done and undone, with what happened. A step that fails is an
// error; the others still run.
func (s Schedule) Run(ctx context.Context, t Target) ([]Event, error) {
	start := time.Now()
	var mu sync.Mutex
	var events []Event
	var errs []error
	logf := func(format string, args ...any) {
		mu.Lock()
		events = append(events, Event{time.Since(start), fmt.Sprintf(format, args...)})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, st := range s.Steps {
		wg.Go(func() {
			if !sleepUntil(ctx, start.Add(st.At)) {
				return
			}
			if err := st.run(ctx, t, logf); err != nil {
				logf("%s failed: %v", st.Fault, err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s at %v: %w", st.Fault, st.At, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(events, func(a, b Event) int { return int(a.At - b.At) })
	return events, errors.Join(errs...)
}

func (st Step) run(ctx context.Context, t Target, logf func(string, ...any)) error {
	c := t.Cluster
	hold := func() { sleepUntil(context.WithoutCancel(ctx), time.Now().Add(st.For)) } // undo even when ctx ends
	switch st.Fault {
	case KillBroker:
		i, n, err := c.BrokerLeadingMost(t.FrameTopic)
		if err != nil {
			return err
		}
		pid := c.Kafka().PID(i)
		if err := c.Kafka().KillNode(i); err != nil {
			return err
		}
		logf("SIGKILL broker %d (pid %d), leader of %d frame partitions", i, pid, n)
		hold()
		if err := c.Kafka().RestartNode(context.WithoutCancel(ctx), i); err != nil {
			return err
		}
		logf("broker %d restarted", i)
	case KillNATS:
		i := c.NATSOf(fmt.Sprintf("gateway-%d", st.Target))
		if i < 0 {
			return fmt.Errorf("gateway-%d has no NATS connection", st.Target)
		}
		pid := c.NATSPID(i)
		c.KillNATS(i)
		logf("SIGKILL nats-%d (pid %d), gateway-%d's server", i, pid, st.Target)
		hold()
		if err := c.RestartNATS(context.WithoutCancel(ctx), i); err != nil {
			return err
		}
		logf("nats-%d restarted", i)
	case RestartGateway:
		c.StopGateway(st.Target)
		logf("gateway-%d stopped (SIGTERM)", st.Target)
		hold()
		if err := c.StartGateway(context.WithoutCancel(ctx), st.Target); err != nil {
			return err
		}
		logf("gateway-%d started again, ready", st.Target)
	case KillRunner, CutRunner, PauseRunner:
		k, err := activeRunner(ctx, c, t.Deployment)
		if err != nil {
			return err
		}
		id := c.RunnerID(k)
		switch st.Fault {
		case KillRunner:
			pid := c.RunnerPID(k)
			c.KillRunner(k)
			logf("SIGKILL %s (pid %d)", id, pid)
			hold()
			if err := c.StartRunner(k); err != nil {
				return err
			}
			logf("%s started again", id)
		case CutRunner:
			if err := c.Cut(id, "kafka"); err != nil {
				return err
			}
			logf("%s cut off from the brokers", id)
			hold()
			if err := c.Heal(id, "kafka"); err != nil {
				return err
			}
			logf("%s reconnected to the brokers", id)
		case PauseRunner:
			if err := c.PauseRunner(k); err != nil {
				return err
			}
			logf("SIGSTOP %s", id)
			hold()
			if err := c.ResumeRunner(k); err != nil {
				return err
			}
			logf("SIGCONT %s", id)
		}
	default:
		return fmt.Errorf("unknown fault %q", st.Fault)
	}
	return nil
}

// activeRunner finds the runner of deployment that holds the most partitions (a fault
// aimed at a runner with nothing to lose tests nothing), asking each gateway in turn
// (one may be down), waiting up to 30 s for one that holds any.
func activeRunner(ctx context.Context, c *cluster.Cluster, deployment string) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		for j := range c.Gateways() {
			api, err := client.New(c.GatewayURL(j), "")
			if err != nil {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			res, err := api.Resources(rctx)
			cancel()
			if err != nil {
				continue
			}
			best, most := -1, 0
			for _, r := range res.Runners {
				if r.State != string(wire.StateActive) || r.Deployment != deployment || len(r.Partitions) <= most {
					continue
				}
				if k := c.RunnerIndex(r.ID); k >= 0 && c.RunnerPID(k) != 0 {
					best, most = k, len(r.Partitions)
				}
			}
			if best >= 0 {
				return best, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return -1, fmt.Errorf("no runner of %s holds a partition", deployment)
		}
		sleepUntil(ctx, time.Now().Add(500*time.Millisecond))
	}
}
