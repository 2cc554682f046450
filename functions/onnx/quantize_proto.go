package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The ONNX protobuf fields the quantizer reads and writes beyond batchdim.go's (field
// numbers of onnx/onnx.proto).
const (
	modelIRVersion   = 1 // ModelProto.ir_version
	modelOpsetImport = 8 // ModelProto.opset_import
	opsetDomain      = 1 // OperatorSetIdProto.domain
	opsetVersion     = 2 // OperatorSetIdProto.version

	nodeName      = 3 // NodeProto.name
	nodeAttribute = 5 // NodeProto.attribute
	nodeDomain    = 7 // NodeProto.domain

	attrName = 1  // AttributeProto.name
	attrI    = 3  // AttributeProto.i
	attrT    = 5  // AttributeProto.t
	attrInts = 8  // AttributeProto.ints
	attrType = 20 // AttributeProto.type

	attrTypeInt = 2 // AttributeProto.AttributeType INT

	tensorDims         = 1  // TensorProto.dims
	tensorFloatData    = 4  // TensorProto.float_data
	tensorDataLocation = 14 // TensorProto.data_location (1: EXTERNAL)

	typeTensorElemType = 1 // TypeProto.Tensor.elem_type

	// TensorProto.DataType
	dtFloat = 1
	dtUint8 = 2
	dtInt8  = 3
	dtInt32 = 6
	dtInt64 = 7
)

// qModel is a model parsed just enough to rewrite its graph: the model's and the
// graph's fields as they were, and the nodes, initializers, inputs and outputs decoded.
type qModel struct {
	mfs   []field // ModelProto fields
	gi    int     // index of the graph in mfs
	gfs   []field // GraphProto fields
	nodes []*qNode
	inits map[string]*qInit
	// inputs are the graph inputs that are not initializers; outputs all graph outputs.
	inputs, outputs []qValue
	opset           int64 // version of the default ("" or "ai.onnx") domain
	irVersion       uint64
}

type qNode struct {
	name, op, domain string
	ins, outs        []string
	fs               []field
	gfIndex          int // index in qModel.gfs
}

type qInit struct {
	name     string
	dtype    int
	dims     []int64
	fs       []field
	external bool
}

type qValue struct {
	name  string
	dtype int
	dims  []int64 // -1 for a symbolic or unknown dimension
}

func parseModel(b []byte) (*qModel, error) {
	// An ONNX model is a ModelProto whose first field is ir_version (tag 0x08).
	if len(b) < 16 || b[0] != 0x08 {
		return nil, fmt.Errorf("not an ONNX model (%d bytes starting %q)", len(b), shortPrefix(b))
	}
	mfs, err := parseFields(b)
	if err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	m := &qModel{mfs: mfs, gi: -1, inits: map[string]*qInit{}}
	for i, f := range mfs {
		switch {
		case f.num == modelGraph && f.typ == wireBytes:
			if m.gi >= 0 {
				return nil, errors.New("model: more than one graph")
			}
			m.gi = i
		case f.num == modelIRVersion && f.typ == wireVarint:
			m.irVersion = f.varint
		case f.num == modelOpsetImport && f.typ == wireBytes:
			ofs, err := parseFields(f.val)
			if err != nil {
				return nil, fmt.Errorf("model opset_import: %w", err)
			}
			d := string(first(ofs, opsetDomain))
			if d == "" || d == "ai.onnx" {
				for _, of := range ofs {
					if of.num == opsetVersion && of.typ == wireVarint {
						m.opset = int64(of.varint)
					}
				}
			}
		}
	}
	if m.gi < 0 {
		return nil, errors.New("model: no graph (is this an ONNX model?)")
	}
	if m.gfs, err = parseFields(mfs[m.gi].val); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	var ins []qValue
	for i, f := range m.gfs {
		if f.typ != wireBytes {
			continue
		}
		switch f.num {
		case graphNode:
			n, err := parseNode(f.val)
			if err != nil {
				return nil, err
			}
			n.gfIndex = i
			m.nodes = append(m.nodes, n)
		case graphInitializer:
			t, err := parseInit(f.val)
			if err != nil {
				return nil, err
			}
			m.inits[t.name] = t
		case graphInput, graphOutput:
			v, err := parseValueInfo(f.val)
			if err != nil {
				return nil, err
			}
			if f.num == graphInput {
				ins = append(ins, v)
			} else {
				m.outputs = append(m.outputs, v)
			}
		}
	}
	for _, v := range ins {
		if m.inits[v.name] == nil {
			m.inputs = append(m.inputs, v)
		}
	}
	return m, nil
}

