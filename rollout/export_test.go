package rollout

// MaxPending is the bound of a diff's waiting frames.
const MaxPending = maxPending

// ShadowJoinStats are the counters of the stream's shadow diff that the ShadowGauges loop
// keeps; false when there is none.
func (s *Service) ShadowJoinStats(stream string) (JoinStats, bool) {
	s.diffs.mu.Lock()
	j, ok := s.diffs.joins[stream]
	s.diffs.mu.Unlock()
	if !ok {
		return JoinStats{}, false
	}
	return j.Stats(), true
}

// ShadowLoopRunning reports whether a ShadowGauges loop runs on s.
func (s *Service) ShadowLoopRunning() bool { return s.diffs.loop() }
