package registry

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/diplip/diplip/functions"
)

// Limits on what Pull extracts; a function is a spec, a model and a labels file.
const (
	// DefaultMaxLayerBytes bounds the uncompressed size of one layer.
	DefaultMaxLayerBytes = 2 << 30
	maxEntries           = 64
)

// ErrUnsafeLayer is wrapped by every error about layer content Pull refuses to extract.
var ErrUnsafeLayer = errors.New("unsafe image layer")

// Cache keeps pulled functions on disk, content-addressed by manifest digest:
// Dir/sha256/HEX/ holds the extracted function directory. A digest that is there is never
// fetched again.
type Cache struct {
	Dir string
	// MaxLayerBytes bounds each layer's uncompressed size. Default DefaultMaxLayerBytes.
	MaxLayerBytes int64
	// Options are passed to go-containerregistry's remote calls (auth, transport).
	Options []remote.Option
}

// Path is where the function of digest d lives once pulled.
func (c *Cache) Path(d v1.Hash) string { return filepath.Join(c.Dir, d.Algorithm, d.Hex) }

// Pull returns the directory of the function image ref, which must name a digest
// (repo@sha256:...): a tag can move, a digest cannot. The manifest and every blob are
// verified against their digests while they are read; the layers are extracted safely
// into a temporary directory that is renamed into place only when complete.
func (c *Cache) Pull(ctx context.Context, ref name.Digest, extra ...remote.Option) (string, *functions.Spec, error) {
	want, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return "", nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	dir := c.Path(want)
	if spec, err := functions.LoadSpec(dir); err == nil {
		return dir, spec, nil // cached: no network
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, c.Options...)
	opts = append(opts, extra...)
	// remote.Image verifies the manifest against the digest in ref.
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return "", nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	spec, err := SpecOf(img)
	if err != nil {
		return "", nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".pull-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp) // after a successful rename there is nothing left to remove
	layers, err := img.Layers()
	if err != nil {
		return "", nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	limit := c.MaxLayerBytes
	if limit <= 0 {
		limit = DefaultMaxLayerBytes
	}
	for i, l := range layers {
		if err := extractLayer(l, tmp, limit); err != nil {
			return "", nil, fmt.Errorf("pull %s: layer %d: %w", ref, i, err)
		}
	}
	fileSpec, err := functions.LoadSpec(tmp)
	if err != nil {
		return "", nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	if fileSpec.Name != spec.Name || fileSpec.Model != spec.Model {
		return "", nil, fmt.Errorf("pull %s: the spec in the layer (%s, %s) disagrees with the image config (%s, %s)",
			ref, fileSpec.Name, fileSpec.Model, spec.Name, spec.Model)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, functions.SpecFile)); statErr == nil {
			return dir, fileSpec, nil // a concurrent pull of the same digest won
		}
		return "", nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return dir, fileSpec, nil
}

// extractLayer extracts one layer into dir and then reads its compressed stream to the
// end, which is where go-containerregistry checks the blob against its digest: content
// that fails the check is never renamed into the cache.
func extractLayer(l v1.Layer, dir string, limit int64) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	var content io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: bad gzip: %v", ErrUnsafeLayer, err)
		}
		defer gz.Close()
		content = gz
	}
	if err := Extract(content, dir, limit); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("verifying blob: %w", err)
	}
	return nil
}

// Extract unpacks a tar stream into dir, refusing anything that could write outside dir
// or is not plain content: absolute paths, "..", symlinks and hard links (a function
// needs neither), devices, FIFOs, more than 64 entries, or more than maxBytes in all.
// The error names the offending entry.
func Extract(r io.Reader, dir string, maxBytes int64) error {
	tr := tar.NewReader(r)
	var total int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if n >= maxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeLayer, maxEntries)
		}
		clean := path.Clean(hdr.Name)
		if hdr.Name == "" || path.IsAbs(hdr.Name) || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(hdr.Name, "\\") {
			return fmt.Errorf("%w: entry %q escapes the function directory", ErrUnsafeLayer, hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(clean))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if hdr.Size < 0 || total+hdr.Size > maxBytes {
				return fmt.Errorf("%w: entry %q (%d bytes) takes the layer past %d bytes", ErrUnsafeLayer, hdr.Name, hdr.Size, maxBytes)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			// O_EXCL: a second entry of the same name cannot replace the first.
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("%w: entry %q: %v", ErrUnsafeLayer, hdr.Name, err)
			}
			w, err := io.Copy(f, io.LimitReader(tr, hdr.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			if w != hdr.Size {
				return fmt.Errorf("entry %q: truncated (%d of %d bytes)", hdr.Name, w, hdr.Size)
			}
			total += w
		case tar.TypeSymlink, tar.TypeLink:
			return fmt.Errorf("%w: entry %q is a link (to %q); function images hold plain files only", ErrUnsafeLayer, hdr.Name, hdr.Linkname)
		case tar.TypeXGlobalHeader:
			// PAX global header: metadata only.
		default:
			return fmt.Errorf("%w: entry %q has type %q (device, FIFO or other special file)", ErrUnsafeLayer, hdr.Name, string(hdr.Typeflag))
		}
	}
}
