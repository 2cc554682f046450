package onnx

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diplip/diplip/functions"
)

// Inspect reads what `diplip fn init` needs of a model file without running it: its
// inputs and outputs (names, shapes, element types) and its metadata (producer and the
// custom metadata map, where exporters such as Ultralytics put names, imgsz and stride).
// A file that is not an ONNX model is an error that says so.
func Inspect(modelPath string) (*functions.ModelInfo, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, err
	}
	// An ONNX model is a protobuf ModelProto whose first field is ir_version (tag 0x08);
	// anything else (a JPEG, a .pt, a zip) is refused before ONNX Runtime parses it.
	if len(b) < 16 || b[0] != 0x08 {
		return nil, fmt.Errorf("%s is not an ONNX model (%d bytes starting %q)", modelPath, len(b), shortPrefix(b))
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(b)
	if err != nil {
		return nil, fmt.Errorf("%s is not an ONNX model ONNX Runtime can load: %w", modelPath, err)
	}
	info := &functions.ModelInfo{Metadata: map[string]string{}}
	conv := func(infos []ort.InputOutputInfo) []functions.ModelTensor {
		var ts []functions.ModelTensor
		for _, i := range infos {
			t := functions.ModelTensor{Name: i.Name, Type: "non-tensor"}
			if i.OrtValueType == ort.ONNXTypeTensor {
				t.Shape = append([]int64(nil), i.Dimensions...)
				t.Type = strings.ToLower(strings.TrimPrefix(i.DataType.String(), "ONNX_TENSOR_ELEMENT_DATA_TYPE_"))
			}
			ts = append(ts, t)
		}
		return ts
	}
	info.Inputs, info.Outputs = conv(ins), conv(outs)
	md, err := ort.GetModelMetadataWithONNXData(b)
	if err != nil {
		return nil, fmt.Errorf("reading %s's metadata: %w", modelPath, err)
	}
	defer md.Destroy()
	info.Producer, _ = md.GetProducerName()
	info.Description, _ = md.GetDescription()
	keys, _ := md.GetCustomMetadataMapKeys()
	for _, k := range keys {
		if v, ok, err := md.LookupCustomMetadataMap(k); err == nil && ok {
			info.Metadata[k] = v
		}
	}
	return info, nil
}

func shortPrefix(b []byte) []byte {
	b = b[:min(len(b), 8)]
	return bytes.ToValidUTF8(b, []byte("?"))
}
