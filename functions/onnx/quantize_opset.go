package onnx

import (
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
// or made an input optional (Resize's roi). Ops whose meaning changed by 13 (Split,
// Squeeze, Unsqueeze and ReduceSum take their axes as inputs; Softmax, LogSoftmax and
// Hardmax changed their axis semantics; Dropout's ratio became an input at 12) are not
// listed, and a model below 13 that has one is refused with an error naming it.
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
		if (n.domain == "" || n.domain == "ai.onnx") && !opset13Same[n.op] && !slices.Contains(bad, n.op) {
			bad = append(bad, n.op)
		}
	}
	if len(bad) > 0 {
		return 0, fmt.Errorf("model has opset %d and per-channel quantization needs opset %d, but %s changed meaning by opset %d (or was not checked); export the model at opset %d", m.opset, quantOpset, strings.Join(bad, ", "), quantOpset, quantOpset)
	}
	return quantOpset, nil
}
