package functions

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// SpecFile is the name of the spec inside a function directory.
const SpecFile = "function.yaml"

// maxSpecBytes bounds a spec file; a real one is a few hundred bytes.
const maxSpecBytes = 64 << 10

// Spec describes a function: which model to run and how to feed it and read it. It is
// written as function.yaml beside the model; unknown fields are an error, not ignored.
type Spec struct {
	// Name identifies the function: lowercase letters, digits and '-', at most 63.
	Name string `yaml:"name" json:"name"`
	// Runtime runs the model. Only "onnx" (ONNX Runtime). Default "onnx".
	Runtime string `yaml:"runtime" json:"runtime"`
	// Model is the model file, relative to the function directory. Required.
	Model string `yaml:"model" json:"model"`
	// Labels is a text file of class names, one per line, relative to the function
	// directory. Optional; without it detections carry class ids only.
	Labels    string    `yaml:"labels,omitempty" json:"labels,omitempty"`
	Input     Input     `yaml:"input" json:"input"`
	Output    Output    `yaml:"output" json:"output"`
	Batch     Batch     `yaml:"batch" json:"batch"`
	Resources Resources `yaml:"resources" json:"resources"`
	// Track, when present, tracks the detections of each camera across frames (track ids,
	// line and area counts); a deployment turns it on with `fn deploy --track` otherwise.
	Track *Track `yaml:"track,omitempty" json:"track,omitempty"`
}

// Track holds the tracker's parameters; zero values take its defaults (high_thresh 0.5,
// low_thresh 0.1, match_iou 0.3, max_lost 30 frames, per class, idle_timeout 30s).
type Track struct {
	HighThresh    float32  `yaml:"high_thresh,omitempty" json:"high_thresh,omitempty"`
	LowThresh     float32  `yaml:"low_thresh,omitempty" json:"low_thresh,omitempty"`
	MatchIoU      float32  `yaml:"match_iou,omitempty" json:"match_iou,omitempty"`
	MaxLost       int      `yaml:"max_lost,omitempty" json:"max_lost,omitempty"`
	ClassAgnostic bool     `yaml:"class_agnostic,omitempty" json:"class_agnostic,omitempty"`
	IdleTimeout   Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
}

// Input describes the model's image input and how a frame becomes that tensor.
type Input struct {
	// Tensor is the model's input name. Required.
	Tensor string `yaml:"tensor" json:"tensor"`
	// Width and Height of the tensor's image, in pixels. Required.
	Width  int `yaml:"width" json:"width"`
	Height int `yaml:"height" json:"height"`
	// Layout is NCHW (default) or NHWC.
	Layout string `yaml:"layout" json:"layout"`
	// Channels is the channel order the model was trained on: RGB (default) or BGR.
	Channels string `yaml:"channels" json:"channels"`
	// Resize is "letterbox" (default: keep aspect ratio, pad) or "stretch".
	Resize string `yaml:"resize" json:"resize"`
	// Anchor places a letterboxed image: "top-left" (default; YOLOX) or "center".
	Anchor string `yaml:"anchor" json:"anchor"`
	// Pad is the value, 0..255, of letterbox padding. Default 114.
	Pad *float32 `yaml:"pad,omitempty" json:"pad,omitempty"`
	// Scale multiplies 0..255 pixel values first. Default 1 (raw pixels).
	Scale *float32 `yaml:"scale,omitempty" json:"scale,omitempty"`
	// Mean and Std, per channel in the spec's channel order and in scaled units, give
	// value = (pixel*scale - mean) / std. Defaults 0 and 1.
	Mean []float32 `yaml:"mean,omitempty" json:"mean,omitempty"`
	Std  []float32 `yaml:"std,omitempty" json:"std,omitempty"`
}

