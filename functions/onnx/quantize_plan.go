package onnx

import (
	"fmt"
	"slices"
	"strings"
)

// The kinds of node the quantizer handles, by how their tensors are quantized. Every
// one is written as DequantizeLinear on its float data inputs → the node → (where the
// output is read by another quantized node, or is a quantized node's output read in
// float) QuantizeLinear → DequantizeLinear, the QDQ form ONNX Runtime fuses into its
// integer kernels (onnxruntime/core/optimizer/qdq_transformer/selectors_actions:
// a group fuses only when every input of the node comes from a DequantizeLinear and its
// output goes to QuantizeLinear nodes alone).
const (
	kindConv     = "conv"     // int8 per-channel weight, int32 bias, uint8 input and output
	kindUnary    = "unary"    // Sigmoid, LeakyRelu: own output range (QLinearSigmoid, QLinearLeakyRelu)
	kindBinary   = "binary"   // Mul, Add: two activations (QLinearMul, QLinearAdd)
	kindVariadic = "variadic" // Concat (QLinearConcat)
	// kindPass nodes move or pick values without computing new ones (MaxPool, Resize,
	// Reshape, Transpose, Slice, Flatten): their output takes their input's range, so
	// that ONNX Runtime can drop the pair around them and run them on uint8 (it does only
	// when both sides have the same scale and zero point).
	kindPass = "pass"
)

func nodeKind(op string) string {
	switch op {
	case "Conv":
		return kindConv
	case "Sigmoid", "LeakyRelu":
		return kindUnary
	case "Mul", "Add":
		return kindBinary
	case "Concat":
		return kindVariadic
	case "MaxPool", "Resize", "Reshape", "Transpose", "Slice", "Flatten":
		return kindPass
	}
	return ""
}

// qPlan is what to quantize, decided from the graph and the options before calibration.
type qPlan struct {
	quant    map[*qNode]string // quantized nodes and their kind
	kept     map[*qNode]bool   // nodes kept FP32 by Keep or KeepHead
	tail     map[*qNode]bool   // the head's non-Conv nodes, left FP32 unless QuantizeTail
	producer map[string]*qNode
	qt       map[string]bool // activation tensors that get a Q→DQ pair
	// tensorOrder lists qt's tensors in graph order; passFrom maps a pass node's output
	// to the input whose range it takes (those are not calibrated).
	tensorOrder []string
	passFrom    map[string]string
	calib       []string // the tensors whose ranges calibration collects
	unsupported map[string]int
	graphOut    map[string]bool
}

// ident is how a node is named in reports and matched by Keep: its name, or its first
// output when it has none.
func (n *qNode) ident() string {
	if n.name != "" {
		return n.name
	}
	if len(n.outs) > 0 {
		return n.outs[0]
	}
	return n.op
}

