package registry_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/registry"
)

const example = "../functions/examples/yolox-nano"

func build(t *testing.T, dir string) v1.Image {
	t.Helper()
	img, _, err := registry.Build(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestBuildIsDeterministicAndCarriesTheSpec(t *testing.T) {
	a, b := build(t, example), build(t, example)
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("two builds of the same files: %s and %s", da, db)
	}
	spec, err := registry.SpecOf(a)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name != "yolox-nano" || spec.Input.Width != 416 || spec.Input.Channels != "BGR" {
		t.Fatalf("spec from config labels: %+v", spec)
	}
	m, _ := a.Manifest()
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Annotations[registry.AnnotationTitle] != "yolox-nano" {
		t.Fatalf("manifest %s annotations %v", m.MediaType, m.Annotations)
	}

	// A change to any file changes the digest.
	dir := copyDir(t, example)
	appendTo(t, filepath.Join(dir, "coco80.txt"), "extra\n")
	dc, _ := build(t, dir).Digest()
	if dc == da {
		t.Fatal("changing the labels file did not change the digest")
	}
}

func TestBuildRefusesBrokenFunctions(t *testing.T) {
	dir := copyDir(t, example)
	os.Remove(filepath.Join(dir, "coco80.txt"))
	if _, _, err := registry.Build(dir, nil); err == nil || !strings.Contains(err.Error(), "coco80.txt") {
		t.Fatalf("missing labels file: %v", err)
	}
	dir = copyDir(t, example)
	check := func(string, *functions.Spec) error {
		return errors.New("input \"images\": the model wants [1 3 416 416]")
	}
	if _, _, err := registry.Build(dir, check); err == nil || !strings.Contains(err.Error(), "the model wants") {
		t.Fatalf("failing model check: %v", err)
	}
}

// The whole path a runner takes: push over HTTP, pull by digest into the cache, the files
// come back identical, and a second pull of that digest needs no registry at all.
func TestPushPullCache(t *testing.T) {
	host := serveRegistry(t, "")
	img := build(t, example)
	ref, err := registry.ParseReference(host+"/fn/yolox-nano:v1", false)
	if err != nil {
		t.Fatal(err)
	}
	progress := make(chan v1.Update, 100)
	var last v1.Update
	done := make(chan struct{})
	go func() {
		for u := range progress {
			last = u
		}
		close(done)
	}()
	pinned, err := registry.Push(context.Background(), img, ref, progress)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if last.Total == 0 || last.Complete != last.Total {
		t.Errorf("progress ended at %d of %d bytes", last.Complete, last.Total)
	}
	if resolved, err := registry.Resolve(context.Background(), ref); err != nil || resolved != pinned {
		t.Fatalf("Resolve(tag) = %v, %v; want %v", resolved, err, pinned)
	}

	cache := &registry.Cache{Dir: t.TempDir()}
	dir, spec, err := cache.Pull(context.Background(), pinned)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name != "yolox-nano" {
		t.Fatalf("pulled spec %+v", spec)
	}
	for _, f := range []string{"function.yaml", "coco80.txt", "yolox_nano.onnx"} {
		if !sameFile(t, filepath.Join(example, f), filepath.Join(dir, f)) {
			t.Fatalf("%s differs after the round trip", f)
		}
	}

	// Same digest, registry gone: served from the cache.
	dead, _ := name.NewDigest("127.0.0.1:1/fn/yolox-nano@" + pinned.DigestStr())
	if again, _, err := cache.Pull(context.Background(), dead); err != nil || again != dir {
		t.Fatalf("second pull of a cached digest: %q, %v", again, err)
	}
}

// A registry that serves a blob whose bytes do not match its digest is caught, and
// nothing lands in the cache.
func TestPullRejectsTamperedBlob(t *testing.T) {
	host := serveRegistry(t, "")
	img := build(t, example)
	ref, _ := registry.ParseReference(host+"/fn/yolox-nano:v1", false)
	pinned, err := registry.Push(context.Background(), img, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	layerDigest, _ := layers[0].Digest()

	// A proxy that flips one byte in the middle of the layer blob (inside the model's
	// weights), keeping its size, so that the size check passes and only the digest
	// check can catch it.
	target, _ := url.Parse("http://" + host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if !strings.HasSuffix(r.Request.URL.Path, "/blobs/"+layerDigest.String()) || r.Request.Method != http.MethodGet {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		b[len(b)/2] ^= 0x01
		r.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	evil, _ := name.NewDigest(strings.TrimPrefix(srv.URL, "http://") + "/fn/yolox-nano@" + pinned.DigestStr())

	cache := &registry.Cache{Dir: t.TempDir()}
	_, _, err = cache.Pull(context.Background(), evil)
	if err == nil {
		t.Fatal("a tampered layer was accepted")
	}
	if !strings.Contains(err.Error(), "verifying blob") {
		t.Fatalf("tampered layer refused for another reason: %v", err)
	}
	if _, err := os.Stat(cache.Path(mustHash(t, pinned.DigestStr()))); !os.IsNotExist(err) {
		t.Fatalf("a failed pull left %s behind (%v)", cache.Path(mustHash(t, pinned.DigestStr())), err)
	}
}

func TestSpecOfRejectsPlainImages(t *testing.T) {
	plain, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.SpecOf(plain); err == nil || !strings.Contains(err.Error(), "not a diplip function image") {
		t.Fatalf("SpecOf(plain image) = %v; want it to say it is not a function image", err)
	}
}

func TestExtractRefusesUnsafeEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []*tar.Header
		want    string
	}{
		{"absolute path", []*tar.Header{reg("/etc/passwd", 4)}, `"/etc/passwd" escapes`},
		{"dot-dot", []*tar.Header{reg("../../x", 4)}, `"../../x" escapes`},
		{"nested dot-dot", []*tar.Header{reg("a/../../x", 4)}, "escapes"},
		{"symlink out", []*tar.Header{{Name: "m.onnx", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}}, `"m.onnx" is a link`},
		{"hard link", []*tar.Header{reg("a", 4), {Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}}, `"b" is a link`},
		{"device", []*tar.Header{{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}, `"dev" has type`},
		{"fifo", []*tar.Header{{Name: "p", Typeflag: tar.TypeFifo}}, `"p" has type`},
		{"too big", []*tar.Header{reg("a", 600), reg("b", 600)}, `"b" (600 bytes) takes the layer past 1000`},
		{"duplicate", []*tar.Header{reg("a", 4), reg("a", 4)}, `entry "a"`},
		{"backslash", []*tar.Header{reg(`..\x`, 4)}, "escapes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := registry.Extract(bytes.NewReader(tarOf(t, tc.entries)), dir, 1000)
			if !errors.Is(err, registry.ErrUnsafeLayer) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrUnsafeLayer mentioning %s", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "x")); err == nil {
				t.Fatal("a file was written outside the directory")
			}
		})
	}
	var many []*tar.Header
	for i := range 65 {
		many = append(many, reg(strings.Repeat("f", i+1), 1))
	}
	if err := registry.Extract(bytes.NewReader(tarOf(t, many)), t.TempDir(), 1000); !errors.Is(err, registry.ErrUnsafeLayer) {
		t.Fatalf("65 entries: %v", err)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "fn")
		os.Mkdir(dir, 0o755)
		_ = registry.Extract(bytes.NewReader(b), dir, 1<<20)
		ents, _ := os.ReadDir(parent)
		if len(ents) != 1 {
			t.Fatalf("extraction wrote outside its directory: %v", ents)
		}
	})
}

