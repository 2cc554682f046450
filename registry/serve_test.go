package registry_test

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diplip/diplip/registry"
)

// serveRegistry serves the embedded OCI registry, stored in dir (a fresh temporary
// directory when empty), over real HTTP on a random loopback port, and returns its
// host:port.
func serveRegistry(t testing.TB, dir string) string {
	t.Helper()
	_, host := serveEmbedded(t, dir)
	return host
}

// serveEmbedded is serveRegistry that also returns the registry.
func serveEmbedded(t testing.TB, dir string) (*registry.Embedded, string) {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "registry")
	}
	reg, err := registry.NewEmbedded(dir, nil)
	if err != nil {
		t.Fatalf("opening embedded registry: %v", err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(func() {
		srv.Close()
		reg.Close()
	})
	return reg, strings.TrimPrefix(srv.URL, "http://")
}
