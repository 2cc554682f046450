package ingest

import (
	"bytes"
	"context"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"

	"github.com/diplip/diplip/internal/assets"
)

// The sample MJPEG stream holds exactly 100 JPEGs (shared/media/SOURCE.md), each
// decodable in pure Go.
func TestSplitJPEGsOnTheSampleStream(t *testing.T) {
	p, err := assets.Media("vtest_10s.mjpeg")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	frames := SplitJPEGs(b)
	if len(frames) != 100 {
		t.Fatalf("%d frames, want 100", len(frames))
	}
	for _, i := range []int{0, 50, 99} {
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(frames[i]))
		if err != nil || cfg.Width != 768 {
			t.Fatalf("frame %d: %v %+v", i, err, cfg)
		}
	}
	if len(SplitJPEGs([]byte("no jpeg here"))) != 0 {
		t.Fatal("found frames in text")
	}
}

func FuzzSplitJPEGs(f *testing.F) {
	f.Add([]byte{0xff, 0xd8, 0xff, 0, 0xff, 0xd9, 0xff, 0xd8, 0xff, 1, 0xff, 0xd9})
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		for _, fr := range SplitJPEGs(b) {
			if !bytes.HasPrefix(fr, []byte{0xff, 0xd8, 0xff}) {
				t.Fatalf("frame does not start with SOI: %x", fr[:min(8, len(fr))])
			}
			total += len(fr)
		}
		if total > len(b) {
			t.Fatalf("frames hold %d bytes of %d", total, len(b))
		}
	})
}

// PushLoop tells its caller each answer: 201 as stored, a refusal with the gateway's
// status and error, and a gateway that did not answer as 0.
func TestPushLoopAnswers(t *testing.T) {
	var calls atomic.Int32
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/v1/streams/lobby/frames" || q.Get("camera") != "door" || q.Get("ts") == "" || r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("request %s %s (Authorization %q)", r.Method, r.URL, r.Header.Get("Authorization"))
		}
		if calls.Add(1) == 2 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"retry later"}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"camera":"door","seq":1}`)
	}))
	defer gw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type answer struct {
		status int
		err    error
	}
	answers := make(chan answer, 16)
	done := make(chan error, 1)
	go func() {
		done <- PushLoop(ctx, gw.URL, "tok", "lobby", "door", [][]byte{[]byte("a"), []byte("b")}, 200, func(status int, err error) {
			if len(answers) < cap(answers) {
				answers <- answer{status, err}
			}
		})
	}()
	for i, want := range []int{http.StatusCreated, http.StatusServiceUnavailable, http.StatusCreated} {
		a := <-answers
		if a.status != want || (a.err == nil) != (want == http.StatusCreated) {
			t.Fatalf("answer %d: %d, %v; want %d", i, a.status, a.err, want)
		}
	}
	gw.Close()
	for a := range answers {
		if a.status == 0 && a.err != nil {
			break // the closed gateway: no answer
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
