package onnx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// MakeBatchDynamic rewrites an ONNX model exported with a fixed batch of 1 (traced at
// batch 1, as YOLOX's export_onnx.py does by default) so that its batch axis is dynamic,
// from the same weights: the graph's inputs and outputs get a symbolic first dimension
// "N"; every Reshape whose target shape is a constant starting with 1 gets 0 there
// instead (ONNX's "copy this dimension from the input"), so the batch passes through;
// and the graph's intermediate shape annotations (value_info), which name the batch of
// 1, are dropped for the runtime to infer again. It edits the protobuf encoding directly
// (no ONNX library), leaving every other byte as it was, so the result is reproducible.
//
// It is only sound for graphs whose leading 1s in constant Reshape shapes are the batch
// axis. YOLOX-Nano's three output Reshapes ([1 85 -1]) are; its Resize nodes use scales,
// not sizes. The caller checks the result: per frame, its outputs must equal the fixed
// model's (TestDynamicBatchMatchesFixed). A graph with a Constant node feeding a Reshape,
// or an input whose batch is neither 1 nor symbolic, is refused with an error that names it.
func MakeBatchDynamic(model []byte) ([]byte, error) {
	mfs, err := parseFields(model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	gi := -1
	for i, f := range mfs {
		if f.num == modelGraph && f.typ == wireBytes {
			if gi >= 0 {
				return nil, errors.New("model: more than one graph")
			}
			gi = i
		}
	}
	if gi < 0 {
		return nil, errors.New("model: no graph (is this an ONNX model?)")
	}
	graph, err := dynamicGraph(mfs[gi].val)
	if err != nil {
		return nil, err
	}
	mfs[gi] = bytesField(modelGraph, graph)
	return joinFields(mfs), nil
}

// Field numbers of onnx.proto (onnx/onnx.proto3) that MakeBatchDynamic reads.
const (
	modelGraph = 7 // ModelProto.graph

	graphNode        = 1  // GraphProto.node
	graphInitializer = 5  // GraphProto.initializer
	graphInput       = 11 // GraphProto.input
	graphOutput      = 12 // GraphProto.output
	graphValueInfo   = 13 // GraphProto.value_info

	nodeInput  = 1 // NodeProto.input
	nodeOutput = 2 // NodeProto.output
	nodeOpType = 4 // NodeProto.op_type

	tensorDataType  = 2 // TensorProto.data_type
	tensorInt64Data = 7 // TensorProto.int64_data
	tensorName      = 8 // TensorProto.name
	tensorRawData   = 9 // TensorProto.raw_data
	tensorInt64     = 7 // TensorProto.DataType INT64

	valueInfoName   = 1 // ValueInfoProto.name
	valueInfoType   = 2 // ValueInfoProto.type
	typeTensorType  = 1 // TypeProto.tensor_type
	tensorTypeShape = 2 // TypeProto.Tensor.shape
	shapeDim        = 1 // TensorShapeProto.dim
	dimValue        = 1 // TensorShapeProto.Dimension.dim_value
	dimParam        = 2 // TensorShapeProto.Dimension.dim_param
)

func dynamicGraph(g []byte) ([]byte, error) {
	fs, err := parseFields(g)
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	// The target shapes of Reshape nodes, and which tensors Constant nodes make.
	reshapeShapes := map[string]bool{}
	constants := map[string]bool{}
	for _, f := range fs {
		if f.num != graphNode || f.typ != wireBytes {
			continue
		}
		nfs, err := parseFields(f.val)
		if err != nil {
			return nil, fmt.Errorf("graph node: %w", err)
		}
		op := string(first(nfs, nodeOpType))
		var ins, outs []string
		for _, nf := range nfs {
			switch nf.num {
			case nodeInput:
				ins = append(ins, string(nf.val))
			case nodeOutput:
				outs = append(outs, string(nf.val))
			}
		}
		switch op {
		case "Reshape":
			if len(ins) == 2 {
				reshapeShapes[ins[1]] = true
			}
		case "Constant":
			for _, o := range outs {
				constants[o] = true
			}
		}
	}
	for name := range reshapeShapes {
		if constants[name] {
			return nil, fmt.Errorf("graph: a Reshape's shape %q comes from a Constant node, which this rewrite does not edit", name)
		}
	}
	initializers := map[string]bool{}
	var out []field
	for _, f := range fs {
		switch {
		case f.num == graphValueInfo:
			continue // dropped: the runtime infers intermediate shapes again
		case f.num == graphInitializer && f.typ == wireBytes:
			tfs, err := parseFields(f.val)
			if err != nil {
				return nil, fmt.Errorf("graph initializer: %w", err)
			}
			name := string(first(tfs, tensorName))
			initializers[name] = true
			if reshapeShapes[name] {
				if err := zeroLeadingOne(name, tfs); err != nil {
					return nil, err
				}
				f = bytesField(graphInitializer, joinFields(tfs))
			}
		}
		out = append(out, f)
	}
	for i, f := range out {
		if (f.num != graphInput && f.num != graphOutput) || f.typ != wireBytes {
			continue
		}
		vfs, err := parseFields(f.val)
		if err != nil {
			return nil, fmt.Errorf("graph input or output: %w", err)
		}
		name := string(first(vfs, valueInfoName))
		if initializers[name] {
			continue // a weight listed as an input (older IR versions)
		}
		v, err := symbolicBatch(name, f.val)
		if err != nil {
			return nil, err
		}
		out[i] = bytesField(f.num, v)
	}
	return joinFields(out), nil
}

// zeroLeadingOne turns an INT64 tensor's first value from 1 into 0, in place (the
// encoding keeps its length).
func zeroLeadingOne(name string, tfs []field) error {
	var t uint64
	for _, f := range tfs {
		if f.num == tensorDataType && f.typ == wireVarint {
			t = f.varint
		}
	}
	if t != tensorInt64 {
		return fmt.Errorf("graph: Reshape shape %q has data type %d, want INT64 (7)", name, t)
	}
	for i, f := range tfs {
		switch {
		case f.num == tensorRawData && f.typ == wireBytes:
			if len(f.val) < 8 || len(f.val)%8 != 0 {
				return fmt.Errorf("graph: Reshape shape %q: %d raw bytes, want a multiple of 8", name, len(f.val))
			}
			if binary.LittleEndian.Uint64(f.val) == 1 {
				v := bytes.Clone(f.val)
				binary.LittleEndian.PutUint64(v, 0)
				tfs[i] = bytesField(f.num, v)
			}
			return nil
		case f.num == tensorInt64Data && f.typ == wireBytes: // packed
			if len(f.val) > 0 && f.val[0] == 1 {
				v := bytes.Clone(f.val)
				v[0] = 0
				tfs[i] = bytesField(f.num, v)
			}
			return nil
		case f.num == tensorInt64Data && f.typ == wireVarint:
			if f.varint == 1 {
				tfs[i] = varintField(f.num, 0)
			}
			return nil
		}
	}
	return fmt.Errorf("graph: Reshape shape %q holds no values", name)
}

// symbolicBatch gives a ValueInfoProto's tensor type a first dimension "N" in place of 1.
func symbolicBatch(name string, vi []byte) ([]byte, error) {
	return editFirst(vi, []int{valueInfoType, typeTensorType, tensorTypeShape, shapeDim}, func(dim []byte) ([]byte, error) {
		dfs, err := parseFields(dim)
		if err != nil {
			return nil, err
		}
		for _, f := range dfs {
			switch {
			case f.num == dimParam:
				return dim, nil // already symbolic
			case f.num == dimValue && f.typ == wireVarint && f.varint != 1:
				return nil, fmt.Errorf("graph: %q has a batch of %d; only a batch of 1 is made dynamic", name, f.varint)
			}
		}
		return joinFields([]field{bytesField(dimParam, []byte("N"))}), nil
	}, name)
}

// editFirst replaces the first field along path (nested messages, by field number) with
// what edit makes of it, re-encoding the messages around it.
func editFirst(msg []byte, path []int, edit func([]byte) ([]byte, error), name string) ([]byte, error) {
	fs, err := parseFields(msg)
	if err != nil {
		return nil, err
	}
	for i, f := range fs {
		if f.num != path[0] || f.typ != wireBytes {
			continue
		}
		var v []byte
		if len(path) == 1 {
			v, err = edit(f.val)
		} else {
			v, err = editFirst(f.val, path[1:], edit, name)
		}
		if err != nil {
			return nil, err
		}
		fs[i] = bytesField(f.num, v)
		return joinFields(fs), nil
	}
	return nil, fmt.Errorf("graph: %q has no tensor shape (field %d missing)", name, path[0])
}

// The protobuf wire types this editor meets.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// field is one encoded protobuf field: its number and wire type, the encoding of the
// whole field (raw), and its payload (val, for length-delimited fields) or value
// (varint).
type field struct {
	num, typ int
	raw      []byte
	val      []byte
	varint   uint64
}

func parseFields(b []byte) ([]field, error) {
	var fs []field
	for len(b) > 0 {
		start := b
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("bad field tag")
		}
		b = b[n:]
		f := field{num: int(tag >> 3), typ: int(tag & 7)}
		switch f.typ {
		case wireVarint:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, fmt.Errorf("field %d: bad varint", f.num)
			}
			f.varint, b = v, b[n:]
		case wireFixed64:
			if len(b) < 8 {
				return nil, fmt.Errorf("field %d: truncated", f.num)
			}
			b = b[8:]
		case wireFixed32:
			if len(b) < 4 {
				return nil, fmt.Errorf("field %d: truncated", f.num)
			}
			b = b[4:]
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return nil, fmt.Errorf("field %d: bad length", f.num)
			}
			f.val, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return nil, fmt.Errorf("field %d: wire type %d not supported", f.num, f.typ)
		}
		f.raw = start[:len(start)-len(b)]
		fs = append(fs, f)
	}
	return fs, nil
}

func first(fs []field, num int) []byte {
	for _, f := range fs {
		if f.num == num && f.typ == wireBytes {
			return f.val
		}
	}
	return nil
}

func bytesField(num int, v []byte) field {
	raw := binary.AppendUvarint(nil, uint64(num)<<3|wireBytes)
	raw = binary.AppendUvarint(raw, uint64(len(v)))
	raw = append(raw, v...)
	return field{num: num, typ: wireBytes, raw: raw, val: raw[len(raw)-len(v):]}
}

func varintField(num int, v uint64) field {
	raw := binary.AppendUvarint(nil, uint64(num)<<3|wireVarint)
	return field{num: num, typ: wireVarint, raw: binary.AppendUvarint(raw, v), varint: v}
}

func joinFields(fs []field) []byte {
	var b []byte
	for _, f := range fs {
		b = append(b, f.raw...)
	}
	return b
}
