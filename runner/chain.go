package runner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/metrics"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/runner/flow"
)

// A second stage (wire.Deployment.SecondStage: role after, or a shadow or replay of one)
// is a worker like any other: its group consumes the
// first stage's results topic (the activation's Stream.Topic, partitioned like the frames,
// key = camera), and its pipeline reads each result's frame by the offset the result names
// from Stream.FramesTopic (frameReader), read committed.

// How much a frame read that misses reads ahead: a fetch returns the partition's batches
// from the offset on up to the fetch size (4 MiB for runners) whatever one asks for, and
// the next results name the next frames of the same partition, so what comes back is
// kept (at most this many frames or bytes per partition) instead of fetched again.
const (
	readAheadFrames = 64
	readAheadBytes  = 8 << 20
)

// frameReader reads frames by position for a second stage's pipeline, with a window of
// read-ahead frames per partition. Lanes call it at once.
type frameReader struct {
	kafka *kafkaclient.Client
	topic string
	key   string // the deployment's, for its metrics

	mu     sync.Mutex
	window map[int32][]*sarama.ConsumerMessage // per partition, in offset order (gaps: markers, aborted)
}

var errWindowFull = errors.New("read-ahead window full")

func (r *frameReader) ReadFrame(ctx context.Context, at wire.Source) (string, []wire.Header, []byte, error) {
	m := r.cached(at)
	if m == nil {
		_, end, err := r.kafka.Retained(r.topic, at.Partition)
		if err != nil {
			return "", nil, nil, err
		}
		end = max(min(end, at.Offset+readAheadFrames), at.Offset+1)
		var got []*sarama.ConsumerMessage
		var n int
		err = r.kafka.ReadRange(ctx, r.topic, at.Partition, at.Offset, end, func(m *sarama.ConsumerMessage) error {
			got, n = append(got, m), n+len(m.Value)
			if n >= readAheadBytes {
				return errWindowFull
			}
			return nil
		})
		metrics.ChainFrameReadBytes.WithLabelValues(r.key).Add(float64(n))
		if err != nil && !errors.Is(err, errWindowFull) {
			return "", nil, nil, err
		}
		r.mu.Lock()
		if r.window == nil {
			r.window = map[int32][]*sarama.ConsumerMessage{}
		}
		r.window[at.Partition] = got
		r.mu.Unlock()
		if len(got) == 0 || got[0].Offset != at.Offset {
			return "", nil, nil, fmt.Errorf("%w: partition %d offset %d of %s (expired, or no committed record)", kafkaclient.ErrNoRecord, at.Partition, at.Offset, r.topic)
		}
		m = got[0]
	}
	it := itemOf(m)
	return it.Key, it.Headers, it.Value, nil
}

// cached returns the record at at from its partition's window, or nil.
func (r *frameReader) cached(at wire.Source) *sarama.ConsumerMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.window[at.Partition]
	i := sort.Search(len(w), func(i int) bool { return w[i].Offset >= at.Offset })
	if i < len(w) && w[i].Offset == at.Offset {
		return w[i]
	}
	return nil
}

// afterStage checks a second stage's config and sets its pipeline's frame reader.
func afterStage(cfg WorkerConfig, fc *flow.Config) error {
	if !cfg.Deployment.SecondStage() {
		return nil
	}
	if cfg.Deployment.After == nil || cfg.Stream.FramesTopic == "" {
		return errors.New("runner: a second stage needs its after record and the stream's frames topic")
	}
	if _, ok := cfg.Model.(flow.CropModel); !ok {
		return fmt.Errorf("runner: the model of second stage %s cannot run on crops", cfg.Deployment.Key())
	}
	fc.Frames = &frameReader{kafka: cfg.Kafka, topic: cfg.Stream.FramesTopic, key: cfg.Deployment.Key()}
	return nil
}
