package gateway

import (
	"net/http"
	"strconv"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/rollout"
)

// sample answers GET /v1/streams/{stream}/sample?n=N[&from=T][&to=T]: up to N recorded
// frames spread evenly over the window, by position (fn quantize calibrates on them).
func (s *Server) sample(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil {
		return errorf(http.StatusBadRequest, "n %q: want how many frames, 1 to %d", q.Get("n"), rollout.MaxSample)
	}
	got, err := s.cfg.Rollout.SampleFrames(r.Context(), rollout.SampleRequest{Stream: r.PathValue("stream"), N: n, From: q.Get("from"), To: q.Get("to")})
	if err != nil {
		return err
	}
	out := api.FrameSample{Stream: r.PathValue("stream"), Held: got.Held, First: got.First, Last: got.Last, Frames: make([]api.SampleFrame, 0, len(got.Frames))}
	for _, f := range got.Frames {
		out.Frames = append(out.Frames, api.SampleFrame{Partition: f.Source.Partition, Offset: f.Source.Offset, Camera: f.Camera, Time: f.Time})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