// dataInputs are the indices of the inputs a node of that kind quantizes.
func dataInputs(kind string, n *qNode) []int {
	switch kind {
	case kindBinary:
		return []int{0, 1}
	case kindVariadic:
		idx := make([]int, len(n.ins))
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	return []int{0}
}

func planQuantization(m *qModel, opt QuantizeOptions) (*qPlan, error) {
	p := &qPlan{quant: map[*qNode]string{}, kept: map[*qNode]bool{}, tail: map[*qNode]bool{},
		producer: map[string]*qNode{}, qt: map[string]bool{}, passFrom: map[string]string{},
		unsupported: map[string]int{}, graphOut: map[string]bool{}}
	consumers := map[string][]*qNode{}
	for _, n := range m.nodes {
		for _, o := range n.outs {
			p.producer[o] = n
		}
		for _, in := range n.ins {
			consumers[in] = append(consumers[in], n)
		}
	}
	for _, v := range m.outputs {
		p.graphOut[v.name] = true
	}
	dt := elementTypes(m)
	isAct := func(t string) bool { return t != "" && dt[t] == dtFloat && m.inits[t] == nil }
	isFloatInit := func(t string) bool { it := m.inits[t]; return it != nil && it.dtype == dtFloat && !it.external }

	supported := func(n *qNode) string {
		k := nodeKind(n.op)
		if len(opt.Ops) > 0 && !slices.Contains(opt.Ops, n.op) {
			return ""
		}
		if k == "" || (n.domain != "" && n.domain != "ai.onnx") || len(n.ins) == 0 || len(n.outs) != 1 || !isAct(n.outs[0]) {
			return ""
		}
		if k == kindConv {
			if len(n.ins) < 2 || !isFloatInit(n.ins[1]) || len(m.inits[n.ins[1]].dims) < 3 {
				return ""
			}
			if len(n.ins) > 2 && n.ins[2] != "" {
				b := m.inits[n.ins[2]]
				if !isFloatInit(n.ins[2]) || len(b.dims) != 1 || b.dims[0] != m.inits[n.ins[1]].dims[0] {
					return ""
				}
			}
		}
		if k == kindBinary && len(n.ins) != 2 {
			return ""
		}
		for _, i := range dataInputs(k, n) {
			if !isAct(n.ins[i]) {
				return ""
			}
		}
		return k
	}

	for _, op := range opt.Ops {
		if nodeKind(op) == "" {
			return nil, fmt.Errorf("ops: the quantizer does not handle %q", op)
		}
	}
	// Keep: by node name or output name.
	for _, k := range opt.Keep {
		found := false
		for _, n := range m.nodes {
			if n.name == k || slices.Contains(n.outs, k) {
				p.kept[n], found = true, true
			}
		}
		if !found {
			var some []string
			for _, n := range m.nodes {
				if nodeKind(n.op) == kindConv && len(some) < 5 {
					some = append(some, n.ident())
				}
			}
			return nil, fmt.Errorf("keep %q: no node or tensor of that name in the model (nodes are named like %s)", k, strings.Join(some, ", "))
		}
	}
	// The head: nodes from which a graph output is reachable without passing a Conv
	// after them.
	head := map[*qNode]bool{}
	var visit func(n *qNode)
	visit = func(n *qNode) {
		if n == nil || head[n] {
			return
		}
		head[n] = true
		if n.op == "Conv" {
			return
		}
		for _, in := range n.ins {
			visit(p.producer[in])
		}
	}
	for _, v := range m.outputs {
		visit(p.producer[v.name])
	}
	for n := range head {
		if opt.KeepHead {
			p.kept[n] = true
		} else if n.op != "Conv" && !opt.QuantizeTail {
			p.tail[n] = true
		}
	}
	for _, n := range m.nodes {
		if p.kept[n] || p.tail[n] {
			continue
		}
		if k := supported(n); k != "" {
			p.quant[n] = k
		} else {
			p.unsupported[n.op]++
		}
	}

	// Which tensors get a Q→DQ pair: every data input of a quantized node, and every
	// quantized node's output that something other than a kept node reads (so a quantized
	// producer's output goes to QuantizeLinear alone, and fuses), unless it is a graph
	// output.
	for _, n := range m.nodes {
		k, ok := p.quant[n]
		if !ok {
			continue
		}
		for _, i := range dataInputs(k, n) {
			p.qt[n.ins[i]] = true
		}
		o := n.outs[0]
		if p.graphOut[o] {
			continue
		}
		for _, c := range consumers[o] {
			if !p.kept[c] {
				p.qt[o] = true
			}
		}
	}
	listed := map[string]bool{}
	add := func(t string) {
		if p.qt[t] && !listed[t] {
			listed[t] = true
			p.tensorOrder = append(p.tensorOrder, t)
		}
	}
	for _, v := range m.inputs {
		add(v.name)
	}
	for _, n := range m.nodes {
		for _, in := range n.ins {
			add(in)
		}
		for _, o := range n.outs {
			add(o)
		}
		if p.quant[n] == kindPass && p.qt[n.outs[0]] {
			p.passFrom[n.outs[0]] = n.ins[0]
		}
	}
	for _, t := range p.tensorOrder {
		if p.passFrom[t] == "" {
			p.calib = append(p.calib, t)
		}
	}
	return p, nil
}

// elementTypes finds the element type of every tensor it can: graph inputs and
// initializers as declared, and through the graph for the ops whose output type is
// their first input's (the float ops the quantizer handles among them). A tensor it
// cannot tell is absent (0), and is not quantized.
func elementTypes(m *qModel) map[string]int {
	dt := map[string]int{}
	for _, v := range m.inputs {
		dt[v.name] = v.dtype
	}
	for name, t := range m.inits {
		dt[name] = t.dtype
	}
	const int64Type, boolType = 7, 9
	for _, n := range m.nodes {
		t := 0
		switch n.op {
		case "Shape", "Size", "NonZero", "ArgMax", "ArgMin", "NonMaxSuppression":
			t = int64Type
		case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf":
			t = boolType
		case "Constant", "Cast", "ConstantOfShape", "RandomNormal", "RandomUniform", "EyeLike", "Range", "OneHot":
			t = 0 // from an attribute or another input: not followed
		default:
			for _, in := range n.ins {
				if in != "" {
					t = dt[in]
					break
				}
			}
		}
		if t == 0 {
			continue
		}
		for i, o := range n.outs {
			if n.op == "TopK" && i == 1 {
				dt[o] = int64Type
				continue
			}
			if (n.op == "MaxPool" || n.op == "Dropout") && i == 1 {
				continue
			}
			dt[o] = t
		}
	}
	return dt
}

// qparams is a tensor's activation quantization.
type qparams struct {
	scale float32
	zp    uint8
}

// rewrite writes the quantized model: Q→DQ pairs after every tensor in qt (consumers
// that are quantized, or whose producer is, read the DequantizeLinear's output), int8
// weights and int32 biases with their DequantizeLinear before every quantized Conv, and
// the opset raised to opset.
func (p *qPlan) rewrite(m *qModel, ranges map[string][2]float64, opset int64) ([]byte, *QuantizeReport, error) {
	params := map[string]qparams{}
	for _, t := range p.tensorOrder {
		if from := p.passFrom[t]; from != "" {
			pp, ok := params[from]
			if !ok {
				return nil, nil, fmt.Errorf("quantize: %q takes the range of %q, which has none", t, from)
			}
			params[t] = pp
			continue
		}
		r, ok := ranges[t]
		if !ok {
			return nil, nil, fmt.Errorf("quantize: no range for %q", t)
		}
		s, z := activationParams(r[0], r[1])
		params[t] = qparams{s, z}
	}

	used := map[string]bool{}
	for _, n := range m.nodes {
		used[n.name] = true
		for _, t := range append(slices.Clone(n.ins), n.outs...) {
			used[t] = true
		}
	}
	for t := range m.inits {
		used[t] = true
	}
	uniq := func(base string) string {
		name := base
		for i := 1; used[name]; i++ {
			name = fmt.Sprintf("%s_%d", base, i)
		}
		used[name] = true
		return name
	}
	dqName := map[string]string{}
	for _, t := range p.tensorOrder {
		dqName[t] = uniq(t + "_dequantized")
	}

	var inits []field  // new initializers
	var prefix []field // Q/DQ of graph inputs, before the first node
	qdq := func(t string) []field {
		pp := params[t]
		scale, zp, q := uniq(t+"_scale"), uniq(t+"_zero_point"), uniq(t+"_quantized")
		inits = append(inits,
			bytesField(graphInitializer, floatTensor(scale, nil, []float32{pp.scale})),
			bytesField(graphInitializer, encodeTensor(zp, dtUint8, nil, []byte{pp.zp})))
		return []field{
			bytesField(graphNode, encodeNode(uniq(t+"_QuantizeLinear"), "QuantizeLinear", []string{t, scale, zp}, []string{q}, -1)),
			bytesField(graphNode, encodeNode(uniq(t+"_DequantizeLinear"), "DequantizeLinear", []string{q, scale, zp}, []string{dqName[t]}, -1)),
		}
	}
	for _, v := range m.inputs {
		if p.qt[v.name] {
			prefix = append(prefix, qdq(v.name)...)
		}
	}

	// Conv weights and biases replaced by int8/int32 copies; the float ones stay only
	// where another node reads them.
	otherUse := map[string]bool{}
	for _, n := range m.nodes {
		for i, in := range n.ins {
			if p.quant[n] != kindConv || i == 0 {
				otherUse[in] = true
			}
		}
	}
	for _, v := range m.outputs {
		otherUse[v.name] = true
	}
	weightDQ := map[string]string{}
	weightScales := map[string][]float32{}
	convPrep := func(n *qNode) ([]field, error) {
		var nodes []field
		w := n.ins[1]
		if _, ok := weightDQ[w]; !ok {
			it := m.inits[w]
			vals, err := it.floats()
			if err != nil {
				return nil, err
			}
			ch := int(it.dims[0])
			scales, q := weightParams(vals, ch)
			qn, sn, zn, dn := uniq(w+"_quantized"), uniq(w+"_scale"), uniq(w+"_zero_point"), uniq(w+"_dequantized")
			inits = append(inits,
				bytesField(graphInitializer, int8Tensor(qn, it.dims, q)),
				bytesField(graphInitializer, floatTensor(sn, []int64{int64(ch)}, scales)),
				bytesField(graphInitializer, int8Tensor(zn, []int64{int64(ch)}, make([]int8, ch))))
			nodes = append(nodes, bytesField(graphNode, encodeNode(uniq(w+"_DequantizeLinear"), "DequantizeLinear", []string{qn, sn, zn}, []string{dn}, 0)))
			weightDQ[w], weightScales[w] = dn, scales
		}
		if len(n.ins) > 2 && n.ins[2] != "" {
			b := n.ins[2]
			vals, err := m.inits[b].floats()
			if err != nil {
				return nil, err
			}
			scales, q := biasParams(vals, params[n.ins[0]].scale, weightScales[w])
			ch := int64(len(vals))
			qn, sn, zn, dn := uniq(b+"_quantized"), uniq(b+"_scale"), uniq(b+"_zero_point"), uniq(b+"_dequantized")
			inits = append(inits,
				bytesField(graphInitializer, int32Tensor(qn, []int64{ch}, q)),
				bytesField(graphInitializer, floatTensor(sn, []int64{ch}, scales)),
				bytesField(graphInitializer, int32Tensor(zn, []int64{ch}, make([]int32, ch))))
			nodes = append(nodes, bytesField(graphNode, encodeNode(uniq(b+"_DequantizeLinear"), "DequantizeLinear", []string{qn, sn, zn}, []string{dn}, 0)))
			weightDQ[n.name+"\x00bias"] = dn
		}
		return nodes, nil
	}

	rep := &QuantizeReport{OpsetTo: opset, Quantized: map[string]int{}, Unsupported: p.unsupported, Tensors: len(p.qt)}
	var body []field
	for _, n := range m.nodes {
		k, quant := p.quant[n]
		if quant {
			rep.Quantized[n.op]++
		}
		if p.kept[n] {
			rep.KeptFP32 = append(rep.KeptFP32, n.ident())
		}
		if p.tail[n] {
			rep.Tail = append(rep.Tail, n.ident())
		}
		if k == kindConv {
			pre, err := convPrep(n)
			if err != nil {
				return nil, nil, err
			}
			body = append(body, pre...)
		}
		enc := n.withInputs(func(i int, t string) string {
			if k == kindConv && i == 1 {
				return weightDQ[t]
			}
			if k == kindConv && i == 2 && t != "" {
				return weightDQ[n.name+"\x00bias"]
			}
			if p.qt[t] {
				if _, prodQuant := p.quant[p.producer[t]]; quant || prodQuant {
					return dqName[t]
				}
			}
			return t
		})
		body = append(body, bytesField(graphNode, enc))
		for _, o := range n.outs {
			if p.qt[o] {
				body = append(body, qdq(o)...)
			}
		}
	}

	var gfs []field
	nodesDone := false
	lastInit := -1
	for _, f := range m.gfs {
		if f.typ == wireBytes {
			switch f.num {
			case graphNode:
				if !nodesDone {
					gfs = append(gfs, prefix...)
					gfs = append(gfs, body...)
					nodesDone = true
				}
				continue
			case graphInitializer:
				name := string(first(mustFields(f.val), tensorName))
				if _, replaced := weightDQ[name]; replaced && !otherUse[name] {
					continue
				}
				if p.isBias(m, name) && !otherUse[name] {
					continue
				}
			case graphInput:
				// An initializer that is also a graph input (older exporters list them
				// all) is one a caller may override, so ONNX Runtime does not treat it
				// as a constant; on NanoDet-m its layout optimizer then permutes such
				// Slice and Reshape parameters at run time and fails. The written
				// model is a constant graph: only real inputs stay inputs.
				name := string(first(mustFields(f.val), valueInfoName))
				if m.inits[name] != nil {
					continue
				}
			}
		}
		gfs = append(gfs, f)
		if f.num == graphInitializer {
			lastInit = len(gfs) - 1
		}
	}
	if !nodesDone {
		return nil, nil, fmt.Errorf("quantize: the graph has no nodes")
	}
	if lastInit < 0 {
		gfs = append(gfs, inits...)
	} else {
		gfs = slices.Insert(gfs, lastInit+1, inits...)
	}
	out := m.encode(gfs, opset, irFor(opset))
	rep.Bytes = len(out)
	return out, rep, nil
}

// isBias says whether name is the bias of a quantized Conv.
func (p *qPlan) isBias(m *qModel, name string) bool {
	for n, k := range p.quant {
		if k == kindConv && len(n.ins) > 2 && n.ins[2] == name {
			return true
		}
	}
	return false
}

// mustFields parses fields that parseModel already parsed once.
func mustFields(b []byte) []field {
	fs, _ := parseFields(b)
	return fs
}