// Output describes how the model's outputs become results.
type Output struct {
	// Decoder turns output tensors into results, one per model family: "yolox", "yolo"
	// (Ultralytics v5/v8/v11 and end-to-end exports), "gfl" (NanoDet, PP-PicoDet),
	// "boxes-scores" (SSD-style, UltraFace), "detr" (DETR, RT-DETR) give detections;
	// "classify" gives labels; "embed" gives an embedding; "raw" gives the named tensors as
	// they are. Required. New model families register a Decoder.
	Decoder string `yaml:"decoder" json:"decoder"`
	// Tensors are the output names the decoder reads, in the order it reads them. Required.
	Tensors []string `yaml:"tensors" json:"tensors"`
	// ScoreThreshold drops detections (and classify labels) scoring below it. Default 0.3
	// for detectors, 0 for classify.
	ScoreThreshold *float32 `yaml:"score_threshold,omitempty" json:"score_threshold,omitempty"`
	// NMSThreshold is the IoU above which NMS suppresses the weaker box. Default 0.45.
	NMSThreshold *float32 `yaml:"nms_threshold,omitempty" json:"nms_threshold,omitempty"`
	// ClassAgnostic runs NMS across classes instead of within each. Default false.
	ClassAgnostic bool `yaml:"class_agnostic,omitempty" json:"class_agnostic,omitempty"`
	// Activation turns the model's class outputs into scores: "none" (they are scores
	// already), "sigmoid" (each class on its own) or "softmax" (across the classes).
	// Default: softmax for classify, sigmoid for detr, none for the others.
	Activation string `yaml:"activation,omitempty" json:"activation,omitempty"`
	// TopK is how many labels a classify result carries, best first. Default 5.
	TopK int `yaml:"top_k,omitempty" json:"top_k,omitempty"`
	// GFL holds the gfl decoder's settings (defaults fit NanoDet-m).
	GFL *GFL `yaml:"gfl,omitempty" json:"gfl,omitempty"`
	// YOLO holds the yolo decoder's settings.
	YOLO *YOLO `yaml:"yolo,omitempty" json:"yolo,omitempty"`
	// Boxes says how the boxes-scores and detr decoders read boxes and score columns.
	Boxes *Boxes `yaml:"boxes,omitempty" json:"boxes,omitempty"`
}

// GFL describes a Generalized Focal Loss head (NanoDet, PP-PicoDet): per level, class
// scores and a distribution of reg_max+1 bins for each side of the box.
type GFL struct {
	// Strides of the levels, in the order their outputs come. Default [8, 16, 32].
	Strides []int `yaml:"strides,omitempty" json:"strides,omitempty"`
	// RegMax is the last bin of a side's distribution (bins 0..reg_max). Default 7.
	RegMax int `yaml:"reg_max,omitempty" json:"reg_max,omitempty"`
	// Order of the output tensors: "scores-first" (default: every level's scores, then
	// every level's distributions, as NanoDet exports), "interleaved" (scores then
	// distributions, level by level) or "combined" (one tensor, all levels' rows, each
	// row the class scores then the distributions, as NanoDet-Plus exports).
	Order string `yaml:"order,omitempty" json:"order,omitempty"`
	// CenterOffset places an anchor in its grid cell, in cells: 0.5 (default, NanoDet-m)
	// or 0 (NanoDet-Plus, PP-PicoDet).
	CenterOffset *float32 `yaml:"center_offset,omitempty" json:"center_offset,omitempty"`
}

// YOLO says which Ultralytics export layout the yolo decoder reads.
type YOLO struct {
	// Variant is "v8" (also v11: [4+classes, anchors], cx cy w h then class scores),
	// "v5" ([anchors, 5+classes], with objectness) or "end2end" ([boxes, 6]: x1 y1 x2 y2
	// score class, NMS done in the graph). Default: told from the output's shape.
	Variant string `yaml:"variant,omitempty" json:"variant,omitempty"`
}

