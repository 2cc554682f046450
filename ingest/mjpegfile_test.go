package ingest

import (
	"bytes"
	"image/jpeg"
	"os"
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
