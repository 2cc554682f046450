package sinks_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/sinks"
)

// envSinkProcess makes the test binary a sink process (what `diplip sink run` is): it
// runs the control plane's sinks until it is killed.
const envSinkProcess = "DIPLIP_TEST_SINK_PROCESS_NATS"

func TestMain(m *testing.M) {
	if url := os.Getenv(envSinkProcess); url != "" {
		if err := runSinkProcess(url); err != nil {
			fmt.Fprintln(os.Stderr, "sink process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runSinkProcess(natsURL string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := controlplane.OpenWith(ctx, nc, controlplane.Options{})
	if err != nil {
		return err
	}
	bucket, err := controlplane.OpenSinks(ctx, nc, controlplane.Options{})
	if err != nil {
		return err
	}
	brokers, err := kafkaclient.ParseBrokers(os.Getenv(testkit.EnvKafka))
	if err != nil {
		return err
	}
	kc := kafkaclient.New(brokers, "test-sink-process")
	defer kc.Close()
	m, err := sinks.NewManager(sinks.ManagerConfig{Sinks: bucket, Store: store, Kafka: kc,
		Backoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, Poll: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	return m.Run(ctx)
}

func startSinkProcess(t *testing.T, natsURL string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envSinkProcess+"="+natsURL)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestSinkProcessKilled: the process running a sink is SIGKILLed mid-stream and another
// takes over; every event arrives at least once and per camera in order.
func TestSinkProcessKilled(t *testing.T) {
	e := newEnvWith(t, false)
	rcv := newReceiver(t)
	slow := rcv.Config.Handler
	rcv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(15 * time.Millisecond) // so that the kill lands mid-stream
		slow.ServeHTTP(w, r)
	})
	if _, err := e.mgr.Add(context.Background(), api.SinkRequest{Name: "proc", Stream: e.stream, Webhook: rcv.URL, Events: []string{"crossed"}}); err != nil {
		t.Fatal(err)
	}
	first := startSinkProcess(t, e.natsURL)
	cams := []string{"cam1", "cam2", "cam3"}
	const n = 40
	for i := uint64(1); i <= n; i++ {
		for _, c := range cams {
			e.produce(e.result(c, i))
		}
	}
	testkit.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := len(rcv.accepted()); got < 30 {
			return fmt.Errorf("%d events delivered", got)
		}
		return nil
	})
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	before := len(rcv.accepted())
	if before >= len(cams)*n {
		t.Fatalf("all %d events were delivered before the kill; the test did not test a kill", before)
	}
	startSinkProcess(t, e.natsURL)
	checkAllOnce(t, rcv, cams, n)
	// This process runs no sink, yet lists what the sink processes report.
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if st := e.status("proc"); st.State != api.SinkRunning || st.Delivered < int64(len(cams)*n)-int64(before) || st.Lag != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	t.Logf("%d events before the kill", before)
}
