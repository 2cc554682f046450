package registry

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ParseReference parses an image reference such as 127.0.0.1:8080/fn/yolox:v1. Loopback
// registries are reached over plain HTTP by default; insecure allows plain HTTP anywhere.
func ParseReference(s string, insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(s, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w (want HOST[:PORT]/REPO[:TAG] or REPO@sha256:...)", s, err)
	}
	return ref, nil
}

// RemoteOptions are the options every remote call uses: credentials from the docker
// config keychain ($DOCKER_CONFIG, ~/.docker/config.json) and the caller's context.
// Extra credentials must come as a keychain (remote.WithAuthFromKeychain, which replaces
// the default one); go-containerregistry refuses remote.WithAuth beside a keychain.
func RemoteOptions(ctx context.Context, extra ...remote.Option) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, extra...)
}

// Push writes img to ref and returns ref pinned to the pushed digest. progress, when not
// nil, receives byte counts as blobs upload and is closed when Push returns.
func Push(ctx context.Context, img v1.Image, ref name.Reference, progress chan v1.Update, extra ...remote.Option) (name.Digest, error) {
	opts := RemoteOptions(ctx, extra...)
	if progress != nil {
		opts = append(opts, remote.WithProgress(progress))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return ref.Context().Digest(d.String()), nil
}

// Resolve returns ref pinned to the digest the registry holds for it now.
func Resolve(ctx context.Context, ref name.Reference, extra ...remote.Option) (name.Digest, error) {
	if d, ok := ref.(name.Digest); ok {
		return d, nil
	}
	desc, err := remote.Head(ref, RemoteOptions(ctx, extra...)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("resolving %s: %w", ref, err)
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

// refAnnotation is the OCI image layout's annotation for an image's reference.
const refAnnotation = "org.opencontainers.image.ref.name"

// Store keeps built images on disk in an OCI image layout, by reference, so that
// `diplip fn build -t REF` and a later `diplip fn push REF` need no registry in between.
type Store struct {
	Dir string
}

func (s *Store) path() (layout.Path, error) {
	if p, err := layout.FromPath(s.Dir); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return "", err
	}
	return layout.Write(s.Dir, empty.Index)
}

// Put stores img under ref, replacing what ref named before.
func (s *Store) Put(ref name.Reference, img v1.Image) error {
	p, err := s.path()
	if err != nil {
		return fmt.Errorf("image store %s: %w", s.Dir, err)
	}
	err = p.ReplaceImage(img, func(d v1.Descriptor) bool { return d.Annotations[refAnnotation] == ref.String() },
		layout.WithAnnotations(map[string]string{refAnnotation: ref.String()}))
	if err != nil {
		return fmt.Errorf("image store %s: %w", s.Dir, err)
	}
	return nil
}

// ErrNotBuilt is returned by Store.Get for a reference that was never built here.
var ErrNotBuilt = errors.New("not built here")

// Get returns the image stored under ref.
func (s *Store) Get(ref name.Reference) (v1.Image, error) {
	p, err := layout.FromPath(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (build it with: diplip fn build DIR -t %s)", ref, ErrNotBuilt, ref)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Annotations[refAnnotation] == ref.String() {
			return p.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("%s: %w (build it with: diplip fn build DIR -t %s)", ref, ErrNotBuilt, ref)
}

// WithToken authenticates to registries with a diplip gateway's token (as the password
// of HTTP basic auth, which is what the gateway's registry accepts). It replaces the
// docker config keychain, so give it only for a diplip gateway's registry.
func WithToken(token string) remote.Option {
	return remote.WithAuthFromKeychain(tokenKeychain(token))
}

// tokenKeychain answers every registry with the token as a basic-auth password.
type tokenKeychain string

func (k tokenKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: "diplip", Password: string(k)}, nil
}

// SelfKeychain gives token to the registry at host (a gateway's own) and defers to the
// docker config keychain for every other registry.
func SelfKeychain(host, token string) authn.Keychain {
	return selfKeychain{host: host, token: token}
}

type selfKeychain struct{ host, token string }

func (k selfKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if k.token != "" && r.RegistryStr() == k.host {
		return tokenKeychain(k.token).Resolve(r)
	}
	return authn.DefaultKeychain.Resolve(r)
}
