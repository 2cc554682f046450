package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// maxManifestBytes bounds a manifest upload; OCI distribution suggests registries accept at
// least 4 MiB.
const maxManifestBytes = 4 << 20

// Embedded is an OCI distribution server (the /v2/ API) whose content survives restarts:
// blobs live in Dir/blobs (go-containerregistry's disk blob handler) and every manifest
// upload or delete is appended to a journal, Dir/manifests.jsonl, that is replayed at start.
// go-containerregistry's registry keeps manifests and tags only in memory; the journal is
// what makes a restart lose nothing.
//
// The journal is written ahead: a manifest change is appended and fsynced before the
// in-memory registry sees it, so a change is never visible, let alone acknowledged,
// without being durable. When the journal cannot be written the request fails with 500
// (OCI error code UNKNOWN) and nothing changes; a change the in-memory registry then
// refuses is cut off the journal again.
type Embedded struct {
	inner http.Handler
	dir   string
	log   *slog.Logger

	mu      sync.Mutex // serialises manifest changes and their journal lines
	journal *os.File
	size    int64 // bytes of whole lines in the journal
	// dirty: a failed change could not be cut off the journal again; until it is, no
	// manifest change is accepted.
	dirty error
}

// journalEntry is one line of Dir/manifests.jsonl.
type journalEntry struct {
	Op          string `json:"op"` // "put" or "delete"
	Path        string `json:"path"`
	ContentType string `json:"content_type,omitempty"`
	Body        []byte `json:"body,omitempty"`
}

// NewEmbedded opens (creating if needed) a registry stored in dir and replays its journal.
func NewEmbedded(dir string, logger *slog.Logger) (*Embedded, error) {
	if logger == nil {
		logger = slog.Default()
	}
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, fmt.Errorf("embedded registry: %w", err)
	}
	e := &Embedded{
		inner: ggcrregistry.New(
			ggcrregistry.WithBlobHandler(ggcrregistry.NewDiskBlobHandler(blobs)),
			ggcrregistry.Logger(log.New(io.Discard, "", 0)),
		),
		dir: dir,
		log: logger.With("component", "registry"),
	}
	if err := e.cutTornLine(); err != nil {
		return nil, err
	}
	n, err := e.replay()
	if err != nil {
		return nil, err
	}
	e.journal, err = os.OpenFile(e.journalPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("embedded registry: %w", err)
	}
	st, err := e.journal.Stat()
	if err != nil {
		e.journal.Close()
		return nil, fmt.Errorf("embedded registry: %w", err)
	}
	e.size = st.Size()
	e.log.Debug("registry opened", "dir", dir, "manifest_ops_replayed", n)
	return e, nil
}

func (e *Embedded) journalPath() string { return filepath.Join(e.dir, "manifests.jsonl") }

// cutTornLine drops a last journal line that has no newline: an append that a crash
// interrupted, never acknowledged. Left in place, the next append would be glued to it and
// both would be unreadable.
func (e *Embedded) cutTornLine() error {
	b, err := os.ReadFile(e.journalPath())
	if errors.Is(err, os.ErrNotExist) || (err == nil && (len(b) == 0 || b[len(b)-1] == '\n')) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("embedded registry: %w", err)
	}
	keep := bytes.LastIndexByte(b, '\n') + 1
	e.log.Warn("registry journal: dropping a torn last line (an upload interrupted by a crash, never acknowledged)",
		"path", e.journalPath(), "bytes", len(b)-keep)
	if err := os.Truncate(e.journalPath(), int64(keep)); err != nil {
		return fmt.Errorf("embedded registry: cutting the torn last line of %s: %w", e.journalPath(), err)
	}
	return nil
}

