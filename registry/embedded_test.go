package registry_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// An image pushed over HTTP is still there, tag and all, after the registry restarts on
// the same directory; go-containerregistry's registry alone would have forgotten it.
func TestEmbeddedRegistryKeepsImagesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	host := serveRegistry(t, dir)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	tag, err := name.ParseReference(host+"/fn/detector:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("pushing: %v", err)
	}
	// Delete a second image's manifest, to check deletes are replayed too.
	other, _ := random.Image(64, 1)
	otherRef, _ := name.ParseReference(host+"/fn/other:v1", name.Insecure)
	if err := remote.Write(otherRef, other); err != nil {
		t.Fatal(err)
	}
	otherDigest, _ := other.Digest()
	otherByDigest, _ := name.ParseReference(host+"/fn/other@"+otherDigest.String(), name.Insecure)
	if err := remote.Delete(otherByDigest); err != nil {
		t.Fatalf("deleting: %v", err)
	}

	host = serveRegistry(t, dir) // a second server on the same store: a restart
	for _, ref := range []string{host + "/fn/detector:v1", host + "/fn/detector@" + want.String()} {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(r)
		if err != nil {
			t.Fatalf("pulling %s after restart: %v", ref, err)
		}
		if d, _ := got.Digest(); d != want {
			t.Fatalf("%s: digest %s after restart, want %s", ref, d, want)
		}
		// Reads every layer to the end, which checks each blob against its digest.
		if err := validate.Image(got); err != nil {
			t.Fatalf("%s after restart: %v", ref, err)
		}
	}
	otherByDigest, _ = name.ParseReference(host+"/fn/other@"+otherDigest.String(), name.Insecure)
	if _, err := remote.Image(otherByDigest); err == nil {
		t.Fatal("a deleted manifest came back after restart")
	}
}

func TestEmbeddedRegistryRejectsOversizeManifest(t *testing.T) {
	host := serveRegistry(t, "")
	body := bytes.Repeat([]byte("x"), 4<<20+1)
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v2/fn/big/manifests/v1", host), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "larger than") {
		t.Fatalf("oversize manifest: %d %s; want 413 saying it is too large", resp.StatusCode, msg)
	}
}
