package runner_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner"
)

// bigResults is a model whose every result is about n bytes (one detection with a long
// label, shared by all), so that results, not frames, fill the memory.
type bigResults int

func (n bigResults) Run(frames [][]byte) ([]functions.FrameResult, functions.BatchTimings, error) {
	label := strings.Repeat("x", int(n))
	out := make([]functions.FrameResult, len(frames))
	for i := range frames {
		out[i].Detections = []functions.Detection{{Label: label, Score: 0.5}}
	}
	return out, functions.BatchTimings{}, nil
}

// slowDialer is sarama's dialer for a runner whose brokers answer late: every write to a
// broker waits delay first.
type slowDialer struct{ delay time.Duration }

func (d slowDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return slowConn{c, d.delay}, nil
}

type slowConn struct {
	net.Conn
	delay time.Duration
}

func (c slowConn) Write(b []byte) (int, error) {
	time.Sleep(c.delay)
	return c.Conn.Write(b)
}

// memory is what a runner process held: the most bytes in flight its worker counted, and
// the most heap in use it saw.
type memory struct{ BytesInFlight, HeapInuse uint64 }

// writeMemory samples the worker's bytes in flight and the process's heap every 20 ms
// into file, until the process is killed.
func writeMemory(w *runner.Worker, file string) {
	var m memory
	for {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_, high := w.BytesInFlight()
		m.BytesInFlight, m.HeapInuse = uint64(high), max(m.HeapInuse, ms.HeapInuse)
		b, _ := json.Marshal(m)
		_ = os.WriteFile(file+".tmp", b, 0o644)
		_ = os.Rename(file+".tmp", file)
		time.Sleep(20 * time.Millisecond)
	}
}

// peakRSS is a process's resident set high-water mark (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) uint64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb uint64
		if _, err := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// A 2,000-frame backlog whose results (64 KiB each, 125 MiB in all) are drained by a
// runner process whose every request to the broker is held up 30 ms, so that results wait
// for Kafka far longer than the model takes to make them. In both deliveries the runner
// holds at most its bytes-in-flight bound (8 MiB here) and what its pipeline carries
// (about 40 items): the claims wait for room, nothing is dropped, every frame gets its
// result. Before the bound, exactly-once queued every finished result for its next
// transaction.
func TestBacklogWithSlowBrokersStaysWithinTheBytesBound(t *testing.T) {
	const (
		frames      = 2000
		resultBytes = 64 << 10
		bound       = 8 << 20
		// The pipeline's items, each taken as a 1-byte frame and grown to its result: 16
		// in its input (2 × batch × lanes), a batch being filled, 2 × lanes batches
		// between the batcher and the sequencer's output, a record each claim holds.
		slack = 64 * (resultBytes + 1<<10)
	)
	for _, delivery := range []wire.Delivery{wire.ExactlyOnce, wire.AtLeastOnce} {
		t.Run(string(delivery), func(t *testing.T) {
			addrs, st := stream(t, 2)
			d := deployment(st, 4)
			d.Delivery = delivery
			var msgs []*sarama.ProducerMessage
			for i := range frames {
				f := frame(fmt.Sprintf("cam-%d", i%4), uint64(i+1), []byte{byte(i)})
				msgs = append(msgs, kafkaclient.FrameMessage(&f, st.Topic))
			}
			p, err := sarama.NewSyncProducer(addrs, kafkaclient.NewConfig("test-backlog"))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.SendMessages(msgs); err != nil {
				t.Fatal(err)
			}
			p.Close()
			stats := filepath.Join(t.TempDir(), "memory.json")
			cmd := startCrashingRunner(t, helperSpec{Brokers: addrs, Stream: st, Deployment: d, ResultBytes: resultBytes,
				Delay: 30 * time.Millisecond, MaxBytesInFlight: bound, StatsFile: stats})
			kc := kafkaclient.New(addrs, "test-backlog")
			defer kc.Close()
			start := time.Now()
			testkit.CheckFor(t, 4*time.Minute, 200*time.Millisecond, func() error {
				if n, err := kc.StoredRecords(st.ResultsTopic); err != nil || n < frames {
					return fmt.Errorf("%d results (%v)", n, err)
				}
				return nil
			})
			took := time.Since(start)
			time.Sleep(100 * time.Millisecond) // one more sample
			rss := peakRSS(t, cmd.Process.Pid)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			b, err := os.ReadFile(stats)
			if err != nil {
				t.Fatal(err)
			}
			var m memory
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d frames drained in %v; held at most %.1f MiB in flight, heap in use %.1f MiB, peak RSS %.1f MiB",
				delivery, frames, took.Round(time.Second), mib(m.BytesInFlight), mib(m.HeapInuse), mib(rss))
			if m.BytesInFlight > bound+slack {
				t.Errorf("bytes in flight reached %.1f MiB, over the bound %.1f MiB + the pipeline's %.1f MiB", mib(m.BytesInFlight), mib(bound), mib(slack))
			}
			// The heap holds the bytes in flight a few times over (a result, its record being
			// encoded and sent, garbage not yet collected) plus the process's own: far less
			// than the backlog's results. (Before the bound, exactly-once reached 220 MiB of
			// heap and 895 MiB of RSS here, under -race; with it, about 70 and 330.)
			if limit := uint64(128 << 20); m.HeapInuse > limit {
				t.Errorf("heap in use reached %.1f MiB, over %.1f MiB (the backlog's results are %.1f MiB)", mib(m.HeapInuse), mib(limit), mib(frames*resultBytes))
			}
			if limit := uint64(512 << 20); rss > limit { // a -race binary's RSS: its shadow memory included
				t.Errorf("peak RSS %.1f MiB, over %.1f MiB", mib(rss), mib(limit))
			}
		})
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
