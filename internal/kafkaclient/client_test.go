package kafkaclient_test

import (
	"testing"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
)

// Lag maths where peers go wrong: a group that never committed, records deleted by
// retention, and a commit ahead of the end offset read.
func TestLag(t *testing.T) {
	addrs, topic := testkit.Topic(t, 2)
	cfg := kafkaclient.NewConfig("test-lag")
	cfg.Producer.Partitioner = sarama.NewManualPartitioner // five records in each partition
	client, err := sarama.NewClient(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i := range 10 {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: int32(i % 2), Value: sarama.StringEncoder("x")}); err != nil {
			t.Fatal(err)
		}
	}
	kc := kafkaclient.New(addrs, "test-lag")
	defer kc.Close()
	ends := map[int32]int64{0: 5, 1: 5}
	group := "g-" + topic
	lag := func() int64 {
		t.Helper()
		l, err := kc.Lag(group, topic)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if got := lag(); got != 10 {
		t.Fatalf("a group that never committed: lag %d, want all 10 records", got)
	}

	// Retention deleted the start of partition 0: those records are not lag any more.
	if err := admin.DeleteRecords(topic, map[int32]int64{0: 2}); err != nil {
		t.Fatal(err)
	}
	if got := lag(); got != 8 {
		t.Fatalf("after deleting 2 records: lag %d, want 8", got)
	}

	// Commit partition 1 to its end and partition 0 past its end (a stale end read).
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	if err != nil {
		t.Fatal(err)
	}
	for p, off := range map[int32]int64{0: ends[0] + 5, 1: ends[1]} {
		pom, err := om.ManagePartition(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		pom.MarkOffset(off, "")
		pom.Close()
	}
	om.Commit()
	om.Close()
	if got := lag(); got != 0 {
		t.Fatalf("with commits at and past the end: lag %d, want 0 (never negative)", got)
	}
}
