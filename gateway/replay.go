package gateway

import (
	"context"
	"net/http"
	"strconv"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/rollout"
)

// Replays, shadows, promotion and diffs (see docs/replay.md) are carried out by package
// rollout; these handlers decode, call it, and convert.

func (s *Server) startReplay(w http.ResponseWriter, r *http.Request) error {
	var req api.ReplayRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	d, err := s.cfg.Rollout.StartReplay(r.Context(), rollout.ReplayRequest{Stream: req.Stream, Ref: req.Ref, Insecure: req.Insecure,
		Name: req.Name, From: req.From, To: req.To, Cameras: req.Cameras, Max: req.Max, Batch: req.Batch, Lanes: req.Lanes, Device: req.Device,
		After: req.After, Classes: req.Classes, MinSize: req.MinSize, MaxPerFrame: req.MaxPerFrame})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiReplay(d, 0))
	return nil
}

// replayStatus converts a replay with its progress.
func (s *Server) replayStatus(ctx context.Context, d wire.Deployment) api.Replay {
	processed, err := s.cfg.Rollout.ReplayProgress(ctx, d)
	out := apiReplay(d, processed)
	if err != nil {
		out.Error = err.Error()
	}
	return out
}

func (s *Server) getReplay(w http.ResponseWriter, r *http.Request) error {
	d, err := s.cfg.Rollout.Replay(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.replayStatus(r.Context(), d))
	return nil
}

func (s *Server) listReplays(w http.ResponseWriter, r *http.Request) error {
	rs, err := s.cfg.Store.Replays(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Replay, len(rs))
	for i, d := range rs {
		out[i] = s.replayStatus(r.Context(), d)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) removeReplay(w http.ResponseWriter, r *http.Request) error {
	if err := s.cfg.Rollout.RemoveReplay(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// promote serves POST /v1/streams/{stream}/promote: the shadow becomes the primary.
func (s *Server) promote(w http.ResponseWriter, r *http.Request) error {
	d, err := s.cfg.Rollout.Promote(r.Context(), r.PathValue("stream"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiDeployment(d))
	return nil
}

// diff serves GET /v1/streams/{stream}/diff?replay=NAME or ?shadow=1 (&iou=0.5): the
// candidate's results compared frame by frame with the primary's.
func (s *Server) diff(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	replay, shadow := q.Get("replay"), q.Get("shadow") == "1" || q.Get("shadow") == "true"
	if (replay == "") == !shadow {
		return errorf(http.StatusBadRequest, "want one of ?replay=NAME or ?shadow=1")
	}
	var iou float64 // rollout's default
	if v := q.Get("iou"); v != "" {
		var err error
		if iou, err = strconv.ParseFloat(v, 64); err != nil || iou <= 0 || iou > 1 {
			return errorf(http.StatusBadRequest, "iou %q: want a number in (0, 1]", v)
		}
	}
	var d rollout.Diff
	var err error
	if shadow {
		d, err = s.cfg.Rollout.DiffShadow(r.Context(), r.PathValue("stream"), iou)
	} else {
		d, err = s.cfg.Rollout.DiffReplay(r.Context(), r.PathValue("stream"), replay, iou)
	}
	if err != nil {
		return err
	}
	out := apiDiff(d)
	out.Chain = (*api.DiffChain)(d.Chain) // a second stage's (rollout.ChainStats has api.DiffChain's fields)
	writeJSON(w, http.StatusOK, out)
	return nil
}
