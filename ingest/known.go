package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/diplip/diplip/internal/controlplane"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/wire"
)

// CameraOnStream checks that a camera belongs to a stream: a pulled camera recorded on
// it, or one whose frames have results on it lately (cameras that push have no record).
// An unknown camera is ErrCameraNotFound, with how to add it.
func CameraOnStream(ctx context.Context, store *controlplane.Store, kc *kafkaclient.Client, st wire.Stream, camera string) error {
	if c, err := store.Camera(ctx, camera); err == nil && c.Stream == st.Name {
		return nil
	} else if err != nil && !errors.Is(err, controlplane.ErrNotFound) {
		return err
	}
	recent, err := kc.LastResults(ctx, st.ResultsTopic, 500)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	for _, b := range recent {
		var r struct {
			Camera string `json:"camera"`
		}
		if json.Unmarshal(b, &r) == nil && r.Camera == camera {
			return nil
		}
	}
	return &notOnStream{fmt.Sprintf("camera %q not found on stream %s: add it with diplip camera add, or let it push frames first", camera, st.Name)}
}

type notOnStream struct{ msg string }

func (e *notOnStream) Error() string        { return e.msg }
func (e *notOnStream) Is(target error) bool { return target == ErrCameraNotFound }
