package kafkanode_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/engines/kafkanode"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
)

func start(t *testing.T, cfg kafkanode.Config) *kafkanode.Cluster {
	t.Helper()
	cfg.FastStart = true
	cfg.StopTimeout = 10 * time.Second // test data need no careful shutdown
	if cfg.HeapMB == 0 {
		cfg.HeapMB = 256
	}
	c, err := kafkanode.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

func produce(t *testing.T, addrs []string, topic string, values ...string) {
	t.Helper()
	cfg := kafkaclient.NewConfig("test-producer")
	// Long enough to ride out a leader election after a node is killed.
	cfg.Producer.Retry.Max, cfg.Producer.Retry.Backoff = 40, 250*time.Millisecond
	cfg.Metadata.Retry.Max, cfg.Metadata.Retry.Backoff = 40, 250*time.Millisecond
	p, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, v := range values {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatalf("producing %q: %v", v, err)
		}
	}
}

// consumeAll reads partition 0 of topic from the oldest offset until it has n records.
func consumeAll(t *testing.T, addrs []string, topic string, n int) []string {
	t.Helper()
	c, err := sarama.NewConsumer(addrs, kafkaclient.NewConfig("test-consumer"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got []string
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case m := <-pc.Messages():
			got = append(got, string(m.Value))
		case <-timeout:
			t.Fatalf("got %d of %d records: %v", len(got), n, got)
		}
	}
	return got
}

func createTopic(t *testing.T, addrs []string, topic string, rf int16) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(addrs, kafkaclient.NewConfig("test-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: rf}, false); err != nil {
		t.Fatal(err)
	}
}

// A restart on the same directory keeps the cluster id, the ports and the records:
// `diplip up` relies on it to bring streams back.
func TestRestartOnSameDirKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	c := start(t, kafkanode.Config{Dir: dir})
	createTopic(t, c.Addrs(), "kept", 1)
	produce(t, c.Addrs(), "kept", "a", "b")
	first := c.Addrs()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	c = start(t, kafkanode.Config{Dir: dir})
	if !slices.Equal(c.Addrs(), first) {
		t.Errorf("addresses changed across a restart: %v then %v", first, c.Addrs())
	}
	if got := consumeAll(t, c.Addrs(), "kept", 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after restart read %v, want [a b]", got)
	}

	if _, err := kafkanode.Start(context.Background(), kafkanode.Config{Dir: dir, Nodes: 3}); err == nil ||
		!strings.Contains(err.Error(), "1-node cluster") {
		t.Fatalf("starting 3 nodes on a 1-node dir: err = %v, want a clear refusal", err)
	}
}

// The three-node mode is what fault tests stand on: with replication 3 and
// min.insync.replicas 2, losing one node loses no acknowledged record and does not stop
// producers; the node comes back on its own data.
func TestThreeNodesSurviveLosingOne(t *testing.T) {
	c := start(t, kafkanode.Config{Dir: t.TempDir(), Nodes: 3})
	createTopic(t, c.Addrs(), "replicated", 3)
	produce(t, c.Addrs(), "replicated", "1", "2", "3")

	if err := c.KillNode(2); err != nil {
		t.Fatal(err)
	}
	if c.PID(2) != 0 {
		t.Fatal("killed node still has a pid")
	}
	produce(t, c.Addrs()[:2], "replicated", "4", "5")
	// A broker down is still one of the cluster's: transactions (replication 3) are not
	// refused while it restarts. (Right after a SIGKILL the cluster may still list it as
	// live; CheckTransactions counts every broker that holds a replica either way.)
	kc := kafkaclient.New(c.Addrs()[:2], "test-admin")
	if err := kc.CheckTransactions(); err != nil {
		t.Errorf("with one broker of three down: %v", err)
	}
	kc.Close()

	if err := c.RestartNode(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	produce(t, c.Addrs(), "replicated", "6")
	if got := consumeAll(t, c.Addrs(), "replicated", 6); !slices.Equal(got, []string{"1", "2", "3", "4", "5", "6"}) {
		t.Fatalf("read %v, want 1..6 in order", got)
	}
}

// TestNoOrphanWhenOwnerDies starts a broker in a child process that then dies without any
// clean-up (SIGKILL); the broker's JVM must go with it.
func TestNoOrphanWhenOwnerDies(t *testing.T) {
	if os.Getenv("KAFKANODE_OWNER_DIR") != "" {
		return // running as the owner child; see TestOwnerChild
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOwnerChild$", "-test.v")
	cmd.Env = append(os.Environ(), "KAFKANODE_OWNER_DIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var jvm int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "JVM_PID="); ok {
			jvm, _ = strconv.Atoi(v)
			break
		}
	}
	if jvm == 0 {
		t.Fatal("the owner child never reported its broker's pid")
	}
	if !slices.Contains(kafkanode.BrokerPIDs(), jvm) {
		t.Fatalf("broker pid %d is not among the marked JVMs %v", jvm, kafkanode.BrokerPIDs())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testkit.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if slices.Contains(kafkanode.BrokerPIDs(), jvm) {
			return fmt.Errorf("broker JVM %d outlived its killed owner", jvm)
		}
		return nil
	})
}

// TestOwnerChild is the child half of TestNoOrphanWhenOwnerDies.
func TestOwnerChild(t *testing.T) {
	dir := os.Getenv("KAFKANODE_OWNER_DIR")
	if dir == "" {
		return
	}
	c, err := kafkanode.Start(context.Background(), kafkanode.Config{Dir: dir, FastStart: true, HeapMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("JVM_PID=%d\n", c.PID(0))
	select {} // wait to be killed
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  kafkanode.Config
		want string
	}{
		{"no dir", kafkanode.Config{}, "Dir is required"},
		{"two nodes", kafkanode.Config{Dir: t.TempDir(), Nodes: 2}, "want 1 or 3"},
		{"tiny heap", kafkanode.Config{Dir: t.TempDir(), HeapMB: 16}, "too small"},
		{"no java", kafkanode.Config{Dir: t.TempDir(), Java: "/nonexistent/java"}, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kafkanode.Start(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
