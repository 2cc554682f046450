package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/rollout"
)

// statusOf is the one place errors become statuses: each rollout kind and ingest sentinel
// has its status, wrapped or not; anything else is a 500.
func TestStatusOf(t *testing.T) {
	kind := func(k rollout.Kind) error { return &rollout.Error{Kind: k, Err: errors.New("x")} }
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"the gateway's own", errorf(http.StatusUnsupportedMediaType, "x"), http.StatusUnsupportedMediaType},
		{"invalid", kind(rollout.Invalid), http.StatusBadRequest},
		{"not found", kind(rollout.NotFound), http.StatusNotFound},
		{"conflict", kind(rollout.Conflict), http.StatusConflict},
		{"upstream", kind(rollout.Upstream), http.StatusBadGateway},
		{"unavailable", kind(rollout.Unavailable), http.StatusServiceUnavailable},
		{"a wrapped kind", fmt.Errorf("context: %w", kind(rollout.NotFound)), http.StatusNotFound},
		{"a bad camera", fmt.Errorf("camera x: %w", ingest.ErrBadCamera), http.StatusBadRequest},
		{"an unknown stream", fmt.Errorf("%w: s", ingest.ErrUnknownStream), http.StatusNotFound},
		{"an unknown camera", ingest.ErrCameraNotFound, http.StatusNotFound},
		{"a camera that exists", ingest.ErrCameraExists, http.StatusConflict},
		{"no video", ingest.ErrNoVideo, http.StatusNotImplemented},
		{"stopping", ingest.ErrStopped, http.StatusServiceUnavailable},
		{"anything else", errors.New("the control plane failed"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusOf(tc.err); got != tc.want {
				t.Fatalf("statusOf(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
