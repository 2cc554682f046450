package onnx

import (
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// opset11Model is a small opset-11 graph using each op whose attribute became an input
// at opset 13: y = x[:, 0:1] + sum(x[:, 1:4], axis 1), through Split, ReduceSum,
// Unsqueeze and Squeeze, on x of shape [1 4 2 2].
func opset11Model() []byte {
	ints := func(name string, v ...int64) field {
		fs := []field{stringField(attrName, name)}
		for _, x := range v {
			fs = append(fs, varintField(attrInts, uint64(x)))
		}
		return bytesField(nodeAttribute, msg(append(fs, varintField(attrType, 7))...)) // INTS
	}
	intAttr := func(name string, v int64) field {
		return bytesField(nodeAttribute, msg(stringField(attrName, name), varintField(attrI, uint64(v)), varintField(attrType, attrTypeInt)))
	}
	node := func(op string, ins, outs []string, attrs ...field) field {
		fs := mustFields(encodeNode(op+"_0", op, ins, outs, 1))
		if op != "Split" {
			fs = fs[:len(fs)-1] // only Split keeps encodeNode's axis attribute
		}
		return bytesField(graphNode, joinFields(append(fs, attrs...)))
	}
	graph := msg(
		node("Split", []string{"x"}, []string{"a", "b"}, ints("split", 1, 3)),
		node("ReduceSum", []string{"b"}, []string{"c"}, ints("axes", 1), intAttr("keepdims", 1)),
		node("Unsqueeze", []string{"c"}, []string{"d"}, ints("axes", 0)),
		node("Squeeze", []string{"d"}, []string{"e"}, ints("axes", 0)),
		node("Add", []string{"a", "e"}, []string{"y"}),
		stringField(2, "opset11"), // GraphProto.name
		bytesField(graphInput, floatOutput("x")),
		bytesField(graphOutput, floatOutput("y")),
	)
	return msg(varintField(modelIRVersion, 6),
		bytesField(modelOpsetImport, msg(stringField(opsetDomain, ""), varintField(opsetVersion, 11))),
		bytesField(modelGraph, graph))
}

// run runs model on x ([1 4 2 2]) in ONNX Runtime and returns y.
func run(t *testing.T, model []byte, x []float32) []float32 {
	t.Helper()
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{"x"}, []string{"y"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	in, err := ort.NewTensor(ort.NewShape(1, 4, 2, 2), x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out := []ort.Value{nil}
	if err := s.Run([]ort.Value{in}, out); err != nil {
		t.Fatal(err)
	}
	defer out[0].Destroy()
	return slices.Clone(out[0].(*ort.Tensor[float32]).GetData())
}

// Raising the opset moves Split's split and Squeeze's, Unsqueeze's and ReduceSum's axes
// from attributes to int64 inputs, and the opset-13 model computes what the opset-11
// one did, in ONNX Runtime.
func TestRaiseNodesMovesAttributesToInputs(t *testing.T) {
	b := opset11Model()
	m, err := parseModel(b)
	if err != nil {
		t.Fatal(err)
	}
	to, err := checkOpset(m)
	if err != nil || to != 13 {
		t.Fatalf("checkOpset: %d, %v; want 13", to, err)
	}
	if err := raiseNodes(m); err != nil {
		t.Fatal(err)
	}
	for _, n := range m.nodes {
		if n.op == "Add" {
			continue
		}
		if len(n.ins) != 2 || m.inits[n.ins[1]] == nil || m.inits[n.ins[1]].dtype != dtInt64 {
			t.Errorf("%s: inputs %v, want the data and an int64 initializer", n.op, n.ins)
		}
	}
	raised := m.encode(m.gfs, to, irFor(to))
	r, err := parseModel(raised)
	if err != nil || r.opset != 13 {
		t.Fatalf("raised model: opset %d, %v", r.opset, err)
	}
	x := []float32{1, 2, 3, 4, 10, 20, 30, 40, 100, 200, 300, 400, 1000, 2000, 3000, 4000}
	old, now := run(t, b, x), run(t, raised, x)
	want := []float32{1111, 2222, 3333, 4444}
	if !slices.Equal(old, want) || !slices.Equal(now, want) {
		t.Fatalf("y at opset 11 %v, at 13 %v; want %v", old, now, want)
	}
}
