// Package functions holds what a function image means, in pure Go: the spec
// (function.yaml: model file, input layout, pre-processing, decoder, batch, resources,
// tracking), the decoders per model family (decoder.go registers them: yolox.go, yolo.go
// for Ultralytics, gfl.go for NanoDet/PP-PicoDet, boxes.go for SSD-style and DETR-style,
// classify.go for classifiers and embedders), the geometry they share (letterbox, boxes,
// NMS in detect.go), and `fn init`'s recognition of a model's family from its inputs,
// outputs and metadata (propose.go).
//
// Its subpackages are the rest of a function's work and of what is computed from its
// results:
//   - onnx: the ONNX Runtime session (lanes, devices, CUDA), no OpenCV;
//   - vision: decoding and laying out frames with OpenCV (gocv);
//   - pipeline: frames in, results out (vision → onnx → the spec's decoder), the
//     function a runner runs;
//   - track and compare: analytics over results (ByteTrack with zone counts; detection
//     sets scored against each other for shadows and replays). They live here because
//     they are pure Go over the same detections; they are not models.
//
// None of it knows about Kafka or NATS (layout_test.go holds it to that).
package functions
