package kafkaclient_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
)

// Records with one key land in one partition and come back in the order produced.
func TestProduceConsumeInOrder(t *testing.T) {
	addrs, topic := testkit.Topic(t, 3)
	p, err := sarama.NewSyncProducer(addrs, kafkaclient.NewConfig("test-producer"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 200
	var part int32 = -1
	for i := range n {
		pt, _, err := p.SendMessage(&sarama.ProducerMessage{
			Topic: topic, Key: sarama.StringEncoder("camera-1"), Value: sarama.StringEncoder(fmt.Sprint(i)),
		})
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if part != -1 && pt != part {
			t.Fatalf("record %d went to partition %d, earlier ones to %d: one key must keep one partition", i, pt, part)
		}
		part = pt
	}

	c, err := sarama.NewConsumer(addrs, kafkaclient.NewConfig("test-consumer"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, part, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for i := range n {
		select {
		case m := <-pc.Messages():
			if got := string(m.Value); got != fmt.Sprint(i) {
				t.Fatalf("record %d read back as %q: out of order", i, got)
			}
			if string(m.Key) != "camera-1" {
				t.Fatalf("record %d key %q", i, m.Key)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("read %d of %d records", i, n)
		}
	}
}

// groupMember records which partitions the group protocol handed it. With the
// cooperative protocol Setup runs only on the first join, so claims are tracked where
// they start and end: in ConsumeClaim.
type groupMember struct {
	mu      sync.Mutex
	claimed map[int32]bool
}

func (g *groupMember) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (g *groupMember) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (g *groupMember) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	g.mu.Lock()
	g.claimed[c.Partition()] = true
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.claimed, c.Partition())
		g.mu.Unlock()
	}()
	for m := range c.Messages() {
		s.MarkMessage(m, "")
	}
	return nil
}
func (g *groupMember) partitions() []int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Sorted(maps.Keys(g.claimed))
}

// Two members of one consumer group split the topic's partitions between them, with the
// cooperative-sticky strategy the runners use, when the second joins after the first.
func TestConsumerGroupSplitsPartitions(t *testing.T) {
	addrs, topic := testkit.Topic(t, 4)
	group := "g-" + topic
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var members []*groupMember
	var wg sync.WaitGroup
	for i := range 2 {
		cfg := kafkaclient.NewConfig(fmt.Sprintf("member-%d", i))
		cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
		cg, err := sarama.NewConsumerGroup(addrs, group, cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &groupMember{claimed: map[int32]bool{}}
		members = append(members, m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cg.Close()
			for ctx.Err() == nil {
				if err := cg.Consume(ctx, []string{topic}, m); err != nil && ctx.Err() == nil {
					t.Errorf("member %d: %v", i, err)
					return
				}
			}
		}()
		if i == 0 {
			// The second joins a group the first already owns entirely: the cooperative
			// protocol must take two partitions away from it, not start over.
			testkit.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
				if p := m.partitions(); len(p) != 4 {
					return fmt.Errorf("the first member holds %v", p)
				}
				return nil
			})
		}
	}
	testkit.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		a, b := members[0].partitions(), members[1].partitions()
		if len(a) != 2 || len(b) != 2 {
			return fmt.Errorf("members hold %v and %v; want 2 partitions each", a, b)
		}
		all := slices.Sorted(slices.Values(append(slices.Clone(a), b...)))
		if !slices.Equal(all, []int32{0, 1, 2, 3}) {
			return fmt.Errorf("members hold %v and %v; want all of 0..3 exactly once", a, b)
		}
		return nil
	})
	cancel()
	wg.Wait()
}
