package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/diplip/diplip/registry"
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

// When the journal cannot be written, a manifest change fails (5xx, OCI error format) and
// is not made: the image is neither pullable nor listed, an existing tag keeps its image,
// a delete does not happen, and after a restart the registry holds exactly what clients
// were told it holds. Once the journal is writable again, pushes work.
func TestEmbeddedRegistryRefusesChangesItCannotJournal(t *testing.T) {
	dir := t.TempDir()
	reg, host := serveEmbedded(t, dir)
	ref := func(s string) name.Reference {
		t.Helper()
		r, err := name.ParseReference(host+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	fast := remote.WithRetryBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 2})
	kept, _ := random.Image(256, 1)
	keptDigest, _ := kept.Digest()
	if err := remote.Write(ref("fn/kept:v1"), kept); err != nil {
		t.Fatal(err)
	}

	if err := registry.BreakJournal(reg); err != nil {
		t.Fatal(err)
	}
	lost, _ := random.Image(256, 1)
	lostDigest, _ := lost.Digest()
	err := remote.Write(ref("fn/lost:v1"), lost, fast)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode < 500 || len(terr.Errors) == 0 || terr.Errors[0].Code != transport.UnknownErrorCode ||
		!strings.Contains(terr.Errors[0].Message, "not made") {
		t.Fatalf("push with an unwritable journal: %v; want a 5xx OCI error saying the change was not made", err)
	}
	if err := remote.Write(ref("fn/kept:v1"), lost, fast); err == nil {
		t.Fatal("overwriting a tag with an unwritable journal was acknowledged")
	}
	if err := remote.Delete(ref("fn/kept@"+keptDigest.String()), fast); err == nil {
		t.Fatal("a delete with an unwritable journal was acknowledged")
	}
	check := func(when string) {
		t.Helper()
		for _, s := range []string{"fn/lost:v1", "fn/lost@" + lostDigest.String()} {
			if _, err := remote.Image(ref(s)); err == nil {
				t.Fatalf("%s: %s is pullable though its push failed", when, s)
			}
		}
		if tags, err := remote.List(ref("fn/lost:v1").Context()); err == nil && len(tags) > 0 {
			t.Fatalf("%s: fn/lost lists tags %v", when, tags)
		}
		repos, err := remote.Catalog(context.Background(), ref("fn/kept:v1").Context().Registry)
		if err != nil || slices.Contains(repos, "fn/lost") || !slices.Contains(repos, "fn/kept") {
			t.Fatalf("%s: catalog %v (%v); want fn/kept and not fn/lost", when, repos, err)
		}
		img, err := remote.Image(ref("fn/kept:v1"))
		if err != nil {
			t.Fatalf("%s: fn/kept:v1: %v", when, err)
		}
		if d, _ := img.Digest(); d != keptDigest {
			t.Fatalf("%s: fn/kept:v1 is %s, want %s: a refused push replaced it", when, d, keptDigest)
		}
	}
	check("with the journal broken")

	if err := registry.RepairJournal(reg); err != nil {
		t.Fatal(err)
	}
	later, _ := random.Image(256, 1)
	if err := remote.Write(ref("fn/later:v1"), later); err != nil {
		t.Fatalf("push once the journal is writable again: %v", err)
	}

	_, host = serveEmbedded(t, dir) // a restart
	check("after a restart")
	if _, err := remote.Image(ref("fn/later:v1")); err != nil {
		t.Fatalf("after a restart: fn/later:v1: %v", err)
	}
}

// A change the registry refuses (a delete of an unknown manifest, an index whose
// manifests are missing) leaves no journal line, so a restart replays cleanly.
func TestEmbeddedRegistryJournalsOnlyAcceptedChanges(t *testing.T) {
	dir := t.TempDir()
	host := serveRegistry(t, dir)
	img, _ := random.Image(64, 1)
	r, _ := name.ParseReference(host+"/fn/a:v1", name.Insecure)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(dir, "manifests.jsonl")
	before, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	missing := "sha256:" + strings.Repeat("ab", 32)
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":100}]}`, missing)
	for _, req := range []struct{ method, path, ct, body string }{
		{http.MethodPut, "/v2/fn/a/manifests/multi", "application/vnd.oci.image.index.v1+json", index},
		{http.MethodDelete, "/v2/fn/a/manifests/" + missing, "", ""},
	} {
		hr, _ := http.NewRequest(req.method, "http://"+host+req.path, strings.NewReader(req.body))
		if req.ct != "" {
			hr.Header.Set("Content-Type", req.ct)
		}
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("%s %s: %d, want it refused", req.method, req.path, resp.StatusCode)
		}
	}
	after, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("refused changes left journal lines:\n%s", after[len(before):])
	}
	host = serveRegistry(t, dir)
	r, _ = name.ParseReference(host+"/fn/a:v1", name.Insecure)
	if _, err := remote.Image(r); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}

// A crash in the middle of an append leaves a torn last line; the next append must not be
// glued to it (which would make both unreadable and lose an acknowledged image).
func TestEmbeddedRegistryCutsATornJournalLine(t *testing.T) {
	dir := t.TempDir()
	host := serveRegistry(t, dir)
	first, _ := random.Image(64, 1)
	r, _ := name.ParseReference(host+"/fn/a:v1", name.Insecure)
	if err := remote.Write(r, first); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "manifests.jsonl"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"op":"put","path":"/v2/fn/torn/manif`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	host = serveRegistry(t, dir) // restart after the crash
	second, _ := random.Image(64, 1)
	r, _ = name.ParseReference(host+"/fn/b:v1", name.Insecure)
	if err := remote.Write(r, second); err != nil {
		t.Fatal(err)
	}
	host = serveRegistry(t, dir)
	for _, s := range []string{"fn/a:v1", "fn/b:v1"} {
		r, _ := name.ParseReference(host+"/"+s, name.Insecure)
		if _, err := remote.Image(r); err != nil {
			t.Fatalf("%s after restarts: %v", s, err)
		}
	}
}
