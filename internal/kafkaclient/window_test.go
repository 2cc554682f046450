package kafkaclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
)

// The queries replays stand on: the retention window in time, offset-for-time, a group
// committed at given offsets and read back, reading a whole topic, deleting the group.
func TestWindowOffsetsAndGroups(t *testing.T) {
	ctx := context.Background()
	addrs, topic := testkit.Topic(t, 2)
	cfg := kafkaclient.NewConfig("test-window")
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(addrs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := range 6 { // partition i%2, timestamps base+i minutes
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: int32(i % 2),
			Value: sarama.StringEncoder("x"), Timestamp: base.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	kc := kafkaclient.New(addrs, "test-window")
	defer kc.Close()

	w, err := kc.RetentionWindow(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if !w.First.Equal(base) || !w.Last.Equal(base.Add(5*time.Minute)) || w.End[0] != 3 || w.End[1] != 3 || w.Empty() {
		t.Fatalf("window %+v", w)
	}
	at, err := kc.OffsetsAt(topic, base.Add(150*time.Second)) // records 3 (p1 offset 1), 4 (p0 offset 2), 5 ...
	if err != nil {
		t.Fatal(err)
	}
	if at[0] != 2 || at[1] != 1 {
		t.Fatalf("offsets at +2m30s: %v, want p0 2, p1 1", at)
	}
	late, _ := kc.OffsetsAt(topic, time.Now().Add(time.Hour))
	if late[0] != 3 || late[1] != 3 {
		t.Fatalf("offsets after every record: %v, want the end", late)
	}

	group := "g-" + topic
	if c, err := kc.Committed(group, topic); err != nil || c[0] != 0 || c[1] != 0 {
		t.Fatalf("a group without commits reads from the start: %v, %v", c, err)
	}
	if err := kc.CommitGroupAt(group, topic, at); err != nil {
		t.Fatal(err)
	}
	if c, err := kc.Committed(group, topic); err != nil || c[0] != 2 || c[1] != 1 {
		t.Fatalf("committed %v, %v", c, err)
	}
	if ok, err := kc.GroupExists(group); !ok || err != nil {
		t.Fatalf("group exists: %v %v", ok, err)
	}
	if err := kc.DeleteGroup(group); err != nil {
		t.Fatal(err)
	}
	if ok, _ := kc.GroupExists(group); ok {
		t.Fatal("the group is still there after DeleteGroup")
	}
	if err := kc.DeleteGroup(group); err != nil {
		t.Fatalf("deleting a group that is gone: %v", err)
	}

	var n int
	if err := kc.ReadTopic(ctx, topic, 0, func(*sarama.ConsumerMessage) error { n++; return nil }); err != nil || n != 6 {
		t.Fatalf("ReadTopic read %d records (%v), want 6", n, err)
	}
	if err := kc.ReadTopic(ctx, topic, 5, func(*sarama.ConsumerMessage) error { return nil }); !errors.Is(err, kafkaclient.ErrTooManyRecords) {
		t.Fatalf("ReadTopic beyond its limit: %v", err)
	}
	if ok, err := kc.TopicExists(topic); !ok || err != nil {
		t.Fatalf("TopicExists: %v %v", ok, err)
	}
}
