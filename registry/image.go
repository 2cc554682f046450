package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/diplip/diplip/functions"
)

// Labels and annotations a function image carries, so that `inspect` reads the spec from
// the config blob without downloading the model layer.
const (
	LabelSpec = "io.diplip.function.spec" // the spec as JSON, defaults filled
	LabelName = "io.diplip.function.name"
	// AnnotationTitle is the OCI standard title annotation, set to the function's name.
	AnnotationTitle = "org.opencontainers.image.title"
)

// A function image is a plain OCI image (OCI manifest, standard config), which every
// registry accepts: one layer holding function.yaml, the model and the labels file.
// Building is deterministic: the same files give the same digest.

// CheckFunc checks a function directory's model against its spec (package functions/onnx
// does it with ONNX Runtime). Build calls it so that a broken function never becomes an
// image; it is a parameter because this package does not run models.
type CheckFunc func(dir string, spec *functions.Spec) error

// Build packs the function in dir into an OCI image, after validating its spec and, when
// check is not nil, checking the model against it.
func Build(dir string, check CheckFunc) (v1.Image, *functions.Spec, error) {
	spec, err := functions.LoadSpec(dir)
	if err != nil {
		return nil, nil, err
	}
	files := []string{functions.SpecFile, spec.Model}
	if spec.Labels != "" {
		files = append(files, spec.Labels)
	}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			return nil, nil, fmt.Errorf("function %s: %w", spec.Name, err)
		}
		if !st.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("function %s: %s is not a regular file", spec.Name, f)
		}
	}
	if check != nil {
		if err := check(dir, spec); err != nil {
			return nil, nil, fmt.Errorf("function %s: %w", spec.Name, err)
		}
	}
	layerTar, err := tarFiles(dir, files)
	if err != nil {
		return nil, nil, fmt.Errorf("function %s: %w", spec.Name, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, nil, fmt.Errorf("function %s: layer: %w", spec.Name, err)
	}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		History:   v1.History{CreatedBy: "diplip fn build", Comment: "function " + spec.Name},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64" // models are portable; registries want a platform
	cf.Config.Labels = map[string]string{LabelSpec: string(specJSON), LabelName: spec.Name}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, nil, err
	}
	img = mutate.Annotations(img, map[string]string{AnnotationTitle: spec.Name, LabelSpec: string(specJSON)}).(v1.Image)
	return img, spec, nil
}

// tarFiles writes the named files of dir into a tar with fixed metadata (no times, no
// owners, mode 0644), in sorted order, so that the same content gives the same bytes.
func tarFiles(dir string, names []string) ([]byte, error) {
	names = slices.Clone(names)
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(n), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ErrNotFunction is wrapped by every error about an image that is not a valid diplip
// function (no spec label, an invalid spec, not an image at all).
var ErrNotFunction = errors.New("not a diplip function image")

// SpecOf reads the function spec from an image's config labels (no layer download).
func SpecOf(img v1.Image) (*functions.Spec, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%w: reading its config: %v", ErrNotFunction, err)
	}
	raw, ok := cf.Config.Labels[LabelSpec]
	if !ok {
		return nil, fmt.Errorf("%w: its config has no %s label", ErrNotFunction, LabelSpec)
	}
	// YAML is a superset of JSON and the spec's YAML and JSON field names are the same,
	// so the one strict parser reads the label.
	spec, err := functions.ParseSpec(strings.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: the spec in its config: %v", ErrNotFunction, err)
	}
	return spec, nil
}

// Info is what a registry says about a function image, read without its layers.
type Info struct {
	Digest name.Digest // the reference pinned to the manifest's digest
	Spec   *functions.Spec
	Size   int64 // config and layers, compressed
	// Quantized holds the image's io.diplip.function.quantized.* labels (fn quantize made
	// it: from which image, stream, window and method), by the part after the prefix;
	// nil for an image built from a directory.
	Quantized map[string]string
}

// Inspect reads a function image's manifest and config. A registry failure (not found,
// refused, unreachable) wraps go-containerregistry's error; an image that is not a
// function wraps ErrNotFunction.
func Inspect(ctx context.Context, ref name.Reference, extra ...remote.Option) (Info, error) {
	desc, err := remote.Get(ref, RemoteOptions(ctx, extra...)...)
	if err != nil {
		return Info{}, fmt.Errorf("function image %s: %w", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w: %v", ref, ErrNotFunction, err)
	}
	spec, err := SpecOf(img)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w: %v", ref, ErrNotFunction, err)
	}
	info := Info{Digest: ref.Context().Digest(desc.Digest.String()), Spec: spec, Size: m.Config.Size}
	if labels, err := LabelsOf(img); err == nil {
		for k, v := range labels {
			if rest, ok := strings.CutPrefix(k, labelQuantized); ok {
				if info.Quantized == nil {
					info.Quantized = map[string]string{}
				}
				info.Quantized[rest] = v
			}
		}
	}
	for _, l := range m.Layers {
		info.Size += l.Size
	}
	return info, nil
}
