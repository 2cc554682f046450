package vision

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/internal/assets"
)

func f32(v float32) *float32 { return &v }

// A 2x1 BGR image letterboxed top-left into a 4x4 canvas: scale 2, so it fills the top
// 4x2 and the rest is padding; the tensor is NCHW in RGB order, with value = p*scale.
func TestFillLetterboxNCHWRGB(t *testing.T) {
	m := gocv.NewMatWithSize(1, 2, gocv.MatTypeCV8UC3)
	defer m.Close()
	m.SetUCharAt(0, 0, 10) // pixel 0: B=10 G=20 R=30
	m.SetUCharAt(0, 1, 20)
	m.SetUCharAt(0, 2, 30)
	m.SetUCharAt(0, 3, 10) // pixel 1: same colour, so bilinear upscaling keeps it exact
	m.SetUCharAt(0, 4, 20)
	m.SetUCharAt(0, 5, 30)
	in := functions.Input{Width: 4, Height: 4, Layout: "NCHW", Channels: "RGB", Resize: "letterbox", Anchor: "top-left",
		Pad: f32(114), Scale: f32(0.5), Mean: []float32{0, 0, 0}, Std: []float32{1, 1, 1}}
	dst := make([]float32, TensorLen(in))
	g, err := Fill(m, in, dst)
	if err != nil {
		t.Fatal(err)
	}
	if g.W != 4 || g.H != 2 {
		t.Fatalf("geometry %+v, want the image resized to 4x2", g)
	}
	for c, want := range []float32{15, 10, 5} { // R, G, B at scale 0.5
		for i := range 16 {
			v := dst[c*16+i]
			exp := want
			if i >= 8 { // rows 2 and 3 are padding
				exp = 57
			}
			if v != exp {
				t.Fatalf("channel %d value %d = %v, want %v", c, i, v, exp)
			}
		}
	}
}

func TestFillNHWCBGRWithMeanStd(t *testing.T) {
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(100, 150, 200, 0), 2, 2, gocv.MatTypeCV8UC3)
	defer m.Close()
	in := functions.Input{Width: 2, Height: 2, Layout: "NHWC", Channels: "BGR", Resize: "stretch",
		Pad: f32(0), Scale: f32(1), Mean: []float32{100, 100, 100}, Std: []float32{50, 50, 100}}
	dst := make([]float32, TensorLen(in))
	if _, err := Fill(m, in, dst); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if got := dst[i*3 : i*3+3]; got[0] != 0 || got[1] != 1 || got[2] != 1 {
			t.Fatalf("pixel %d = %v, want [0 1 1] ((B-100)/50, (G-100)/50, (R-100)/100)", i, got)
		}
	}
}

func TestDecodeRealPhoto(t *testing.T) {
	p, err := assets.Media("messi5.jpg")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Cols() != 548 || m.Rows() != 342 || m.Channels() != 3 {
		t.Fatalf("decoded %dx%dx%d, want 548x342x3", m.Cols(), m.Rows(), m.Channels())
	}
	// A truncated JPEG: the header is fine, the data is not.
	if m2, err := Decode(b[:len(b)/3]); err == nil {
		// OpenCV may return a partially decoded image for a truncated JPEG; if it does it
		// must still be the right size, never garbage dimensions.
		if m2.Cols() != 548 || m2.Rows() != 342 {
			t.Fatalf("truncated JPEG decoded as %dx%d", m2.Cols(), m2.Rows())
		}
		m2.Close()
	} else if !errors.Is(err, ErrCorruptFrame) {
		t.Fatalf("truncated JPEG: %v, want ErrCorruptFrame", err)
	}
}

func TestDecodeRejectsGarbageAndBombs(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"text", []byte("hello, this is not an image")},
		{"png declaring 100000x100000", pngHeader(100000, 100000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode(tc.in)
			if err == nil {
				m.Close()
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrCorruptFrame) {
				t.Fatalf("err = %v, want ErrCorruptFrame", err)
			}
		})
	}
}

// pngHeader is a PNG signature and IHDR chunk declaring w×h RGB pixels, with no data.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	_ = binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0xff, 0xd8, 0xff, 0xe0})
	f.Add(pngHeader(1, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptFrame) {
				t.Fatalf("error does not wrap ErrCorruptFrame: %v", err)
			}
			return
		}
		defer m.Close()
		if m.Cols()*m.Rows() > MaxPixels || m.Channels() != 3 {
			t.Fatalf("decoded %dx%dx%d", m.Cols(), m.Rows(), m.Channels())
		}
	})
}