func parseNode(b []byte) (*qNode, error) {
	fs, err := parseFields(b)
	if err != nil {
		return nil, fmt.Errorf("graph node: %w", err)
	}
	n := &qNode{fs: fs}
	for _, f := range fs {
		if f.typ != wireBytes {
			continue
		}
		switch f.num {
		case nodeInput:
			n.ins = append(n.ins, string(f.val))
		case nodeOutput:
			n.outs = append(n.outs, string(f.val))
		case nodeName:
			n.name = string(f.val)
		case nodeOpType:
			n.op = string(f.val)
		case nodeDomain:
			n.domain = string(f.val)
		}
	}
	return n, nil
}

func parseInit(b []byte) (*qInit, error) {
	fs, err := parseFields(b)
	if err != nil {
		return nil, fmt.Errorf("graph initializer: %w", err)
	}
	t := &qInit{fs: fs}
	for _, f := range fs {
		switch {
		case f.num == tensorName && f.typ == wireBytes:
			t.name = string(f.val)
		case f.num == tensorDataType && f.typ == wireVarint:
			t.dtype = int(f.varint)
		case f.num == tensorDims && f.typ == wireVarint:
			t.dims = append(t.dims, int64(f.varint))
		case f.num == tensorDims && f.typ == wireBytes: // packed
			for v := f.val; len(v) > 0; {
				d, n := binary.Uvarint(v)
				if n <= 0 {
					return nil, errors.New("graph initializer: bad dims")
				}
				t.dims, v = append(t.dims, int64(d)), v[n:]
			}
		case f.num == tensorDataLocation && f.typ == wireVarint && f.varint == 1:
			t.external = true
		}
	}
	return t, nil
}

// floats returns a FLOAT initializer's values (raw_data or float_data).
func (t *qInit) floats() ([]float32, error) {
	if t.dtype != dtFloat {
		return nil, fmt.Errorf("initializer %q has data type %d, want FLOAT (1)", t.name, t.dtype)
	}
	if t.external {
		return nil, fmt.Errorf("initializer %q is stored outside the model file (external data), which the quantizer does not read", t.name)
	}
	n := 1
	for _, d := range t.dims {
		n *= int(d)
	}
	var out []float32
	for _, f := range t.fs {
		switch {
		case f.num == tensorRawData && f.typ == wireBytes:
			if len(f.val) != 4*n {
				return nil, fmt.Errorf("initializer %q: %d raw bytes for %d floats", t.name, len(f.val), n)
			}
			out = make([]float32, n)
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(f.val[4*i:]))
			}
			return out, nil
		case f.num == tensorFloatData && f.typ == wireBytes: // packed
			for v := f.val; len(v) >= 4; v = v[4:] {
				out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(v)))
			}
		case f.num == tensorFloatData && f.typ == wireFixed32:
			out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(f.raw[len(f.raw)-4:])))
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("initializer %q: %d values for shape %v", t.name, len(out), t.dims)
	}
	return out, nil
}

func parseValueInfo(b []byte) (qValue, error) {
	fs, err := parseFields(b)
	if err != nil {
		return qValue{}, fmt.Errorf("graph value info: %w", err)
	}
	v := qValue{name: string(first(fs, valueInfoName))}
	tt, err := parseFields(first(fs, valueInfoType))
	if err != nil {
		return v, fmt.Errorf("graph value %q type: %w", v.name, err)
	}
	tfs, err := parseFields(first(tt, typeTensorType))
	if err != nil {
		return v, fmt.Errorf("graph value %q tensor type: %w", v.name, err)
	}
	for _, f := range tfs {
		if f.num == typeTensorElemType && f.typ == wireVarint {
			v.dtype = int(f.varint)
		}
	}
	sfs, err := parseFields(first(tfs, tensorTypeShape))
	if err != nil {
		return v, fmt.Errorf("graph value %q shape: %w", v.name, err)
	}
	for _, f := range sfs {
		if f.num != shapeDim || f.typ != wireBytes {
			continue
		}
		dfs, err := parseFields(f.val)
		if err != nil {
			return v, fmt.Errorf("graph value %q dim: %w", v.name, err)
		}
		d := int64(-1)
		for _, df := range dfs {
			if df.num == dimValue && df.typ == wireVarint {
				d = int64(df.varint)
			}
		}
		v.dims = append(v.dims, d)
	}
	return v, nil
}