// Boxes says how boxes and score columns are written in a model's outputs.
type Boxes struct {
	// Format of a box's 4 numbers: "xyxy" (corners), "cxcywh" (centre and size) or
	// "yxyx" (corners, y first, as TensorFlow exports). Default xyxy for boxes-scores,
	// cxcywh for detr.
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
	// Normalized boxes are in 0..1 of the input canvas rather than in its pixels.
	// Default false for boxes-scores, true for detr.
	Normalized *bool `yaml:"normalized,omitempty" json:"normalized,omitempty"`
	// Background names a score column that is no class: "none" (default), "first"
	// (SSD, UltraFace: class ids then start at the next column) or "last" (DETR's
	// no-object).
	Background string `yaml:"background,omitempty" json:"background,omitempty"`
}

// Batch bounds how many frames a runner collects into one inference run.
type Batch struct {
	// Max frames per batch. Default 8.
	Max int `yaml:"max" json:"max"`
	// MaxDelay is the longest a frame waits for its batch to fill. Default 20ms.
	MaxDelay Duration `yaml:"max_delay" json:"max_delay"`
}

// Resources says where the function may run.
type Resources struct {
	// Device is "cpu", "gpu" or "any" (default).
	Device string `yaml:"device" json:"device"`
	// MemoryMB a runner should have free to load the function. Default 512.
	MemoryMB int `yaml:"memory_mb" json:"memory_mb"`
	// Lanes is how many inferences a runner runs at once for this function; 0 (default)
	// leaves it to the runner (`diplip runner --lanes`, measured best for its CPUs).
	Lanes int `yaml:"lanes" json:"lanes,omitempty"`
}

// Duration is a time.Duration written as "20ms" in YAML and JSON.
type Duration time.Duration

// UnmarshalYAML parses "20ms"-style strings.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 20ms", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalText writes the duration as a string (JSON).
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses the duration (JSON).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like 20ms", b)
	}
	*d = Duration(v)
	return nil
}

// ErrInvalidSpec is wrapped by every spec parsing and validation error.
var ErrInvalidSpec = errors.New("invalid function spec")