// replay feeds the journal's manifest operations to the in-memory handler, in order.
func (e *Embedded) replay() (int, error) {
	f, err := os.Open(e.journalPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("embedded registry: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 2*maxManifestBytes)
	n := 0
	for sc.Scan() {
		n++
		var je journalEntry
		if err := json.Unmarshal(sc.Bytes(), &je); err != nil {
			// A torn last line (crash mid-append) is the only expected damage: that
			// upload was never acknowledged, so dropping it loses nothing.
			e.log.Warn("registry journal: skipping unreadable line", "line", n, "err", err)
			continue
		}
		method := http.MethodPut
		if je.Op == "delete" {
			method = http.MethodDelete
		}
		req := httptest.NewRequest(method, je.Path, bytes.NewReader(je.Body))
		if je.ContentType != "" {
			req.Header.Set("Content-Type", je.ContentType)
		}
		rec := httptest.NewRecorder()
		e.inner.ServeHTTP(rec, req)
		if rec.Code >= 300 && !(je.Op == "delete" && rec.Code == http.StatusNotFound) {
			return n, fmt.Errorf("embedded registry: replaying %s %s from %s (line %d): status %d: %s",
				method, je.Path, e.journalPath(), n, rec.Code, strings.TrimSpace(rec.Body.String()))
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("embedded registry: reading %s: %w", e.journalPath(), err)
	}
	return n, nil
}

// ServeHTTP serves the OCI distribution API under /v2/.
func (e *Embedded) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isManifestPath(r.URL.Path) || (r.Method != http.MethodPut && r.Method != http.MethodDelete) {
		e.inner.ServeHTTP(w, r)
		return
	}
	var body []byte
	if r.Method == http.MethodPut {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
		if err != nil {
			http.Error(w, "reading manifest: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > maxManifestBytes {
			writeRegistryError(w, http.StatusRequestEntityTooLarge, "MANIFEST_INVALID",
				fmt.Sprintf("manifest is larger than %d bytes", maxManifestBytes))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	// Hold the lock across the journal line and the in-memory change, so the journal's
	// order is the order the handler saw.
	e.mu.Lock()
	defer e.mu.Unlock()
	je := journalEntry{Op: "put", Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: body}
	if r.Method == http.MethodDelete {
		je = journalEntry{Op: "delete", Path: r.URL.Path}
	}
	before := e.size
	if err := e.appendJournal(je); err != nil {
		e.log.Error("registry journal append failed; the manifest change was refused", "path", r.URL.Path, "err", err)
		writeRegistryError(w, http.StatusInternalServerError, "UNKNOWN",
			fmt.Sprintf("the registry could not record this manifest change durably, so it was not made: %v", err))
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	e.inner.ServeHTTP(rec, r)
	if rec.status >= 300 {
		// Refused (an unknown manifest to delete, an index whose manifests are missing):
		// the line must not be replayed.
		if err := e.rollback(before); err != nil {
			e.log.Error("registry journal: cannot cut off a refused manifest change; manifest changes are refused until it is",
				"path", r.URL.Path, "err", err)
		}
	}
}

// appendJournal writes one line and fsyncs it; on failure it cuts the journal back to
// where it was.
func (e *Embedded) appendJournal(je journalEntry) error {
	if e.dirty != nil {
		if err := e.rollback(e.size); err != nil {
			return fmt.Errorf("journal %s has a line that a failed change left and that cannot be cut off: %w", e.journalPath(), err)
		}
	}
	b, err := json.Marshal(je)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := e.journal.Write(b); err != nil {
		return e.failed(err)
	}
	if err := e.journal.Sync(); err != nil {
		return e.failed(err)
	}
	e.size += int64(len(b))
	return nil
}

// failed cuts a failed append off the journal and returns err for the client.
func (e *Embedded) failed(err error) error {
	if rerr := e.rollback(e.size); rerr != nil {
		e.log.Error("registry journal: cannot cut off a failed append; manifest changes are refused until it is", "err", rerr)
	}
	return fmt.Errorf("writing %s: %w", e.journalPath(), err)
}

// rollback truncates the journal to size bytes and fsyncs it. Until that succeeds the
// journal is dirty and appendJournal retries it first.
func (e *Embedded) rollback(size int64) error {
	e.size = size
	err := e.journal.Truncate(size)
	if err == nil {
		err = e.journal.Sync()
	}
	e.dirty = err
	return err
}

// Close closes the journal. The handler must not be used afterwards.
func (e *Embedded) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.journal.Close()
}

// isManifestPath reports whether p is /v2/<name>/manifests/<reference>.
func isManifestPath(p string) bool {
	elems := strings.Split(strings.TrimPrefix(p, "/"), "/")
	return len(elems) >= 4 && elems[0] == "v2" && elems[len(elems)-2] == "manifests"
}

// statusRecorder remembers the status the inner handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func writeRegistryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}