// Encoders of the few messages the quantizer writes.

func stringField(num int, s string) field { return bytesField(num, []byte(s)) }

func msg(fs ...field) []byte { return joinFields(fs) }

// encodeTensor is a TensorProto with raw_data.
func encodeTensor(name string, dtype int, dims []int64, raw []byte) []byte {
	var fs []field
	for _, d := range dims {
		fs = append(fs, varintField(tensorDims, uint64(d)))
	}
	fs = append(fs, varintField(tensorDataType, uint64(dtype)), stringField(tensorName, name), bytesField(tensorRawData, raw))
	return joinFields(fs)
}

func floatTensor(name string, dims []int64, v []float32) []byte {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return encodeTensor(name, dtFloat, dims, raw)
}

func int32Tensor(name string, dims []int64, v []int32) []byte {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(x))
	}
	return encodeTensor(name, dtInt32, dims, raw)
}

func int8Tensor(name string, dims []int64, v []int8) []byte {
	raw := make([]byte, len(v))
	for i, x := range v {
		raw[i] = byte(x)
	}
	return encodeTensor(name, dtInt8, dims, raw)
}

// encodeNode is a NodeProto of the default domain; axis ≥ 0 adds an "axis" attribute.
func encodeNode(name, op string, ins, outs []string, axis int) []byte {
	var fs []field
	for _, in := range ins {
		fs = append(fs, stringField(nodeInput, in))
	}
	for _, out := range outs {
		fs = append(fs, stringField(nodeOutput, out))
	}
	fs = append(fs, stringField(nodeName, name), stringField(nodeOpType, op))
	if axis >= 0 {
		fs = append(fs, bytesField(nodeAttribute, msg(stringField(attrName, "axis"), varintField(attrI, uint64(axis)), varintField(attrType, attrTypeInt))))
	}
	return joinFields(fs)
}

// floatOutput is a ValueInfoProto of a float tensor of unknown shape.
func floatOutput(name string) []byte {
	return msg(stringField(valueInfoName, name),
		bytesField(valueInfoType, msg(bytesField(typeTensorType, msg(varintField(typeTensorElemType, dtFloat))))))
}

// withInputs re-encodes a node with its inputs renamed by rename (names it does not
// map stay).
func (n *qNode) withInputs(rename func(i int, name string) string) []byte {
	fs := make([]field, 0, len(n.fs))
	i := 0
	for _, f := range n.fs {
		if f.num == nodeInput && f.typ == wireBytes {
			if r := rename(i, string(f.val)); r != string(f.val) {
				f = stringField(nodeInput, r)
			}
			i++
		}
		fs = append(fs, f)
	}
	return joinFields(fs)
}

// encode writes the model back with the graph's fields gfs and the default domain's
// opset set to opset (if > 0) and ir_version raised to at least ir.
func (m *qModel) encode(gfs []field, opset int64, ir uint64) []byte {
	mfs := make([]field, 0, len(m.mfs))
	for i, f := range m.mfs {
		switch {
		case i == m.gi:
			f = bytesField(modelGraph, joinFields(gfs))
		case f.num == modelIRVersion && f.typ == wireVarint && f.varint < ir:
			f = varintField(modelIRVersion, ir)
		case f.num == modelOpsetImport && f.typ == wireBytes && opset > 0:
			ofs, err := parseFields(f.val)
			if err == nil {
				if d := string(first(ofs, opsetDomain)); d == "" || d == "ai.onnx" {
					for j, of := range ofs {
						if of.num == opsetVersion && of.typ == wireVarint {
							ofs[j] = varintField(opsetVersion, uint64(opset))
						}
					}
					f = bytesField(modelOpsetImport, joinFields(ofs))
				}
			}
		}
		mfs = append(mfs, f)
	}
	return joinFields(mfs)
}
