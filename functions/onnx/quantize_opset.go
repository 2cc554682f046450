package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// quantOpset is the default-domain opset the quantizer writes: the first with a
// per-channel DequantizeLinear (its axis attribute).
//
// Why QDQ at opset 13 and not QLinearConv at opset 10: ONNX Runtime turns
// DequantizeLinear→op→QuantizeLinear groups into its integer kernels itself (QLinearConv,
// QLinearMul, QLinearAdd, QLinearSigmoid, QLinearConcat, and uint8 MaxPool, Resize,
// Reshape, Transpose, Slice by dropping the pair around them), and falls back to the float
// kernel, exactly, wherever a group does not fit; the same file also runs on providers
// that read QDQ (TensorRT, OpenVINO). Writing QLinear* nodes ourselves would mean
// choosing each integer kernel, and its contrib-domain variants, by hand. The price is
// the opset: a model below 13 is raised to 13, which is sound only if every node of the
// default domain means the same at 13 as at the model's opset. opset13Same lists the ops
// for which that was checked against the ONNX operator changelog (docs/Changelog.md): from
// opset 11 or 12 to 13 they only gained types (bfloat16, and int8/uint8 for MaxPool at 12)
// or made an input optional (Resize's roi). Split, Squeeze, Unsqueeze and ReduceSum
// changed only in form: an ints attribute (split, axes) became an optional int64 input
// with the same meaning (opset13Inputs), and raising moves it there. Ops whose meaning
// changed by 13 (Softmax, LogSoftmax and Hardmax their axis semantics; Dropout's ratio
// became an input at 12) are not listed, and a model below 13 that has one is refused
// with an error naming it.
const quantOpset = 13

// minQuantOpset is the lowest opset the quantizer raises: opset 11 changed Resize, Pad,
// Clip, Slice's negative steps and more, so older models are refused.
const minQuantOpset = 11

var opset13Same = map[string]bool{
	"Add": true, "AveragePool": true, "BatchNormalization": true, "Cast": true, "Clip": true,
	"Concat": true, "Constant": true, "ConstantOfShape": true, "Conv": true,
	"ConvTranspose": true, "Div": true, "Exp": true, "Flatten": true, "Gather": true,
	"Gemm": true, "GlobalAveragePool": true, "GlobalMaxPool": true, "HardSigmoid": true,
	"Identity": true, "LeakyRelu": true, "Log": true, "MatMul": true,
	"Max": true, "MaxPool": true, "Min": true, "Mul": true, "Pad": true, "Pow": true,
	"PRelu": true, "ReduceMax": true, "ReduceMean": true, "ReduceMin": true, "Relu": true,
	"Reshape": true, "Resize": true, "Shape": true, "Sigmoid": true, "Slice": true,
	"Sqrt": true, "Sub": true, "Tanh": true, "Transpose": true,
}

// opset13Inputs maps the ops whose ints attribute became their second input at opset 13
// (an int64 tensor with the same values; absent means the same as before) to that
// attribute's name.
var opset13Inputs = map[string]string{"Split": "split", "Squeeze": "axes", "Unsqueeze": "axes", "ReduceSum": "axes"}

// checkOpset says whether the model can be written at quantOpset, and the opset it
// will then have.
func checkOpset(m *qModel) (int64, error) {
	if m.opset >= quantOpset {
		return m.opset, nil
	}
	if m.opset < minQuantOpset {
		return 0, fmt.Errorf("model has opset %d; the quantizer raises opsets from %d to %d (convert the model to opset %d or later first)", m.opset, minQuantOpset, quantOpset, minQuantOpset)
	}
	var bad []string
	for _, n := range m.nodes {
		if (n.domain == "" || n.domain == "ai.onnx") && !opset13Same[n.op] && opset13Inputs[n.op] == "" && !slices.Contains(bad, n.op) {
			bad = append(bad, n.op)
		}
	}
	if len(bad) > 0 {
		return 0, fmt.Errorf("model has opset %d and per-channel quantization needs opset %d, but %s changed meaning by opset %d (or was not checked); export the model at opset %d", m.opset, quantOpset, strings.Join(bad, ", "), quantOpset, quantOpset)
	}
	return quantOpset, nil
}

// irFor is the lowest IR version a model at opset needs, where the quantizer raises it
// (0: leave it as it is).
func irFor(opset int64) uint64 {
	if opset >= quantOpset {
		return 7 // the IR version opset 13 needs
	}
	return 0
}

// raiseNodes rewrites m's nodes to their opset-13 form where it differs (opset13Inputs):
// the attribute is dropped and its values become an int64 initializer named after the
// node, passed as the node's second input. checkOpset must have accepted m.
func raiseNodes(m *qModel) error {
	if m.opset >= quantOpset {
		return nil
	}
	for _, n := range m.nodes {
		attr := opset13Inputs[n.op]
		if attr == "" || (n.domain != "" && n.domain != "ai.onnx") {
			continue
		}
		if len(n.ins) != 1 {
			return fmt.Errorf("%s node %q at opset %d has %d inputs, want 1", n.op, n.name, m.opset, len(n.ins))
		}
		var vals []int64
		found := false
		fs := make([]field, 0, len(n.fs)+1)
		for _, f := range n.fs {
			if f.num == nodeAttribute && f.typ == wireBytes {
				afs, err := parseFields(f.val)
				if err != nil {
					return fmt.Errorf("%s node %q attribute: %w", n.op, n.name, err)
				}
				if string(first(afs, attrName)) == attr {
					if vals, err = intsOf(afs); err != nil {
						return fmt.Errorf("%s node %q attribute %s: %w", n.op, n.name, attr, err)
					}
					found = true
					continue
				}
			}
			fs = append(fs, f)
		}
		if !found {
			continue // absent at 11 means what absent means at 13
		}
		name := uniqueName(m, n.outs[0]+"_"+attr)
		raw := make([]byte, 8*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
		t := encodeTensor(name, dtInt64, []int64{int64(len(vals))}, raw)
		init, err := parseInit(t)
		if err != nil {
			return err
		}
		m.inits[name] = init
		m.gfs = append(m.gfs, bytesField(graphInitializer, t))
		// The new input goes after the existing one: the node's fields in their order,
		// its inputs first among them.
		in := slices.IndexFunc(fs, func(f field) bool { return f.num == nodeInput })
		fs = slices.Insert(fs, in+1, stringField(nodeInput, name))
		n.fs, n.ins = fs, append(n.ins, name)
		m.gfs[n.gfIndex] = bytesField(graphNode, joinFields(fs))
	}
	return nil
}

// intsOf reads an AttributeProto's ints (packed or not).
func intsOf(afs []field) ([]int64, error) {
	var out []int64
	for _, f := range afs {
		if f.num != attrInts {
			continue
		}
		switch f.typ {
		case wireVarint:
			out = append(out, int64(f.varint))
		case wireBytes:
			for v := f.val; len(v) > 0; {
				x, n := binary.Uvarint(v)
				if n <= 0 {
					return nil, errors.New("bad packed ints")
				}
				out, v = append(out, int64(x)), v[n:]
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no ints")
	}
	return out, nil
}

// uniqueName is base, or base with a number, not yet naming a tensor of m.
func uniqueName(m *qModel, base string) string {
	used := func(s string) bool {
		if m.inits[s] != nil {
			return true
		}
		for _, n := range m.nodes {
			if slices.Contains(n.outs, s) || slices.Contains(n.ins, s) {
				return true
			}
		}
		return false
	}
	name := base
	for i := 2; used(name); i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	return name
}
