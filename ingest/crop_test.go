package ingest

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"
)

func testJPEG(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCropJPEG(t *testing.T) {
	frame := testJPEG(t, 64, 48)
	for _, tc := range []struct {
		box  string
		w, h int // 0: refused
	}{
		{"0,0,64,48", 64, 48},
		{"10.4,5,20.6,15", 11, 10},
		{"-10,-10,8,6", 8, 6}, // clamped to the frame
		{"60,40,1e9,1e9", 4, 8},
		{"70,50,80,60", 0, 0}, // outside
		{"1,2,3", 0, 0},
		{"a,b,c,d", 0, 0},
		{"NaN,0,5,5", 0, 0},
	} {
		out, err := CropJPEG(frame, tc.box)
		if tc.w == 0 {
			if err == nil {
				t.Errorf("box %q: cropped, want an error", tc.box)
			}
			continue
		}
		cfg, derr := jpeg.DecodeConfig(bytes.NewReader(out))
		if err != nil || derr != nil || cfg.Width != tc.w || cfg.Height != tc.h {
			t.Errorf("box %q: %dx%d (%v, %v), want %dx%d", tc.box, cfg.Width, cfg.Height, err, derr, tc.w, tc.h)
		}
	}
	if _, err := CropJPEG([]byte("not a jpeg"), "0,0,1,1"); err == nil {
		t.Error("cropped something that is not a JPEG")
	}
}

func FuzzCropJPEG(f *testing.F) {
	frame := testJPEG(f, 16, 16)
	for _, s := range []string{"0,0,8,8", "-1,-1,1e300,1", ",,,", "1,2,3,4,5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, box string) {
		if out, err := CropJPEG(frame, box); err == nil && len(out) == 0 {
			t.Fatalf("box %q: no image and no error", box)
		}
	})
}
