package faults_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/testkit/cluster"
	"github.com/diplip/diplip/internal/testkit/faults"
	"github.com/diplip/diplip/internal/wire"
)

// EnvFaults set to "full" runs TestFaultsFull (go tool task faults).
const EnvFaults = "DIPLIP_FAULTS"

// binary is the diplip binary under test: DIPLIP_FAULTS_BINARY, else built from this tree.
func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("DIPLIP_FAULTS_BINARY"); b != "" {
		return b
	}
	b, err := cluster.BuildBinary(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func run(t *testing.T, plan faults.Plan) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the fault tests run hosts in network namespaces and need root (CI runs as root)")
	}
	plan.Binary = binary(t)
	plan.Dir = t.TempDir()
	if d := os.Getenv("DIPLIP_FAULTS_DIR"); d != "" {
		plan.Dir = filepath.Join(d, t.Name()) // kept after the run, logs in logs/
	}
	plan.FunctionDir = filepath.Join("..", "..", "..", "functions", "examples", "yolox-nano")
	plan.Frame = testkit.Media(t, "messi5.jpg")
	plan.Logf = t.Logf
	r, events, err := plan.Run(context.Background())
	if err != nil {
		t.Errorf("schedule: %v", err)
	}
	_ = events // logged as they are read by Plan.Run
	t.Log(r.Details())
	t.Log(r.Line())
	if f := os.Getenv("DIPLIP_FAULTS_REPORT"); f != "" { // one line per mode
		out, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = out.WriteString(r.Line() + "\n")
			err = errors.Join(err, out.Close())
		}
		if err != nil {
			t.Error(err)
		}
	}
	if r.Acknowledged == 0 {
		t.Fatal("no frame was acknowledged")
	}
	if r.Lost != 0 {
		t.Errorf("%d acknowledged frames have no result (first: %v); logs in %s", r.Lost, r.LostFrames[:min(10, len(r.LostFrames))], plan.Dir)
	}
	if r.ControlPlane != nil {
		t.Errorf("control plane after the schedule: %v", r.ControlPlane)
	}
	if len(r.Missed) > 0 {
		t.Errorf("missed: %s; logs in %s", strings.Join(r.Missed, "; "), plan.Dir)
	}
	if t.Failed() && os.Getenv("DIPLIP_FAULTS_DIR") == "" {
		t.Logf("the logs go with the test's temp dir; set DIPLIP_FAULTS_DIR=DIR to keep them")
	}
}

// The short schedule, part of the suite, in both delivery modes while 4 cameras push 5 fps
// each and zones are written through the gateways: a broker SIGKILLed and restarted and
// a runner SIGKILLed mid-batch; then exactly-once has a runner SIGSTOPped past its
// session timeout (the zombie its transactions must fence), at-least-once a gateway
// restarted, a NATS server SIGKILLed and a runner cut off from the brokers past its
// session timeout. Every run loses nothing, infers every frame and keeps its control
// plane; exactly-once has no runner duplicate (Report.Misses). Stalls and at-least-once
// duplicates are targets of the full schedule only: two busy cores make them noisy here.
func TestFaultsShort(t *testing.T) {
	t.Run(string(wire.ExactlyOnce), func(t *testing.T) {
		run(t, faults.Plan{
			Mode: wire.ExactlyOnce, Gateways: 2, Runners: 2, Cameras: 4, FPS: 5, Partitions: 4, Min: 2, Max: 2,
			Drain: 60 * time.Second,
			Schedule: faults.Schedule{Name: "short", Length: 62 * time.Second, Steps: []faults.Step{
				{At: 5 * time.Second, Fault: faults.KillBroker, For: 15 * time.Second},
				{At: 22 * time.Second, Fault: faults.KillRunner, For: 5 * time.Second},
				// After the group settled from the SIGKILL (session timeout 10 s, rejoin).
				{At: 40 * time.Second, Fault: faults.PauseRunner, For: 14 * time.Second},
			}},
		})
	})
	t.Run(string(wire.AtLeastOnce), func(t *testing.T) { runShortAtLeastOnce(t) })
}

func runShortAtLeastOnce(t *testing.T) {
	run(t, faults.Plan{
		Gateways: 2, Runners: 2, Cameras: 4, FPS: 5, Partitions: 4, Min: 2, Max: 2,
		Drain: 60 * time.Second,
		Schedule: faults.Schedule{Name: "short", Length: 72 * time.Second, Steps: []faults.Step{
			{At: 5 * time.Second, Fault: faults.KillBroker, For: 15 * time.Second},
			{At: 25 * time.Second, Fault: faults.KillRunner, For: 5 * time.Second},
			{At: 38 * time.Second, Fault: faults.RestartGateway, Target: 1, For: time.Second},
			{At: 44 * time.Second, Fault: faults.KillNATS, Target: 0, For: 8 * time.Second},
			{At: 56 * time.Second, Fault: faults.CutRunner, For: 12 * time.Second},
		}},
	})
}

// The whole schedule of issue #14 in both delivery modes: `go tool task faults`
// (DIPLIP_FAULTS=full). It fails, naming the miss, on a loss, a frame never inferred, a
// runner duplicate in exactly-once, at-least-once duplicates of 1 % of the acknowledged
// frames or more, or a camera's results stalled over 15 s.
func TestFaultsFull(t *testing.T) {
	if os.Getenv(EnvFaults) != "full" {
		t.Skipf("the full fault schedule runs with %s=full (go tool task faults)", EnvFaults)
	}
	for _, mode := range []wire.Delivery{wire.AtLeastOnce, wire.ExactlyOnce} {
		t.Run(string(mode), func(t *testing.T) { runFull(t, mode) })
	}
}

func runFull(t *testing.T, mode wire.Delivery) {
	run(t, faults.Plan{
		Mode: mode, Gateways: 2, Runners: 3, Cameras: 8, FPS: 3, Partitions: 8, Min: 2, Max: 2,
		Drain:   120 * time.Second,
		Targets: faults.Targets{MaxDuplicateShare: 0.01, MaxStall: 15 * time.Second},
		Schedule: faults.Schedule{Name: "full", Length: 215 * time.Second, Steps: []faults.Step{
			{At: 10 * time.Second, Fault: faults.KillBroker, For: 15 * time.Second},
			{At: 40 * time.Second, Fault: faults.KillNATS, Target: 0, For: 10 * time.Second},
			{At: 70 * time.Second, Fault: faults.KillRunner, For: 10 * time.Second},
			{At: 100 * time.Second, Fault: faults.RestartGateway, Target: 1, For: time.Second},
			{At: 125 * time.Second, Fault: faults.CutRunner, For: 20 * time.Second},
			{At: 170 * time.Second, Fault: faults.PauseRunner, For: 15 * time.Second},
		}},
	})
}
