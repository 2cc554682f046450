package functions

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
)

// specFor parses a minimal spec for decoder on a w×h input, with extra output settings
// (YAML flow-map entries, e.g. "top_k: 3").
func specFor(t testing.TB, decoder string, w, h int, tensors []string, extra string) *Spec {
	t.Helper()
	out := fmt.Sprintf("decoder: %s, tensors: [%s]", decoder, strings.Join(tensors, ", "))
	if extra != "" {
		out += ", " + extra
	}
	s, err := ParseSpec(strings.NewReader(fmt.Sprintf("name: t\nmodel: m.onnx\ninput: {tensor: in, width: %d, height: %d}\noutput: {%s}\n", w, h, out)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// identity maps a w×h canvas onto a w×h source.
func identity(s *Spec) Geometry { return Fit(s.Input, s.Input.Width, s.Input.Height) }

func boxNear(a, b Box, tol float32) bool {
	return near(a.X1, b.X1, tol) && near(a.Y1, b.Y1, tol) && near(a.X2, b.X2, tol) && near(a.Y2, b.Y2, tol)
}

// YOLOv8/v11 ([4+C, A], anchors as columns): the best class per anchor, NMS within the
// class, boxes from centre and size in canvas pixels.
func TestYOLOv8(t *testing.T) {
	s := specFor(t, "yolo", 64, 64, []string{"output0"}, "")
	const C, A = 3, 5
	d := make([]float32, (4+C)*A)
	set := func(a int, cx, cy, w, h float32, scores ...float32) {
		for i, v := range append([]float32{cx, cy, w, h}, scores...) {
			d[i*A+a] = v
		}
	}
	set(1, 32, 16, 10, 20, 0.1, 0.9, 0.05) // class 1, kept
	set(2, 33, 16, 10, 20, 0.1, 0.8, 0.05) // same object, suppressed
	set(3, 10, 50, 4, 4, 0, 0.1, 0.5)      // class 2
	set(4, 10, 10, 4, 4, 0.2, 0.1, 0.1)    // below the threshold
	// [7 5]: so few anchors read as v5 by shape, so the spec says v8 (as fn init writes it).
	s.Output.YOLO = &YOLO{Variant: "v8"}
	r, err := yoloDecoder{}.Decode(s, []Tensor{{Name: "output0", Shape: []int64{4 + C, A}, Data: d}}, identity(s), []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Detections) != 2 || r.Detections[0].Label != "b" || !near(r.Detections[0].Score, 0.9, 1e-6) ||
		!boxNear(r.Detections[0].Box, Box{27, 6, 37, 26}, 1e-4) || r.Detections[1].ClassID != 2 {
		t.Fatalf("detections %+v", r.Detections)
	}
}

// The variant is told from the shape for real export sizes.
func TestYOLOVariantByShape(t *testing.T) {
	s := specFor(t, "yolo", 640, 640, []string{"o"}, "")
	for _, tc := range []struct {
		a, b int64
		want string
	}{{84, 8400, "v8"}, {25200, 85, "v5"}, {300, 6, "end2end"}, {-1, 8400, ""}} {
		if got := yoloVariant(s, tc.a, tc.b); got != tc.want {
			t.Errorf("[%d %d]: %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

// YOLOv5 ([A, 5+C]): score = objectness × class.
func TestYOLOv5(t *testing.T) {
	s := specFor(t, "yolo", 64, 64, []string{"output"}, "yolo: {variant: v5}")
	d := []float32{
		20, 20, 10, 10, 0.9, 0.1, 0.8, // class 1, 0.72
		40, 40, 10, 10, 0.2, 0.9, 0.9, // objectness too low
	}
	r, err := yoloDecoder{}.Decode(s, []Tensor{{Name: "output", Shape: []int64{2, 7}, Data: d}}, identity(s), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Detections) != 1 || r.Detections[0].ClassID != 1 || !near(r.Detections[0].Score, 0.72, 1e-6) ||
		!boxNear(r.Detections[0].Box, Box{15, 15, 25, 25}, 1e-4) {
		t.Fatalf("detections %+v", r.Detections)
	}
}

// End-to-end exports ([K, 6], NMS in the graph): rows kept as they are, no NMS, boxes
// mapped through the letterbox.
func TestYOLOEnd2End(t *testing.T) {
	s := specFor(t, "yolo", 64, 64, []string{"output0"}, "")
	d := []float32{
		10, 10, 30, 30, 0.9, 2,
		12, 12, 30, 30, 0.6, 2, // overlapping, kept: no NMS
		0, 0, 5, 5, 0.1, 0, // below the threshold
	}
	g := Fit(s.Input, 128, 64) // the source is twice as wide: r = 0.5
	r, err := yoloDecoder{}.Decode(s, []Tensor{{Name: "output0", Shape: []int64{3, 6}, Data: d}}, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Detections) != 2 || r.Detections[0].ClassID != 2 || !boxNear(r.Detections[0].Box, Box{20, 20, 60, 60}, 1e-4) {
		t.Fatalf("detections %+v", r.Detections)
	}
}

// GFL on a 32x32 input, one level of stride 16 (2x2 anchors), reg_max 3: a one-hot
// distribution at bin 1 is one stride from the anchor's centre.
func TestGFL(t *testing.T) {
	const C, R = 2, 3
	scores := make([]float32, 4*C)
	dists := make([]float32, 4*4*(R+1))
	for i := range dists {
		dists[i] = -30
	}
	scores[3*C+1] = 0.8 // anchor 3 (x 1, y 1), class 1
	scores[0*C+0] = 0.2 // below the threshold
	for side := range 4 {
		dists[3*4*(R+1)+side*(R+1)+1] = 30 // every side: bin 1
	}
	check := func(t *testing.T, s *Spec, outs []Tensor) {
		t.Helper()
		r, err := gflDecoder{}.Decode(s, outs, identity(s), nil)
		if err != nil {
			t.Fatal(err)
		}
		// centre (1.5×16, 1.5×16) = (24, 24), each side 16 away, clipped to the 32x32 image.
		if len(r.Detections) != 1 || r.Detections[0].ClassID != 1 || !near(r.Detections[0].Score, 0.8, 1e-6) ||
			!boxNear(r.Detections[0].Box, Box{8, 8, 32, 32}, 1e-3) {
			t.Fatalf("detections %+v", r.Detections)
		}
	}
	t.Run("scores-first", func(t *testing.T) {
		s := specFor(t, "gfl", 32, 32, []string{"cls", "dis"}, "gfl: {strides: [16], reg_max: 3}")
		check(t, s, []Tensor{{Name: "cls", Shape: []int64{4, C}, Data: scores}, {Name: "dis", Shape: []int64{4, 4 * (R + 1)}, Data: dists}})
	})
	t.Run("combined", func(t *testing.T) {
		s := specFor(t, "gfl", 32, 32, []string{"out"}, "gfl: {strides: [16], reg_max: 3, order: combined}")
		w := C + 4*(R+1)
		comb := make([]float32, 4*w)
		for a := range 4 {
			copy(comb[a*w:], scores[a*C:(a+1)*C])
			copy(comb[a*w+C:], dists[a*4*(R+1):(a+1)*4*(R+1)])
		}
		check(t, s, []Tensor{{Name: "out", Shape: []int64{4, int64(w)}, Data: comb}})
	})
}

// boxes-scores as UltraFace exports it: normalised corners and softmax-ed [background,
// face] scores.
func TestBoxesScores(t *testing.T) {
	s := specFor(t, "boxes-scores", 320, 240, []string{"boxes", "scores"}, "boxes: {normalized: true, background: first}")
	bx := []float32{0.1, 0.1, 0.3, 0.5, 0.11, 0.1, 0.31, 0.5, 0.7, 0.7, 0.8, 0.8}
	sc := []float32{0.1, 0.9, 0.2, 0.8, 0.95, 0.05}
	r, err := boxesScoresDecoder{}.Decode(s, []Tensor{{Name: "boxes", Shape: []int64{3, 4}, Data: bx}, {Name: "scores", Shape: []int64{3, 2}, Data: sc}},
		identity(s), []string{"face"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Detections) != 1 || r.Detections[0].Label != "face" || !boxNear(r.Detections[0].Box, Box{32, 24, 96, 120}, 1e-3) {
		t.Fatalf("detections %+v", r.Detections)
	}
	// The same boxes as centre and size in pixels, scores as raw sigmoid logits.
	s = specFor(t, "boxes-scores", 320, 240, []string{"boxes", "scores"}, "activation: sigmoid, boxes: {format: cxcywh}")
	r, err = boxesScoresDecoder{}.Decode(s, []Tensor{{Name: "boxes", Shape: []int64{1, 4}, Data: []float32{64, 72, 64, 96}},
		{Name: "scores", Shape: []int64{1, 1}, Data: []float32{2}}}, identity(s), nil)
	if err != nil || len(r.Detections) != 1 || !near(r.Detections[0].Score, sigmoid(2), 1e-6) || !boxNear(r.Detections[0].Box, Box{32, 24, 96, 120}, 1e-3) {
		t.Fatalf("cxcywh: %+v %v", r.Detections, err)
	}
}

// detr: RT-DETR's one tensor (normalised cx cy w h, then scores) and DETR's two (boxes,
// logits with a last no-object column, softmax); no NMS.
func TestDETR(t *testing.T) {
	s := specFor(t, "detr", 640, 640, []string{"output0"}, "activation: none")
	d := []float32{
		0.5, 0.5, 0.2, 0.2, 0.1, 0.9,
		0.51, 0.5, 0.2, 0.2, 0.85, 0.1, // overlaps, other class: kept
		0.1, 0.1, 0.1, 0.1, 0.1, 0.2, // below
	}
	r, err := detrDecoder{}.Decode(s, []Tensor{{Name: "output0", Shape: []int64{3, 6}, Data: d}}, identity(s), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Detections) != 2 || r.Detections[0].ClassID != 1 || !boxNear(r.Detections[0].Box, Box{256, 256, 384, 384}, 1e-3) {
		t.Fatalf("one tensor: %+v", r.Detections)
	}
	s = specFor(t, "detr", 640, 640, []string{"pred_boxes", "logits"}, "activation: softmax, boxes: {background: last}")
	r, err = detrDecoder{}.Decode(s, []Tensor{
		{Name: "pred_boxes", Shape: []int64{2, 4}, Data: []float32{0.5, 0.5, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1}},
		{Name: "logits", Shape: []int64{2, 3}, Data: []float32{5, 0, 0, 0, 0, 5}}, // query 2: no object
	}, identity(s), nil)
	if err != nil || len(r.Detections) != 1 || r.Detections[0].ClassID != 0 || r.Detections[0].Score < 0.98 {
		t.Fatalf("two tensors: %+v %v", r.Detections, err)
	}
}

func TestClassify(t *testing.T) {
	s := specFor(t, "classify", 224, 224, []string{"logits"}, "top_k: 2")
	r, err := classifyDecoder{}.Decode(s, []Tensor{{Name: "logits", Shape: []int64{4}, Data: []float32{1, 3, 2, float32(math.NaN())}}}, Geometry{}, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	// a NaN logit makes the softmax NaN everywhere: nothing finite to report.
	if len(r.Labels) != 0 {
		t.Fatalf("NaN logits: %+v", r.Labels)
	}
	r, err = classifyDecoder{}.Decode(s, []Tensor{{Name: "logits", Shape: []int64{4, 1, 1}, Data: []float32{1, 3, 2, 0}}}, Geometry{}, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	e := []float64{math.E, math.Exp(3), math.Exp(2), 1}
	sum := e[0] + e[1] + e[2] + e[3]
	if len(r.Labels) != 2 || r.Labels[0].Label != "b" || r.Labels[1].ClassID != 2 || !near(r.Labels[0].Score, float32(e[1]/sum), 1e-6) {
		t.Fatalf("labels %+v", r.Labels)
	}
	s = specFor(t, "classify", 224, 224, []string{"p"}, "activation: sigmoid, score_threshold: 0.5")
	r, _ = classifyDecoder{}.Decode(s, []Tensor{{Name: "p", Shape: []int64{3}, Data: []float32{2, -2, 0.5}}}, Geometry{}, nil)
	if len(r.Labels) != 2 || r.Labels[0].ClassID != 0 || r.Labels[1].ClassID != 2 {
		t.Fatalf("sigmoid: %+v", r.Labels)
	}
}

func TestEmbed(t *testing.T) {
	s := specFor(t, "embed", 128, 256, []string{"e"}, "")
	r, err := embedDecoder{}.Decode(s, []Tensor{{Name: "e", Shape: []int64{2}, Data: []float32{3, 4}}}, Geometry{}, nil)
	if err != nil || len(r.Embedding) != 2 || !near(r.Embedding[0], 0.6, 1e-6) || !near(r.Embedding[1], 0.8, 1e-6) {
		t.Fatalf("%+v %v", r.Embedding, err)
	}
	for _, bad := range [][]float32{{0, 0}, {float32(math.NaN()), 1}, {float32(math.Inf(1)), 1}, {}} {
		if _, err := (embedDecoder{}).Decode(s, []Tensor{{Name: "e", Shape: []int64{int64(len(bad))}, Data: bad}}, Geometry{}, nil); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// CheckOutputs names the tensor, what the decoder wants and what the model gives.
func TestCheckOutputsNamesBothShapes(t *testing.T) {
	for _, tc := range []struct {
		decoder, extra string
		outs           []TensorInfo
		want           []string
	}{
		{"yolo", "", []TensorInfo{{"output0", []int64{1, 84}}}, []string{`"output0"`, "[1 84]", "4+classes"}},
		{"yolo", "yolo: {variant: end2end}", []TensorInfo{{"output0", []int64{1, 300, 7}}}, []string{"[N boxes 6]", "[1 300 7]"}},
		{"yolo", "", []TensorInfo{{"o", []int64{1, -1, -1}}}, []string{"output.yolo.variant"}},
		{"gfl", "", []TensorInfo{{"c8", []int64{1, 1600, 80}}, {"c16", []int64{1, 400, 80}}, {"c32", []int64{1, 100, 80}},
			{"d8", []int64{1, 1600, 32}}, {"d16", []int64{1, 400, 32}}, {"d32", []int64{1, 99, 32}}},
			[]string{`"d32"`, "stride 32", "[N 100 32]", "[1 99 32]"}},
		{"gfl", "", []TensorInfo{{"d8", []int64{1, 1600, 32}}, {"d16", []int64{1, 400, 32}}, {"d32", []int64{1, 100, 32}},
			{"c8", []int64{1, 1600, 80}}, {"c16", []int64{1, 400, 80}}, {"c32", []int64{1, 100, 80}}},
			[]string{`"c8"`, "reg_max 7", "[N 1600 32]", "[1 1600 80]"}},
		{"boxes-scores", "", []TensorInfo{{"scores", []int64{1, 4420, 2}}, {"boxes", []int64{1, 4420, 4}}}, []string{`"scores"`, "[N anchors 4]", "[1 4420 2]"}},
		{"detr", "", []TensorInfo{{"out", []int64{1, 300}}}, []string{`"out"`, "[N queries 4+classes]", "[1 300]"}},
		{"classify", "", []TensorInfo{{"logits", []int64{1, 1000, 7, 7}}}, []string{`"logits"`, "[N classes]", "[1 1000 7 7]"}},
		{"embed", "", []TensorInfo{{"e", []int64{1}}}, []string{`"e"`, "[N dimensions]", "[1]"}},
	} {
		names := []string{}
		for _, o := range tc.outs {
			names = append(names, o.Name)
		}
		s := specFor(t, tc.decoder, 320, 320, names, tc.extra)
		d, _ := DecoderFor(tc.decoder)
		err := d.CheckOutputs(s, tc.outs)
		if err == nil {
			t.Errorf("%s %v: no error", tc.decoder, tc.outs)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not mention %q", tc.decoder, err, w)
			}
		}
	}
}

// decodeCases are, per decoder, a spec and output shapes to fill with values.
func decodeCases(t testing.TB) []struct {
	spec   *Spec
	shapes [][]int64
} {
	type c = struct {
		spec   *Spec
		shapes [][]int64
	}
	return []c{
		{specFor(t, "yolox", 64, 64, []string{"o"}, ""), [][]int64{{84, 7}}},
		{specFor(t, "yolo", 64, 64, []string{"o"}, ""), [][]int64{{6, 84}}},
		{specFor(t, "yolo", 64, 64, []string{"o"}, "yolo: {variant: v5}"), [][]int64{{84, 7}}},
		{specFor(t, "yolo", 64, 64, []string{"o"}, "yolo: {variant: end2end}"), [][]int64{{10, 6}}},
		{specFor(t, "gfl", 32, 32, []string{"c", "d"}, "gfl: {strides: [16], reg_max: 3}"), [][]int64{{4, 2}, {4, 16}}},
		{specFor(t, "gfl", 32, 32, []string{"o"}, "gfl: {strides: [16], reg_max: 3, order: combined}"), [][]int64{{4, 18}}},
		{specFor(t, "boxes-scores", 32, 32, []string{"b", "s"}, "activation: softmax, boxes: {background: first}"), [][]int64{{5, 4}, {5, 3}}},
		{specFor(t, "detr", 32, 32, []string{"o"}, ""), [][]int64{{5, 7}}},
		{specFor(t, "detr", 32, 32, []string{"b", "l"}, "activation: softmax, boxes: {background: last}"), [][]int64{{5, 4}, {5, 3}}},
		{specFor(t, "classify", 32, 32, []string{"o"}, ""), [][]int64{{10}}},
		{specFor(t, "embed", 32, 32, []string{"o"}, ""), [][]int64{{8}}},
		{specFor(t, "raw", 32, 32, []string{"o"}, ""), [][]int64{{8}}},
	}
}

// checkFinite fails on a number in a result that JSON could not carry.
func checkFinite(t testing.TB, r FrameResult) {
	t.Helper()
	for _, d := range r.Detections {
		if !finite(d.Score, d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2) {
			t.Fatalf("non-finite detection %+v", d)
		}
	}
	for _, l := range r.Labels {
		if !finite(l.Score) {
			t.Fatalf("non-finite label %+v", l)
		}
	}
	if !finite(r.Embedding...) {
		t.Fatalf("non-finite embedding %v", r.Embedding)
	}
}

// Every decoder survives NaN, ±Inf, huge values, empty outputs and shapes that disagree
// with their data: an error or a result with finite numbers only, never a panic.
func TestDecodersSurviveBadOutputs(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	fills := map[string]func(i int) float32{
		"NaN": func(int) float32 { return nan }, "+Inf": func(int) float32 { return inf }, "-Inf": func(int) float32 { return -inf },
		"mixed": func(i int) float32 { return []float32{nan, inf, -inf, 0.9, 1e30, -1e30, 0.5}[i%7] },
		"1e38":  func(int) float32 { return 1e38 },
	}
	for _, tc := range decodeCases(t) {
		dec, _ := DecoderFor(tc.spec.Output.Decoder)
		g := Fit(tc.spec.Input, 100, 50)
		for _, fill := range fills {
			outs := make([]Tensor, len(tc.shapes))
			for j, sh := range tc.shapes {
				n := 1
				for _, d := range sh {
					n *= int(d)
				}
				outs[j] = Tensor{Name: tc.spec.Output.Tensors[j], Shape: sh, Data: make([]float32, n)}
				for i := range outs[j].Data {
					outs[j].Data[i] = fill(i)
				}
			}
			r, err := dec.Decode(tc.spec, outs, g, []string{"x"})
			if err == nil && tc.spec.Output.Decoder != "raw" {
				checkFinite(t, r)
			}
		}
		// Empty and inconsistent outputs.
		for _, outs := range [][]Tensor{
			nil,
			{{Name: "o", Shape: []int64{0, 0}}, {Name: "o", Shape: []int64{0, 0}}},
			{{Name: "o", Shape: []int64{0}}, {Name: "o", Shape: []int64{0}}},
			{{Name: "o", Shape: []int64{3, 3}, Data: []float32{1}}, {Name: "o", Shape: []int64{3, 3}, Data: []float32{1}}},
			{{Name: "o", Shape: []int64{-1, 4}, Data: []float32{1}}, {Name: "o", Shape: []int64{-1, 4}}},
		} {
			if len(outs) > len(tc.shapes) {
				outs = outs[:len(tc.shapes)]
			}
			_, _ = dec.Decode(tc.spec, outs, g, nil)
		}
	}
}

// FuzzDecoders feeds every decoder outputs of fuzzed values (and, for one-output
// decoders, fuzzed shapes): no panic, finite numbers only.
func FuzzDecoders(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x7f, 0, 0, 0xc0, 0x7f, 1, 2, 3, 4}, uint8(3), uint8(4))
	f.Add([]byte{}, uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, a, b uint8) {
		vals := make([]float32, len(raw)/4)
		for i := range vals {
			vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[i*4:]))
		}
		at := func(i int) float32 {
			if len(vals) == 0 {
				return 0
			}
			return vals[i%len(vals)]
		}
		for _, tc := range decodeCases(t) {
			dec, _ := DecoderFor(tc.spec.Output.Decoder)
			outs := make([]Tensor, len(tc.shapes))
			for j, sh := range tc.shapes {
				if len(tc.shapes) == 1 && len(sh) == 2 {
					sh = []int64{int64(a), int64(b)}
				}
				n := 1
				for _, d := range sh {
					n *= int(d)
				}
				outs[j] = Tensor{Name: tc.spec.Output.Tensors[j], Shape: sh, Data: make([]float32, n)}
				for i := range outs[j].Data {
					outs[j].Data[i] = at(i + j)
				}
			}
			r, err := dec.Decode(tc.spec, outs, Fit(tc.spec.Input, 100, 50), []string{"x"})
			if err == nil && tc.spec.Output.Decoder != "raw" {
				checkFinite(t, r)
			}
		}
	})
}

// A labels file whose count contradicts the classes the outputs give is refused (fn
// build), naming both counts; where the shapes do not say, any count passes.
func TestCheckLabels(t *testing.T) {
	three := []string{"a", "b", "c"}
	for _, tc := range []struct {
		spec *Spec
		outs []TensorInfo
		want int // classes; -1: not known
	}{
		{specFor(t, "yolox", 416, 416, []string{"o"}, ""), []TensorInfo{{"o", []int64{1, 3549, 85}}}, 80},
		{specFor(t, "yolo", 640, 640, []string{"o"}, ""), []TensorInfo{{"o", []int64{1, 84, 8400}}}, 80},
		{specFor(t, "yolo", 640, 640, []string{"o"}, ""), []TensorInfo{{"o", []int64{1, 25200, 85}}}, 80},
		{specFor(t, "yolo", 640, 640, []string{"o"}, ""), []TensorInfo{{"o", []int64{1, 300, 6}}}, -1},
		{specFor(t, "gfl", 320, 320, []string{"a", "b", "c", "d", "e", "f"}, ""), []TensorInfo{{"a", []int64{1, 1600, 80}}}, 80},
		{specFor(t, "boxes-scores", 320, 240, []string{"b", "s"}, "boxes: {background: first}"), []TensorInfo{{"b", []int64{1, 4420, 4}}, {"s", []int64{1, 4420, 2}}}, 1},
		{specFor(t, "detr", 640, 640, []string{"o"}, ""), []TensorInfo{{"o", []int64{1, 300, 84}}}, 80},
		{specFor(t, "classify", 224, 224, []string{"o"}, ""), []TensorInfo{{"o", []int64{1, 1000}}}, 1000},
		{specFor(t, "embed", 128, 256, []string{"o"}, ""), []TensorInfo{{"o", []int64{1, 256}}}, -1},
		{specFor(t, "classify", 224, 224, []string{"o"}, ""), []TensorInfo{{"o", []int64{1, 3}}}, 3},
	} {
		err := CheckLabels(tc.spec, tc.outs, three)
		switch {
		case tc.want == -1 || tc.want == 3:
			if err != nil {
				t.Errorf("%s %v: %v", tc.spec.Output.Decoder, tc.outs, err)
			}
		case err == nil || !strings.Contains(err.Error(), fmt.Sprintf("3 names, but the model's outputs (%s", tc.outs[0])) ||
			!strings.Contains(err.Error(), fmt.Sprintf("give %d classes", tc.want)):
			t.Errorf("%s %v: %v, want %d classes named", tc.spec.Output.Decoder, tc.outs, err, tc.want)
		}
	}
}
