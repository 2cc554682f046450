package functions

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The models as functions/onnx.Inspect reads them (shared/models, checked there).
var (
	nanodetInfo = &ModelInfo{Producer: "pytorch",
		Inputs: []ModelTensor{{"input.1", []int64{1, 3, 320, 320}, "float"}},
		Outputs: []ModelTensor{{"cls_pred_stride_8", []int64{1, 1600, 80}, "float"}, {"cls_pred_stride_16", []int64{1, 400, 80}, "float"},
			{"cls_pred_stride_32", []int64{1, 100, 80}, "float"}, {"dis_pred_stride_8", []int64{1, 1600, 32}, "float"},
			{"dis_pred_stride_16", []int64{1, 400, 32}, "float"}, {"dis_pred_stride_32", []int64{1, 100, 32}, "float"}}}
	reidInfo = &ModelInfo{Producer: "tf2onnx",
		Inputs:  []ModelTensor{{"inputs:0", []int64{1, 256, 128, 3}, "float"}},
		Outputs: []ModelTensor{{"Identity:0", []int64{1, 256}, "float"}}}
	yoloxInfo = &ModelInfo{Producer: "pytorch",
		Inputs:  []ModelTensor{{"images", []int64{1, 3, 416, 416}, "float"}},
		Outputs: []ModelTensor{{"output", []int64{1, 3549, 85}, "float"}}}
)