// ParseSpec reads a spec, fills defaults and validates it. Errors name the field.
func ParseSpec(r io.Reader) (*Spec, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	if len(b) > maxSpecBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidSpec, maxSpecBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty", ErrInvalidSpec)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidSpec, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	s.fillDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadSpec reads DIR/function.yaml.
func LoadSpec(dir string) (*Spec, error) {
	f, err := os.Open(filepath.Join(dir, SpecFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s (a function directory holds %s, the model and its labels file)",
			ErrInvalidSpec, dir, SpecFile, SpecFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	defer f.Close()
	s, err := ParseSpec(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return s, nil
}

func ptr(v float32) *float32 { return &v }

func (s *Spec) fillDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&s.Runtime, "onnx")
	def(&s.Input.Layout, "NCHW")
	def(&s.Input.Channels, "RGB")
	def(&s.Input.Resize, "letterbox")
	def(&s.Input.Anchor, "top-left")
	def(&s.Resources.Device, "any")
	if s.Input.Pad == nil {
		s.Input.Pad = ptr(114)
	}
	if s.Input.Scale == nil {
		s.Input.Scale = ptr(1)
	}
	if s.Input.Mean == nil {
		s.Input.Mean = []float32{0, 0, 0}
	}
	if s.Input.Std == nil {
		s.Input.Std = []float32{1, 1, 1}
	}
	s.Output.fillDefaults()
	if s.Output.NMSThreshold == nil {
		s.Output.NMSThreshold = ptr(0.45)
	}
	if s.Batch.Max == 0 {
		s.Batch.Max = 8
	}
	if s.Batch.MaxDelay == 0 {
		s.Batch.MaxDelay = Duration(20 * time.Millisecond)
	}
	if s.Resources.MemoryMB == 0 {
		s.Resources.MemoryMB = 512
	}
}

func (o *Output) fillDefaults() {
	if o.ScoreThreshold == nil {
		o.ScoreThreshold = ptr(0.3)
		if o.Decoder == "classify" {
			o.ScoreThreshold = ptr(0)
		}
	}
	if o.Activation == "" {
		switch o.Decoder {
		case "classify":
			o.Activation = "softmax"
		case "detr":
			o.Activation = "sigmoid"
		default:
			o.Activation = "none"
		}
	}
	if o.Decoder == "classify" && o.TopK == 0 {
		o.TopK = 5
	}
	if o.Decoder == "gfl" {
		if o.GFL == nil {
			o.GFL = &GFL{}
		}
		g := o.GFL
		if g.Strides == nil {
			g.Strides = []int{8, 16, 32}
		}
		if g.RegMax == 0 {
			g.RegMax = 7
		}
		if g.Order == "" {
			g.Order = "scores-first"
		}
		if g.CenterOffset == nil {
			g.CenterOffset = ptr(0.5)
		}
	}
	if o.Decoder == "boxes-scores" || o.Decoder == "detr" {
		if o.Boxes == nil {
			o.Boxes = &Boxes{}
		}
		b := o.Boxes
		if b.Format == "" {
			b.Format = "xyxy"
			if o.Decoder == "detr" {
				b.Format = "cxcywh"
			}
		}
		if b.Normalized == nil {
			v := o.Decoder == "detr"
			b.Normalized = &v
		}
		if b.Background == "" {
			b.Background = "none"
		}
	}
}

// validate checks the output section; bad records each wrong field.
func (o *Output) validate(bad func(field, format string, args ...any)) {
	oneOf := func(field, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(field, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
	oneOf("output.decoder", o.Decoder, DecoderNames()...)
	if len(o.Tensors) == 0 {
		bad("output.tensors", "required: the model's output names the decoder reads")
	} else if n, ok := tensorCounts[o.Decoder]; ok && len(o.Tensors) != n {
		what := map[int]string{1: "one tensor", 2: "two tensors"}[n]
		bad("output.tensors", "the %s decoder reads exactly %s, got %d", o.Decoder, what, len(o.Tensors))
	}
	if t := *o.ScoreThreshold; !(t >= 0 && t <= 1) {
		bad("output.score_threshold", "%v: want 0..1", t)
	}
	if t := *o.NMSThreshold; !(t > 0 && t <= 1) {
		bad("output.nms_threshold", "%v: want greater than 0, at most 1", t)
	}
	oneOf("output.activation", o.Activation, "none", "sigmoid", "softmax")
	if o.TopK < 0 || o.TopK > 1000 {
		bad("output.top_k", "%d: want 1..1000", o.TopK)
	}
	if o.GFL != nil {
		if o.Decoder != "gfl" {
			bad("output.gfl", "only the gfl decoder reads it (the decoder is %q)", o.Decoder)
		}
		g := o.GFL
		if len(g.Strides) == 0 || len(g.Strides) > 8 {
			bad("output.gfl.strides", "%v: want 1 to 8 levels", g.Strides)
		}
		for _, st := range g.Strides {
			if st < 1 || st > 1024 {
				bad("output.gfl.strides", "%d: want 1..1024", st)
			}
		}
		if g.RegMax < 1 || g.RegMax > 64 {
			bad("output.gfl.reg_max", "%d: want 1..64", g.RegMax)
		}
		oneOf("output.gfl.order", g.Order, "scores-first", "interleaved", "combined")
		if c := *g.CenterOffset; !(c >= 0 && c <= 1) {
			bad("output.gfl.center_offset", "%v: want 0..1", c)
		}
		if o.Decoder == "gfl" && len(o.Tensors) > 0 {
			want := 2 * len(g.Strides)
			if g.Order == "combined" {
				want = 1
			}
			if len(o.Tensors) != want {
				bad("output.tensors", "the gfl decoder with %d levels in order %s reads %d tensors, got %d",
					len(g.Strides), g.Order, want, len(o.Tensors))
			}
		}
	}
	if o.YOLO != nil {
		if o.Decoder != "yolo" {
			bad("output.yolo", "only the yolo decoder reads it (the decoder is %q)", o.Decoder)
		}
		if o.YOLO.Variant != "" {
			oneOf("output.yolo.variant", o.YOLO.Variant, "v8", "v5", "end2end")
		}
	}
	if b := o.Boxes; b != nil {
		if o.Decoder != "boxes-scores" && o.Decoder != "detr" {
			bad("output.boxes", "only the boxes-scores and detr decoders read it (the decoder is %q)", o.Decoder)
		}
		oneOf("output.boxes.format", b.Format, "xyxy", "cxcywh", "yxyx")
		oneOf("output.boxes.background", b.Background, "none", "first", "last")
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate checks a spec whose defaults are filled. The error names every wrong field.
func (s *Spec) Validate() error {
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, args...))
	}
	oneOf := func(field, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(field, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
	if !nameRE.MatchString(s.Name) {
		bad("name", "%q: want lowercase letters, digits and '-', 1 to 63 characters", s.Name)
	}
	oneOf("runtime", s.Runtime, "onnx")
	localFile := func(field, p string) {
		if !filepath.IsLocal(p) {
			bad(field, "%q: want a file name relative to the function directory", p)
		}
	}
	localFile("model", s.Model)
	if s.Labels != "" {
		localFile("labels", s.Labels)
	}
	in := s.Input
	if in.Tensor == "" {
		bad("input.tensor", "required: the model's input name")
	}
	if in.Width < 1 || in.Width > 8192 || in.Height < 1 || in.Height > 8192 {
		bad("input.width/height", "%dx%d: want 1..8192 each", in.Width, in.Height)
	}
	oneOf("input.layout", in.Layout, "NCHW", "NHWC")
	oneOf("input.channels", in.Channels, "RGB", "BGR")
	oneOf("input.resize", in.Resize, "letterbox", "stretch")
	oneOf("input.anchor", in.Anchor, "top-left", "center")
	if *in.Pad < 0 || *in.Pad > 255 {
		bad("input.pad", "%v: want 0..255", *in.Pad)
	}
	if *in.Scale <= 0 {
		bad("input.scale", "%v: want > 0", *in.Scale)
	}
	if len(in.Mean) != 3 {
		bad("input.mean", "%d values: want 3, one per channel", len(in.Mean))
	}
	if len(in.Std) != 3 {
		bad("input.std", "%d values: want 3, one per channel", len(in.Std))
	}
	for i, v := range in.Std {
		if v == 0 {
			bad(fmt.Sprintf("input.std[%d]", i), "0 would divide by zero")
		}
	}
	s.Output.validate(bad)
	if s.Batch.Max < 1 || s.Batch.Max > 256 {
		bad("batch.max", "%d: want 1..256", s.Batch.Max)
	}
	if d := time.Duration(s.Batch.MaxDelay); d < 0 || d > 10*time.Second {
		bad("batch.max_delay", "%v: want 0..10s", d)
	}
	oneOf("resources.device", s.Resources.Device, "cpu", "gpu", "any")
	if s.Resources.MemoryMB < 0 {
		bad("resources.memory_mb", "%d: want ≥ 0", s.Resources.MemoryMB)
	}
	if t := s.Track; t != nil {
		for _, v := range []struct {
			name string
			v    float32
		}{{"track.high_thresh", t.HighThresh}, {"track.low_thresh", t.LowThresh}, {"track.match_iou", t.MatchIoU}} {
			if v.v < 0 || v.v > 1 {
				bad(v.name, "%v: want 0 (the default) to 1", v.v)
			}
		}
		if t.MaxLost < 0 || t.MaxLost > 100_000 {
			bad("track.max_lost", "%d: want 0 (the default, 30) to 100000 frames", t.MaxLost)
		}
		if t.IdleTimeout < 0 {
			bad("track.idle_timeout", "%v: want ≥ 0", time.Duration(t.IdleTimeout))
		}
	}
	if s.Resources.Lanes < 0 || s.Resources.Lanes > 64 {
		bad("resources.lanes", "%d: want 0 (the runner's default) to 64", s.Resources.Lanes)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, strings.Join(errs, "; "))
	}
	return nil
}