// skopeo (containers/image, not go-containerregistry) reads what diplip pushed: the
// manifest, the spec in the config labels, and the blobs.
func TestThirdPartyClientReadsFunctionImages(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("skopeo not found: install it with: go tool task setup (Debian package skopeo)")
	}
	host := serveRegistry(t, "")
	img := build(t, example)
	ref, _ := registry.ParseReference(host+"/fn/yolox-nano:v1", false)
	pinned, err := registry.Push(context.Background(), img, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "docker://"+ref.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var info struct {
		Digest string
		Labels map[string]string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("skopeo inspect output: %v\n%s", err, out)
	}
	if info.Digest != pinned.DigestStr() || !strings.Contains(info.Labels[registry.LabelSpec], `"yolox-nano"`) {
		t.Fatalf("skopeo sees digest %s labels %v; want %s with the spec", info.Digest, info.Labels, pinned.DigestStr())
	}
	dest := t.TempDir()
	out, err = exec.Command(skopeo, "copy", "--src-tls-verify=false", "docker://"+pinned.String(), "oci:"+dest+":fn").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy (which verifies every blob): %v\n%s", err, out)
	}
}

func reg(name string, size int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}
}

func tarOf(t *testing.T, hdrs []*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func appendTo(t *testing.T, p, s string) {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Close()
}

func sameFile(t *testing.T, a, b string) bool {
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

func mustHash(t *testing.T, s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A malicious function image (a valid function plus a layer that reaches for
// ../../etc/x) is refused on pull, and nothing is written outside the cache.
func TestPullRefusesMaliciousImage(t *testing.T) {
	host := serveRegistry(t, "")
	evilTar := tarOf(t, []*tar.Header{reg("../../etc/x", 4)})
	evilLayer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(evilTar)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(build(t, example), evilLayer)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := registry.ParseReference(host+"/fn/evil:v1", false)
	pinned, err := registry.Push(context.Background(), img, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cache := &registry.Cache{Dir: filepath.Join(root, "a", "b", "cache")}
	_, _, err = cache.Pull(context.Background(), pinned)
	if !errors.Is(err, registry.ErrUnsafeLayer) || !strings.Contains(err.Error(), `"../../etc/x"`) {
		t.Fatalf("err = %v; want ErrUnsafeLayer naming ../../etc/x", err)
	}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			t.Errorf("pull left a file behind: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