// propose runs Propose and checks that its YAML reads back as the same spec.
func propose(t *testing.T, m *ModelInfo, labels []string) *Proposal {
	t.Helper()
	p, err := Propose(m, "fn", "model.onnx", labels)
	if err != nil {
		t.Fatal(err)
	}
	y := p.YAML("model.onnx")
	back, err := ParseSpec(bytes.NewReader(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	a, _ := json.Marshal(p.Spec)
	b, _ := json.Marshal(back)
	if !bytes.Equal(a, b) {
		t.Fatalf("the YAML reads back differently:\n%s\nproposed %s\nread     %s", y, a, b)
	}
	return p
}

func loadExampleSpec(t *testing.T, name string) *Spec {
	t.Helper()
	s, err := LoadSpec("examples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fn init on the shipped models proposes the example specs' input and output sections
// (the examples are checked against the real models in functions/pipeline).
func TestProposeMatchesTheExamples(t *testing.T) {
	for _, tc := range []struct {
		example string
		info    *ModelInfo
		family  string
	}{{"nanodet-m", nanodetInfo, "gfl"}, {"person-reid", reidInfo, "embed"}, {"yolox-nano", yoloxInfo, "yolox"}} {
		p := propose(t, tc.info, nil)
		if !strings.HasPrefix(p.Family, tc.family) {
			t.Errorf("%s: family %q", tc.example, p.Family)
		}
		want := loadExampleSpec(t, tc.example)
		a, _ := json.Marshal([]any{p.Spec.Input, p.Spec.Output})
		b, _ := json.Marshal([]any{want.Input, want.Output})
		if !bytes.Equal(a, b) {
			t.Errorf("%s:\nproposed %s\nexample  %s\n%s", tc.example, a, b, p.YAML("m.onnx"))
		}
		if len(p.Why) == 0 {
			t.Errorf("%s: no reason given", tc.example)
		}
	}
}

func TestProposeFamilies(t *testing.T) {
	in := func(shape ...int64) []ModelTensor { return []ModelTensor{{"images", shape, "float"}} }
	outs := func(ts ...ModelTensor) []ModelTensor { return ts }
	coco := `{0: 'person', 1: "bicycle", 2: 'car'}`
	for _, tc := range []struct {
		name   string
		m      *ModelInfo
		labels []string
		check  func(p *Proposal) bool
	}{
		{"yolov8 with metadata", &ModelInfo{Inputs: in(1, 3, -1, -1), Outputs: outs(ModelTensor{"output0", []int64{1, 7, -1}, "float"}),
			Metadata: map[string]string{"author": "Ultralytics", "task": "detect", "names": coco, "imgsz": "[640, 640]"}}, nil,
			func(p *Proposal) bool {
				return p.Spec.Output.Decoder == "yolo" && p.Spec.Output.YOLO.Variant == "v8" && p.Spec.Input.Width == 640 &&
					len(p.Labels) == 3 && p.Labels[1] == "bicycle" && *p.Spec.Input.Scale == float32(1.0/255)
			}},
		{"yolov8 by shape", &ModelInfo{Inputs: in(1, 3, 640, 640), Outputs: outs(ModelTensor{"output0", []int64{1, 84, 8400}, "float"})}, nil,
			func(p *Proposal) bool { return p.Spec.Output.Decoder == "yolo" && p.Spec.Output.YOLO.Variant == "v8" }},
		{"yolov5", &ModelInfo{Inputs: in(1, 3, 640, 640), Outputs: outs(ModelTensor{"output", []int64{1, 25200, 85}, "float"})}, nil,
			func(p *Proposal) bool { return p.Spec.Output.YOLO.Variant == "v5" }},
		{"end2end", &ModelInfo{Inputs: in(1, 3, 640, 640), Outputs: outs(ModelTensor{"output0", []int64{1, 300, 6}, "float"})}, nil,
			func(p *Proposal) bool { return p.Spec.Output.YOLO.Variant == "end2end" }},
		{"nanodet-plus", &ModelInfo{Inputs: in(1, 3, 416, 416), Outputs: outs(ModelTensor{"output", []int64{1, 3598, 112}, "float"})}, nil,
			func(p *Proposal) bool {
				return p.Spec.Output.Decoder == "gfl" && p.Spec.Output.GFL.Order == "combined" && len(p.Spec.Output.GFL.Strides) == 4
			}},
		{"picodet 4 levels, interleaved, unnamed", &ModelInfo{Inputs: in(1, 3, 416, 416), Outputs: outs(
			ModelTensor{"a", []int64{1, 2704, 80}, "float"}, ModelTensor{"b", []int64{1, 2704, 32}, "float"},
			ModelTensor{"c", []int64{1, 676, 80}, "float"}, ModelTensor{"d", []int64{1, 676, 32}, "float"},
			ModelTensor{"e", []int64{1, 169, 80}, "float"}, ModelTensor{"f", []int64{1, 169, 32}, "float"},
			ModelTensor{"g", []int64{1, 49, 80}, "float"}, ModelTensor{"h", []int64{1, 49, 32}, "float"})}, nil,
			func(p *Proposal) bool {
				g := p.Spec.Output.GFL
				return g != nil && len(g.Strides) == 4 && g.Strides[3] == 64 && g.RegMax == 7 &&
					strings.Join(p.Spec.Output.Tensors, "") == "acegbdfh" && strings.Contains(p.Comments["output.tensors"], "CHECK")
			}},
		{"ultraface", &ModelInfo{Inputs: in(1, 3, 240, 320), Outputs: outs(ModelTensor{"scores", []int64{1, 4420, 2}, "float"}, ModelTensor{"boxes", []int64{1, 4420, 4}, "float"})}, []string{"face"},
			func(p *Proposal) bool {
				o := p.Spec.Output
				return o.Decoder == "boxes-scores" && o.Tensors[0] == "boxes" && o.Boxes.Background == "first" && p.Spec.Input.Width == 320
			}},
		{"detr", &ModelInfo{Inputs: in(1, 3, 800, 800), Outputs: outs(ModelTensor{"logits", []int64{1, 100, 92}, "float"}, ModelTensor{"pred_boxes", []int64{1, 100, 4}, "float"})}, nil,
			func(p *Proposal) bool {
				o := p.Spec.Output
				return o.Decoder == "detr" && o.Tensors[0] == "pred_boxes" && o.Boxes.Background == "last" && o.Activation == "softmax"
			}},
		{"rt-detr", &ModelInfo{Inputs: in(1, 3, 640, 640), Outputs: outs(ModelTensor{"output0", []int64{1, 300, 84}, "float"}),
			Metadata: map[string]string{"author": "Ultralytics", "description": "Ultralytics RT-DETR-l model", "task": "detect", "names": coco}}, nil,
			func(p *Proposal) bool { return p.Spec.Output.Decoder == "detr" && p.Spec.Output.Activation == "none" }},
		{"imagenet classifier", &ModelInfo{Inputs: in(1, 3, 224, 224), Outputs: outs(ModelTensor{"logits", []int64{1, 1000}, "float"})}, nil,
			func(p *Proposal) bool {
				return p.Spec.Output.Decoder == "classify" && p.Spec.Output.Activation == "softmax"
			}},
		{"classifier by labels", &ModelInfo{Inputs: in(1, 3, 224, 224), Outputs: outs(ModelTensor{"out", []int64{-1, 3}, "float"})}, []string{"a", "b", "c"},
			func(p *Proposal) bool { return p.Spec.Output.Decoder == "classify" }},
		{"embedder", &ModelInfo{Inputs: in(-1, 3, 256, 128), Outputs: outs(ModelTensor{"feat", []int64{-1, 512}, "float"})}, nil,
			func(p *Proposal) bool {
				return p.Spec.Output.Decoder == "embed" && p.Spec.Input.Channels == "RGB" && p.Spec.Input.Resize == "stretch"
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := propose(t, tc.m, tc.labels)
			if !tc.check(p) {
				t.Fatalf("family %s\n%s", p.Family, p.YAML("m.onnx"))
			}
		})
	}
}

// fn init refuses, saying why, a model it cannot feed or place.
func TestProposeRefuses(t *testing.T) {
	img := ModelTensor{"images", []int64{1, 3, 320, 320}, "float"}
	out := []ModelTensor{{"output", []int64{1, 1000}, "float"}}
	for _, tc := range []struct {
		name   string
		m      *ModelInfo
		labels []string
		want   string
	}{
		{"no image input", &ModelInfo{Inputs: []ModelTensor{{"tokens", []int64{1, 77}, "int64"}}, Outputs: out}, nil, "no image input"},
		{"two image inputs", &ModelInfo{Inputs: []ModelTensor{img, {"ref", []int64{1, 3, 320, 320}, "float"}}, Outputs: out}, nil, "2 image inputs"},
		{"another input", &ModelInfo{Inputs: []ModelTensor{img, {"orig_target_sizes", []int64{1, 2}, "int64"}}, Outputs: out}, nil, "orig_target_sizes"},
		{"uint8 input", &ModelInfo{Inputs: []ModelTensor{{"images", []int64{1, 3, 320, 320}, "uint8"}}, Outputs: out}, nil, "float32"},
		{"unknown outputs", &ModelInfo{Inputs: []ModelTensor{img}, Outputs: []ModelTensor{{"a", []int64{1, 7, 7, 7}, "float"}}}, nil, "raw"},
		{"segmentation", &ModelInfo{Inputs: []ModelTensor{img}, Outputs: out, Metadata: map[string]string{"author": "Ultralytics", "task": "segment"}}, nil, `"segment"`},
		{"labels contradict", yoloxInfo, []string{"a", "b"}, "2 names, the model has 80 classes"},
	} {
		_, err := Propose(tc.m, "fn", "m.onnx", tc.labels)
		if !errors.Is(err, ErrCannotPlace) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrCannotPlace mentioning %q", tc.name, err, tc.want)
		}
	}
}
