package main

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diplip/diplip/functions/pipeline"
	"github.com/diplip/diplip/internal/testkit"
)

// fn init on the shipped NanoDet-m and re-id models writes specs that fn build accepts
// and that give the same results as the example functions (which functions/pipeline
// holds to SOURCE.md's observations): no hand-editing needed.
func TestFnInitNanoDetAndReID(t *testing.T) {
	store := t.TempDir()
	for _, tc := range []struct {
		example, model, labels, family string
	}{
		{"nanodet-m", "nanodet_m_320.onnx", "coco80.txt", "family gfl"},
		{"person-reid", "person-reidentification-retail-0288.onnx", "", "family embed"},
	} {
		t.Run(tc.example, func(t *testing.T) {
			ex := filepath.Join("../../functions/examples", tc.example)
			dir := filepath.Join(t.TempDir(), "fn")
			args := []string{"fn", "init", filepath.Join(ex, tc.model), "-o", dir}
			if tc.labels != "" {
				args = append(args, "--labels", filepath.Join(ex, tc.labels))
			}
			out := run(t, 0, args...)
			if !strings.Contains(out, tc.family) || !strings.Contains(out, "because") || !strings.Contains(out, "next: diplip fn build") {
				t.Fatalf("fn init said:\n%s", out)
			}
			t.Logf("fn init:\n%s", out)
			run(t, 0, "fn", "build", dir, "-t", "127.0.0.1:5999/fn/"+tc.example+":init", "--store", store)

			got, err := pipeline.Load(dir, pipeline.Options{IntraOpThreads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			want, err := pipeline.Load(ex, pipeline.Options{IntraOpThreads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			frames := [][]byte{testkit.Media(t, "messi5.jpg"), testkit.Media(t, "vtest_frame600.jpg")}
			a, _, err1 := got.Run(frames)
			b, _, err2 := want.Run(frames)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			for i := range frames {
				if a[i].Err != nil || !slices.Equal(a[i].Detections, b[i].Detections) || !slices.Equal(a[i].Embedding, b[i].Embedding) ||
					len(a[i].Detections)+len(a[i].Embedding) == 0 {
					t.Fatalf("frame %d: fn init's function gives %+v, the example %+v", i, a[i], b[i])
				}
			}
		})
	}
}

// fn init refuses, with exit 2 and the reason, what it cannot make a function of.
func TestFnInitRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	img := []int64{1, 3, 8, 8}
	noImage := write("tokens.onnx", tinyModel("Identity", map[string][]int64{"x": {1, 4}}, []string{"x"}, "y", []int64{1, 4}))
	twoImages := write("two.onnx", tinyModel("Add", map[string][]int64{"a": img, "b": img}, []string{"a", "b"}, "y", img))
	labels := write("two-labels.txt", []byte("a\nb\n"))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a JPEG", []string{"fn", "init", "../../.cache/media/messi5.jpg", "-o", filepath.Join(dir, "j")}, "is not an ONNX model"},
		{"no image input", []string{"fn", "init", noImage, "-o", filepath.Join(dir, "n")}, "no image input"},
		{"two image inputs", []string{"fn", "init", twoImages, "-o", filepath.Join(dir, "t")}, "2 image inputs"},
		{"labels that contradict the model", []string{"fn", "init", "../../functions/examples/nanodet-m/nanodet_m_320.onnx", "--labels", labels, "-o", filepath.Join(dir, "l")},
			"2 names, the model has 80 classes"},
		{"no such file", []string{"fn", "init", filepath.Join(dir, "nope.onnx")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := run(t, 2, tc.args...); !strings.Contains(msg, tc.want) {
				t.Fatalf("stderr %q does not mention %q", msg, tc.want)
			}
		})
	}
}

// fn build refuses a labels file whose count contradicts the model's classes.
func TestFnBuildRefusesLabelsThatContradictTheModel(t *testing.T) {
	ex := "../../functions/examples/nanodet-m"
	dir := t.TempDir()
	spec, _ := os.ReadFile(filepath.Join(ex, "function.yaml"))
	model, _ := filepath.Abs(filepath.Join(ex, "nanodet_m_320.onnx"))
	os.WriteFile(filepath.Join(dir, "function.yaml"), spec, 0o644)
	os.WriteFile(filepath.Join(dir, "coco80.txt"), []byte("person\ncar\n"), 0o644)
	if err := os.Symlink(model, filepath.Join(dir, "nanodet_m_320.onnx")); err != nil {
		t.Fatal(err)
	}
	msg := run(t, 1, "fn", "build", dir, "-t", "127.0.0.1:5999/fn/x:v1", "--store", t.TempDir())
	if !strings.Contains(msg, "2 names") || !strings.Contains(msg, "80 classes") || !strings.Contains(msg, "cls_pred_stride_8[1 1600 80]") {
		t.Fatalf("fn build said %q", msg)
	}
}

// tinyModel encodes an ONNX model (protobuf, by hand) of one node op over the named
// float inputs, with one float output.
func tinyModel(op string, inputs map[string][]int64, order []string, output string, outShape []int64) []byte {
	varint := func(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
	field := func(b []byte, num int, v []byte) []byte { // length-delimited
		b = varint(b, uint64(num<<3|2))
		return append(varint(b, uint64(len(v))), v...)
	}
	vint := func(b []byte, num int, v uint64) []byte { return varint(varint(b, uint64(num<<3)), v) }
	valueInfo := func(name string, shape []int64) []byte {
		var sh []byte
		for _, d := range shape {
			sh = field(sh, 1, vint(nil, 1, uint64(d))) // Dimension.dim_value
		}
		tensor := field(vint(nil, 1, 1), 2, sh)                             // elem_type FLOAT, shape
		return field(field(nil, 1, []byte(name)), 2, field(nil, 1, tensor)) // name, type.tensor_type
	}
	var node []byte
	for _, in := range order {
		node = field(node, 1, []byte(in))
	}
	node = field(field(node, 2, []byte(output)), 4, []byte(op))
	graph := field(field(nil, 1, node), 2, []byte("g"))
	for _, in := range order {
		graph = field(graph, 11, valueInfo(in, inputs[in]))
	}
	graph = field(graph, 12, valueInfo(output, outShape))
	model := vint(nil, 1, 8)                   // ir_version
	model = field(model, 8, vint(nil, 2, 13))  // opset_import {version 13}
	return bytes.Clone(field(model, 7, graph)) // graph
}

// A constructed Ultralytics-style model (a graph that emits a constant YOLOv8 output
// [1 6 84] for a 64x64 image, with the metadata Ultralytics writes): fn init reads the
// metadata through ONNX Runtime (names → labels.txt, task), picks yolo v8, fn build accepts
// it, and the function finds the one object the constant output holds.
func TestFnInitUltralyticsMetadata(t *testing.T) {
	const C, A = 2, 84 // 64x64: 8x8 + 4x4 + 2x2 anchors
	vals := make([]float32, (4+C)*A)
	for i, v := range []float32{32, 16, 10, 20, 0.1, 0.9} { // anchor 5: cx cy w h, class 1 at 0.9
		vals[i*A+5] = v
	}
	model := constModel([]int64{1, 3, 64, 64}, "output0", []int64{1, 4 + C, A}, vals, map[string]string{
		"author": "Ultralytics", "task": "detect", "imgsz": "[64, 64]", "names": "{0: 'cat', 1: 'dog'}", "stride": "32"})
	dir := t.TempDir()
	p := filepath.Join(dir, "yolo11n.onnx")
	if err := os.WriteFile(p, model, 0o644); err != nil {
		t.Fatal(err)
	}
	fn := filepath.Join(dir, "fn")
	out := run(t, 0, "fn", "init", p, "-o", fn)
	if !strings.Contains(out, "family yolo (Ultralytics YOLOv8/YOLO11)") || !strings.Contains(out, `metadata says Ultralytics`) {
		t.Fatalf("fn init said:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(fn, "labels.txt")); string(b) != "cat\ndog\n" {
		t.Fatalf("labels.txt %q", b)
	}
	run(t, 0, "fn", "build", fn, "-t", "127.0.0.1:5999/fn/yolo11n:init", "--store", t.TempDir())
	f, err := pipeline.Load(fn, pipeline.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, _, err := f.Run([][]byte{testkit.Media(t, "chelsea.png")}) // 451x300: r = 64/451
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	d := res[0].Detections
	// The centred letterbox puts the 64x42 image at y offset 11; the box (27 6 37 26) in
	// the canvas maps back to about (190 0 260 106) in the photo.
	if len(d) != 1 || d[0].Label != "dog" || d[0].Score != 0.9 || d[0].Box.X1 < 185 || d[0].Box.X1 > 195 || d[0].Box.X2 < 255 || d[0].Box.X2 > 265 {
		t.Fatalf("detections %+v", d)
	}
}

// constModel encodes an ONNX model whose one node, a Constant, emits values as a float
// output of outShape, whatever the float image input; metadata goes in metadata_props.
func constModel(inShape []int64, output string, outShape []int64, values []float32, metadata map[string]string) []byte {
	varint := func(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
	field := func(b []byte, num int, v []byte) []byte {
		b = varint(b, uint64(num<<3|2))
		return append(varint(b, uint64(len(v))), v...)
	}
	vint := func(b []byte, num int, v uint64) []byte { return varint(varint(b, uint64(num<<3)), v) }
	valueInfo := func(name string, shape []int64) []byte {
		var sh []byte
		for _, d := range shape {
			sh = field(sh, 1, vint(nil, 1, uint64(d)))
		}
		return field(field(nil, 1, []byte(name)), 2, field(nil, 1, field(vint(nil, 1, 1), 2, sh)))
	}
	var tensor []byte
	for _, d := range outShape {
		tensor = vint(tensor, 1, uint64(d)) // dims
	}
	tensor = vint(tensor, 2, 1) // data_type FLOAT
	raw := make([]byte, 0, 4*len(values))
	for _, v := range values {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	tensor = field(tensor, 9, raw)                                        // raw_data
	attr := vint(field(field(nil, 1, []byte("value")), 5, tensor), 20, 4) // name, t, type TENSOR
	node := field(field(field(nil, 2, []byte(output)), 4, []byte("Constant")), 5, attr)
	graph := field(field(nil, 1, node), 2, []byte("g"))
	graph = field(graph, 11, valueInfo("images", inShape))
	graph = field(graph, 12, valueInfo(output, outShape))
	model := field(vint(nil, 1, 8), 8, vint(nil, 2, 13))
	model = field(model, 7, graph)
	for _, k := range slices.Sorted(maps.Keys(metadata)) {
		model = field(model, 14, field(field(nil, 1, []byte(k)), 2, []byte(metadata[k])))
	}
	return model
}
