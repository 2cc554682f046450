package rollout

import (
	"context"

	"github.com/IBM/sarama"

	"github.com/diplip/diplip/internal/wire"
)

// ForgetTrackerState writes a tombstone for camera to the state topic of every tracking
// deployment on stream, so a removed camera's tracks and counts are deleted when the
// topic is compacted (and a runner that claims the partition starts the camera afresh).
// Failures are logged: the camera is gone either way.
func (s *Service) ForgetTrackerState(ctx context.Context, stream, camera string) {
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		s.log.Warn("could not list the deployments whose tracker state a removed camera leaves", "camera", camera, "err", err)
		return
	}
	for _, d := range deps {
		if d.Stream != stream || d.Track == nil {
			continue
		}
		if _, _, err := s.cfg.Producer.SendMessage(&sarama.ProducerMessage{Topic: wire.StateTopic(d), Key: sarama.StringEncoder(camera)}); err != nil {
			s.log.Warn("could not delete a removed camera's tracker state", "camera", camera, "deployment", d.Key(), "err", err)
		}
	}
}
