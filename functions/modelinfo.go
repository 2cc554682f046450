package functions

// ModelTensor is a model input or output as `fn init` sees it: its name, its shape (-1
// for a dynamic dimension) and its element type ("float", "uint8", ...).
type ModelTensor struct {
	Name  string
	Shape []int64
	Type  string
}

// ModelInfo is what a model file says about itself (functions/onnx.Inspect reads it).
type ModelInfo struct {
	Inputs, Outputs []ModelTensor
	// Producer and Description are the model's; Metadata its custom metadata map.
	Producer, Description string
	Metadata              map[string]string
}
