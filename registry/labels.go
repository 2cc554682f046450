package registry

import (
	"fmt"
	"maps"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Labels a quantized function image carries (diplip fn quantize): what it was made from,
// on which frames, and how.
const (
	labelQuantized       = "io.diplip.function.quantized."
	LabelQuantizedFrom   = labelQuantized + "from"   // the FP32 image, pinned to its digest
	LabelQuantizedStream = labelQuantized + "stream" // the stream calibrated on
	LabelQuantizedWindow = labelQuantized + "window" // FROM/TO of the frames used (RFC 3339)
	LabelQuantizedMethod = labelQuantized + "method" // calibration method, frames, FP32 nodes kept
	// LabelQuantizedAgreement is the measured F1 of INT8's detections against FP32's, on
	// how many frames, and which (check: frames neither calibrated nor chosen on; auto:
	// the frames the method was chosen on), e.g. "f1=0.958 frames=100 on=check".
	LabelQuantizedAgreement = labelQuantized + "agreement"
)

// WithLabels returns img with labels added to its config (the others stay). The spec
// and name labels Build writes cannot be replaced this way.
func WithLabels(img v1.Image, labels map[string]string) (v1.Image, error) {
	for k := range labels {
		if k == LabelSpec || k == LabelName {
			return nil, fmt.Errorf("label %s: set by Build from the spec", k)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	maps.Copy(cf.Config.Labels, labels)
	return mutate.ConfigFile(img, cf)
}

// LabelsOf returns an image's config labels.
func LabelsOf(img v1.Image) (map[string]string, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return cf.Config.Labels, nil
}
