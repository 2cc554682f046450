package functions

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrCannotPlace is wrapped by Propose's refusals: the file is no model diplip can feed
// (no image input, two of them, other inputs) or no registered family fits its outputs.
var ErrCannotPlace = errors.New("cannot place the model")

// Proposal is the spec `diplip fn init` writes for a model, with what it found and what
// the user must check.
type Proposal struct {
	Spec *Spec
	// Family is the decoder and what it covers, e.g. "gfl (NanoDet, PP-PicoDet)".
	Family string
	// Why says which shapes (and metadata) made the family, one sentence each.
	Why []string
	// Comments annotate spec fields by path ("input.channels"); those starting "CHECK"
	// are what the model could not say (channel order, normalisation, thresholds).
	Comments map[string]string
	// Labels are class names the model's metadata carries (Ultralytics' names), to be
	// written as the labels file when the user gave none.
	Labels []string
}

// Propose recognises a model's family from its inputs, outputs and metadata and makes a
// spec for it, named name, whose model file is modelFile. labels, when given, are the
// user's class names; a count that contradicts the model's classes is an error.
func Propose(m *ModelInfo, name, modelFile string, labels []string) (*Proposal, error) {
	p := &Proposal{Comments: map[string]string{}}
	img, err := imageInput(m)
	if err != nil {
		return nil, err
	}
	s := &Spec{Name: name, Model: modelFile}
	in := &s.Input
	in.Tensor = img.Name
	sh := img.Shape
	in.Layout, in.Height, in.Width = "NCHW", int(sh[2]), int(sh[3])
	if sh[1] != 3 {
		in.Layout, in.Height, in.Width = "NHWC", int(sh[1]), int(sh[2])
	}
	p.Comments["input.layout"] = fmt.Sprintf("the input is %v: the 3 colour channels are on axis %d", sh, map[string]int{"NCHW": 1, "NHWC": 3}[in.Layout])
	if in.Width > 0 && in.Height > 0 {
		p.Comments["input.width"] = fmt.Sprintf("from the input's shape %v", sh)
	} else {
		w, h, ok := metaImgsz(m.Metadata)
		if !ok {
			w, h = 640, 640
			p.Comments["input.width"] = fmt.Sprintf("CHECK: the input %v has a dynamic size; 640x640 is a guess, use the size the model was trained at", sh)
		} else {
			p.Comments["input.width"] = fmt.Sprintf("from the model's metadata imgsz (the input %v is dynamic)", sh)
		}
		in.Width, in.Height = w, h
	}
	var outs []ModelTensor
	for _, o := range m.Outputs {
		if o.Type == "float" && len(o.Shape) >= 2 {
			outs = append(outs, o)
		}
	}
	if len(outs) == 0 {
		return nil, fmt.Errorf("%w: no float32 output with a batch axis (outputs %s); diplip reads float32 tensors", ErrCannotPlace, tensorList(m.Outputs))
	}
	if err := p.recognise(s, m, outs, labels); err != nil {
		return nil, err
	}
	s.fillDefaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("fn init made an invalid spec (a bug): %w", err)
	}
	p.Spec = s
	return p, nil
}

// imageInput finds the model's one image input: float, rank 4, 3 channels on axis 1
// (NCHW) or 3 (NHWC), batch 1 or dynamic.
func imageInput(m *ModelInfo) (ModelTensor, error) {
	var imgs, others []ModelTensor
	for _, t := range m.Inputs {
		if len(t.Shape) == 4 && (t.Shape[1] == 3 || t.Shape[3] == 3) {
			imgs = append(imgs, t)
		} else {
			others = append(others, t)
		}
	}
	switch {
	case len(imgs) == 0:
		return ModelTensor{}, fmt.Errorf("%w: no image input: diplip feeds one image tensor [N 3 H W] or [N H W 3]; the model's inputs are %s",
			ErrCannotPlace, tensorList(m.Inputs))
	case len(imgs) > 1:
		return ModelTensor{}, fmt.Errorf("%w: %d image inputs (%s): diplip feeds one image per run", ErrCannotPlace, len(imgs), tensorList(imgs))
	case len(others) > 0:
		return ModelTensor{}, fmt.Errorf("%w: besides the image %s the model takes %s, which diplip cannot feed (export the model with only the image as input)",
			ErrCannotPlace, imgs[0].Name, tensorList(others))
	}
	t := imgs[0]
	if t.Type != "float" {
		return ModelTensor{}, fmt.Errorf("%w: the image input %s is %s: diplip feeds float32 (export with a float input)", ErrCannotPlace, t.Name, t.Type)
	}
	if t.Shape[0] > 1 {
		return ModelTensor{}, fmt.Errorf("%w: the image input %s%v has a batch axis fixed at %d: diplip needs 1 or dynamic", ErrCannotPlace, t.Name, t.Shape, t.Shape[0])
	}
	return t, nil
}

func tensorList(ts []ModelTensor) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, fmt.Sprintf("%s%v %s", t.Name, t.Shape, t.Type))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// frame is a tensor's per-frame shape (without the batch axis).
func frame(t ModelTensor) []int64 { return t.Shape[1:] }

// vector reports the length of a per-frame vector ([K], [K 1 1]).
func vector(t ModelTensor) (int64, bool) {
	n := vectorLen(t.Shape)
	return n, n > 0
}

func (p *Proposal) why(format string, args ...any) {
	p.Why = append(p.Why, fmt.Sprintf(format, args...))
}

// classes checks the user's labels against the model's class count (when known) and
// notes what the names are.
func (p *Proposal) classes(s *Spec, n int, labels []string) error {
	if n > 0 && len(labels) > 0 && len(labels) != n {
		return fmt.Errorf("%w: the labels file has %d names, the model has %d classes", ErrCannotPlace, len(labels), n)
	}
	if len(labels) == 0 && len(p.Labels) == 0 && n > 0 {
		hint := ""
		if n == 80 {
			hint = " (80: COCO's? functions/examples/yolox-nano/coco80.txt)"
		}
		p.Comments["labels"] = fmt.Sprintf("CHECK: no labels: results carry class ids 0..%d only; give --labels FILE%s", n-1, hint)
	}
	return nil
}

// Preprocessing conventions.
var (
	imagenetMean = []float32{0.485, 0.456, 0.406}
	imagenetStd  = []float32{0.229, 0.224, 0.225}
)

func (p *Proposal) recognise(s *Spec, m *ModelInfo, outs []ModelTensor, labels []string) error {
	in, o := &s.Input, &s.Output
	W, H := in.Width, in.Height
	names := func(ts ...ModelTensor) []string {
		var n []string
		for _, t := range ts {
			n = append(n, t.Name)
		}
		return n
	}
	meta := m.Metadata
	ultralytics := meta["names"] != "" || strings.Contains(strings.ToLower(meta["author"]), "ultralytics")
	if ultralytics {
		p.Labels = parseNames(meta["names"])
		p.why("the metadata says Ultralytics (author %q, %d names, task %q)", meta["author"], len(p.Labels), meta["task"])
	}
	ultraPre := func() {
		in.Channels, in.Resize, in.Anchor, in.Pad, in.Scale = "RGB", "letterbox", "center", ptr(114), ptr(1.0/255)
		p.Comments["input.channels"] = "Ultralytics trains on RGB, 0..1 (scale 1/255), letterboxed centred with 114 padding"
	}
	if ultralytics && meta["task"] != "" && meta["task"] != "detect" && meta["task"] != "classify" {
		return fmt.Errorf("%w: an Ultralytics %q model: no decoder reads its outputs yet (decoder raw returns them as they are)", ErrCannotPlace, meta["task"])
	}

	// One output.
	if len(outs) == 1 {
		t := outs[0]
		if k, ok := vector(t); ok {
			o.Tensors = names(t)
			classify := len(labels) == int(k) || len(p.Labels) == int(k) || k == 1000 || k == 1001 || meta["task"] == "classify"
			if classify {
				o.Decoder = "classify"
				p.Family = "classify (image classifiers)"
				p.why("one output %s%v: one vector of %d per frame, and %s", t.Name, t.Shape, k,
					map[bool]string{true: "the labels have as many names", false: "1000/1001 is ImageNet's class count"}[len(labels) == int(k) || len(p.Labels) == int(k)])
				in.Resize, in.Channels, in.Scale, in.Mean, in.Std = "stretch", "RGB", ptr(1.0/255), imagenetMean, imagenetStd
				p.Comments["input.channels"] = "CHECK: the usual ImageNet preprocessing (RGB, 0..1, ImageNet mean/std); Ultralytics classifiers take mean 0, std 1"
				p.Comments["output.activation"] = "CHECK: softmax if the output is logits; none if the graph ends in a softmax"
				if ultralytics {
					in.Mean, in.Std = nil, nil
					o.Activation = "none"
					p.Comments["output.activation"] = "Ultralytics classifiers end in a softmax"
				}
				return p.classes(s, int(k), labels)
			}
			o.Decoder = "embed"
			p.Family = "embed (re-identification, CLIP-style embedders)"
			p.why("one output %s%v: one vector of %d per frame, not a class count fn init knows (no labels file with %d names): an embedding", t.Name, t.Shape, k, k)
			in.Resize = "stretch"
			p.Comments["input.resize"] = "an embedder sees one object's crop: stretched to the input, as re-id models are trained"
			if m.Producer == "tf2onnx" && in.Layout == "NHWC" {
				in.Channels, in.Scale = "BGR", ptr(1)
				p.Comments["input.channels"] = "CHECK: converted from TensorFlow (tf2onnx, NHWC): Open Model Zoo models take BGR 0..255 as here; a Keras model usually takes RGB 0..1 (scale 1/255)"
			} else {
				in.Channels, in.Scale, in.Mean, in.Std = "RGB", ptr(1.0/255), imagenetMean, imagenetStd
				p.Comments["input.channels"] = "CHECK: the usual PyTorch preprocessing (RGB, 0..1, ImageNet mean/std); CLIP uses its own mean/std"
			}
			p.Comments["output.decoder"] = "CHECK: if this is a classifier, use decoder classify and give --labels"
			return nil
		}
		f := frame(t)
		if len(f) != 2 {
			return fmt.Errorf("%w: one output %s%v of a shape no family has (want [N rows values] or [N classes]); decoder raw returns it as it is", ErrCannotPlace, t.Name, t.Shape)
		}
		a, b := f[0], f[1]
		o.Tensors = names(t)
		yoloxRows := int64(YOLOXRows(W, H))
		gflPlus := int64(0)
		for _, st := range []int{8, 16, 32, 64} {
			fw, fh := gflGrid(W, H, st)
			gflPlus += int64(fw * fh)
		}
		isRTDETR := ultralytics && strings.Contains(strings.ToLower(strings.ReplaceAll(meta["description"]+m.Description, "-", "")), "rtdetr")
		switch {
		case isRTDETR && b > 4:
			o.Decoder, o.Activation = "detr", "none"
			o.Boxes = &Boxes{Format: "cxcywh", Normalized: ptrBool(true)}
			p.Family = "detr (RT-DETR, DETR)"
			p.why("an Ultralytics RT-DETR (the metadata's description) with one output %s%v: per query a normalised cx cy w h, then %d sigmoid-ed scores", t.Name, t.Shape, b-4)
			in.Channels, in.Resize, in.Scale = "RGB", "stretch", ptr(1.0/255)
			p.Comments["input.resize"] = "Ultralytics RT-DETR stretches to the input (no letterbox), RGB 0..1"
			return p.classes(s, int(b-4), labels)
		case a == yoloxRows && b >= 6 && !ultralytics:
			o.Decoder = "yolox"
			p.Family = "yolox (YOLOX)"
			p.why("one output %s%v: %d rows = (%d/8)·(%d/8) + (/16)² + (/32)² grid cells of a %dx%d input, 5 + %d classes per row: YOLOX with boxes left raw", t.Name, t.Shape, a, W, H, W, H, b-5)
			in.Channels, in.Resize, in.Anchor, in.Pad, in.Scale = "BGR", "letterbox", "top-left", ptr(114), ptr(1)
			p.Comments["input.channels"] = "CHECK: YOLOX's official weights take BGR 0..255, letterboxed top-left with 114 padding; exports before 0.1.1 used RGB with mean/std"
			return p.classes(s, int(b-5), labels)
		case b == 6 && a <= 1000:
			o.Decoder, o.YOLO = "yolo", &YOLO{Variant: "end2end"}
			p.Family = "yolo (Ultralytics end-to-end)"
			p.why("one output %s%v: %d rows of 6 (x1 y1 x2 y2 score class): an end-to-end export with NMS in the graph", t.Name, t.Shape, a)
			ultraPre()
			return p.classes(s, len(p.Labels), labels)
		case a < b && b == yoloxRows && a > 4:
			o.Decoder, o.YOLO = "yolo", &YOLO{Variant: "v8"}
			p.Family = "yolo (Ultralytics YOLOv8/YOLO11)"
			p.why("one output %s%v: %d columns = the anchors of a %dx%d input at strides 8, 16, 32, each 4 box values + %d class scores: YOLOv8/11", t.Name, t.Shape, b, W, H, a-4)
			ultraPre()
			return p.classes(s, int(a-4), labels)
		case a == 3*yoloxRows && b >= 6:
			o.Decoder, o.YOLO = "yolo", &YOLO{Variant: "v5"}
			p.Family = "yolo (Ultralytics YOLOv5)"
			p.why("one output %s%v: %d rows = 3 anchors × the grid cells of a %dx%d input, 5 + %d classes per row: YOLOv5", t.Name, t.Shape, a, W, H, b-5)
			ultraPre()
			return p.classes(s, int(b-5), labels)
		case a == gflPlus && b > 32:
			o.Decoder = "gfl"
			o.GFL = &GFL{Strides: []int{8, 16, 32, 64}, RegMax: 7, Order: "combined", CenterOffset: ptr(0)}
			p.Family = "gfl (NanoDet-Plus)"
			p.why("one output %s%v: %d rows = the anchors of a %dx%d input at strides 8, 16, 32, 64, each %d class scores + 4×8 box distribution bins: NanoDet-Plus", t.Name, t.Shape, a, W, H, b-32)
			p.Comments["output.gfl"] = "CHECK: reg_max 7 is NanoDet-Plus's (it splits the row into classes and 4×(reg_max+1) bins)"
			p.nanodetPre(s)
			return p.classes(s, int(b-32), labels)
		case ultralytics && a > 4 && (b < 0 || a < b):
			o.Decoder, o.YOLO = "yolo", &YOLO{Variant: "v8"}
			p.Family = "yolo (Ultralytics YOLOv8/YOLO11)"
			p.why("one output %s%v with Ultralytics metadata: 4 box values + %d class scores per anchor", t.Name, t.Shape, a-4)
			ultraPre()
			return p.classes(s, int(a-4), labels)
		}
		return fmt.Errorf("%w: one output %s%v: not YOLOX (%d rows for %dx%d), YOLOv8/11 ([4+classes %d]), YOLOv5 ([%d 5+classes]), end-to-end ([K 6]) nor NanoDet-Plus ([%d classes+32]); decoder raw returns it as it is",
			ErrCannotPlace, t.Name, t.Shape, yoloxRows, W, H, yoloxRows, 3*yoloxRows, gflPlus)
	}

	// Two outputs: boxes and scores (SSD-style) or boxes and logits (DETR).
	if len(outs) == 2 && len(frame(outs[0])) == 2 && len(frame(outs[1])) == 2 && frame(outs[0])[0] == frame(outs[1])[0] {
		bi := slices.IndexFunc(outs, func(t ModelTensor) bool { return frame(t)[1] == 4 })
		if frame(outs[0])[1] == 4 && frame(outs[1])[1] == 4 {
			bi = slices.IndexFunc(outs, func(t ModelTensor) bool { return hasAny(t.Name, "box") })
		}
		if bi >= 0 {
			bx, sc := outs[bi], outs[1-bi]
			rows, cols := frame(bx)[0], frame(sc)[1]
			o.Tensors = names(bx, sc)
			if rows > 0 && rows <= 1000 && hasAny(sc.Name, "logit") {
				o.Decoder = "detr"
				o.Boxes = &Boxes{Format: "cxcywh", Normalized: ptrBool(true), Background: "last"}
				o.Activation = "softmax"
				p.Family = "detr (DETR, RT-DETR)"
				p.why("two outputs, %s%v (4 per query) and %s%v: %d queries of boxes and logits: DETR-style set prediction", bx.Name, bx.Shape, sc.Name, sc.Shape, rows)
				p.Comments["output.activation"] = "CHECK: DETR: softmax with a last no-object column (as here); RT-DETR: sigmoid and background none"
				in.Channels, in.Resize, in.Scale, in.Mean, in.Std = "RGB", "stretch", ptr(1.0/255), imagenetMean, imagenetStd
				p.Comments["input.channels"] = "CHECK: Hugging Face DETR: RGB, ImageNet mean/std; RT-DETR: RGB 0..1, mean 0, std 1"
				return p.classes(s, int(cols-1), labels)
			}
			o.Decoder = "boxes-scores"
			o.Boxes = &Boxes{Format: "xyxy", Normalized: ptrBool(true), Background: "none"}
			p.Family = "boxes-scores (SSD-style: UltraFace, SSD MobileNet)"
			p.why("two outputs with as many rows: %s%v holds 4 box values per anchor, %s%v %d scores", bx.Name, bx.Shape, sc.Name, sc.Shape, cols)
			classes := int(cols)
			if cols == 2 {
				o.Boxes.Background, classes = "first", 1
				p.Comments["output.boxes"] = "CHECK: 2 score columns read as [background, object] (UltraFace); boxes as normalised corners"
			} else {
				p.Comments["output.boxes"] = "CHECK: boxes as normalised corners (x1 y1 x2 y2); background none; SSD exports often have a background column first"
			}
			p.Comments["output.activation"] = "CHECK: none if the scores are probabilities already; softmax or sigmoid if they are logits"
			in.Channels, in.Resize, in.Scale, in.Mean, in.Std = "RGB", "stretch", ptr(1), []float32{127, 127, 127}, []float32{128, 128, 128}
			p.Comments["input.channels"] = "CHECK: UltraFace's preprocessing (RGB, (x-127)/128, stretched); SSD MobileNet takes (x-127.5)/127.5"
			return p.classes(s, classes, labels)
		}
	}

	// Per-level class scores and box distributions: GFL (NanoDet, PP-PicoDet).
	if err := p.gfl(s, outs, labels); err == nil {
		return nil
	} else if !errors.Is(err, errNotGFL) {
		return err
	}
	return fmt.Errorf("%w: %d outputs (%s) fit no family: not boxes + scores, not per-level scores + distributions (GFL); decoder raw returns them as they are",
		ErrCannotPlace, len(outs), tensorList(outs))
}

var errNotGFL = errors.New("not gfl")

func (p *Proposal) gfl(s *Spec, outs []ModelTensor, labels []string) error {
	W, H := s.Input.Width, s.Input.Height
	if len(outs)%2 != 0 || len(outs) < 2 {
		return errNotGFL
	}
	type level struct {
		stride int
		ts     []ModelTensor
	}
	var levels []*level
	for _, t := range outs {
		f := frame(t)
		if len(f) != 2 || f[0] <= 0 || f[1] <= 0 {
			return errNotGFL
		}
		stride := 0
		for _, st := range []int{8, 16, 32, 64, 128} {
			if fw, fh := gflGrid(W, H, st); int64(fw*fh) == f[0] {
				stride = st
			}
		}
		if stride == 0 {
			return errNotGFL
		}
		i := slices.IndexFunc(levels, func(l *level) bool { return l.stride == stride })
		if i < 0 {
			levels = append(levels, &level{stride: stride})
			i = len(levels) - 1
		}
		levels[i].ts = append(levels[i].ts, t)
	}
	slices.SortFunc(levels, func(a, b *level) int { return a.stride - b.stride })
	var scores, dists []ModelTensor
	byName := true
	for _, l := range levels {
		if len(l.ts) != 2 {
			return errNotGFL
		}
		a, b := l.ts[0], l.ts[1]
		switch {
		case hasAny(a.Name, "cls", "score") || hasAny(b.Name, "dis", "reg", "box", "bbox"):
		case hasAny(b.Name, "cls", "score") || hasAny(a.Name, "dis", "reg", "box", "bbox"):
			a, b = b, a
		default:
			byName = false
			if wa, wb := frame(a)[1], frame(b)[1]; wa%4 == 0 && (wb%4 != 0 || wa < wb) { // a is the distribution
				a, b = b, a
			}
		}
		scores, dists = append(scores, a), append(dists, b)
	}
	bins := frame(dists[0])[1]
	classes := frame(scores[0])[1]
	for i := range levels {
		if frame(dists[i])[1] != bins || frame(scores[i])[1] != classes {
			return errNotGFL
		}
	}
	if bins%4 != 0 || bins < 8 {
		return errNotGFL
	}
	o := &s.Output
	o.Decoder = "gfl"
	var strides []int
	for _, l := range levels {
		strides = append(strides, l.stride)
	}
	o.GFL = &GFL{Strides: strides, RegMax: int(bins/4 - 1), Order: "scores-first", CenterOffset: ptr(0.5)}
	for _, t := range scores {
		o.Tensors = append(o.Tensors, t.Name)
	}
	for _, t := range dists {
		o.Tensors = append(o.Tensors, t.Name)
	}
	p.Family = "gfl (NanoDet, PP-PicoDet)"
	var grids []string
	for i, l := range levels {
		fw, fh := gflGrid(W, H, l.stride)
		grids = append(grids, fmt.Sprintf("%d = %dx%d (stride %d)", frame(scores[i])[0], fw, fh, l.stride))
	}
	p.why("%d outputs in %d pairs whose rows are the anchor grids of a %dx%d input: %s", len(outs), len(levels), W, H, strings.Join(grids, ", "))
	p.why("per level %d class scores (%s) and %d = 4×%d box distribution bins, so reg_max %d (%s)", classes, scores[0].Name, bins, bins/4, bins/4-1, dists[0].Name)
	if !byName {
		p.Comments["output.tensors"] = "CHECK: the names did not say which output is scores and which distributions; fn init took the narrower one, a multiple of 4, as distributions"
	}
	p.Comments["output.gfl"] = "CHECK: center_offset 0.5 is NanoDet-m's, 0 NanoDet-Plus's; strides come from the grid sizes, reg_max from the distribution width"
	p.Comments["output.activation"] = "CHECK: none if the scores are sigmoid-ed in the graph (NanoDet's export), sigmoid if they are logits"
	p.nanodetPre(s)
	return p.classes(s, int(classes), labels)
}

// nanodetPre sets NanoDet's preprocessing and thresholds.
func (p *Proposal) nanodetPre(s *Spec) {
	in := &s.Input
	in.Channels, in.Resize, in.Anchor, in.Pad, in.Scale = "BGR", "letterbox", "center", ptr(0), ptr(1)
	in.Mean, in.Std = []float32{103.53, 116.28, 123.675}, []float32{57.375, 57.12, 58.395}
	p.Comments["input.channels"] = "CHECK: NanoDet's preprocessing (BGR, (x-mean)/std in BGR order, centred letterbox); PP-PicoDet: RGB, scale 0.00392157, ImageNet mean/std"
	s.Output.ScoreThreshold, s.Output.NMSThreshold = ptr(0.35), ptr(0.6)
	p.Comments["output.score_threshold"] = "NanoDet's demo thresholds"
}

func hasAny(s string, subs ...string) bool {
	s = strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func ptrBool(b bool) *bool { return &b }

var (
	namesRE = regexp.MustCompile(`(\d+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")`)
	intsRE  = regexp.MustCompile(`\d+`)
)

// parseNames reads Ultralytics' names metadata, a Python dict {0: 'person', 1: ...}.
func parseNames(v string) []string {
	var names []string
	for _, m := range namesRE.FindAllStringSubmatch(v, -1) {
		i, _ := strconv.Atoi(m[1])
		if i != len(names) {
			return nil // not 0, 1, 2, ... in order
		}
		names = append(names, m[2]+m[3])
	}
	return names
}

// metaImgsz reads Ultralytics' imgsz metadata, "[640, 640]" (height, width).
func metaImgsz(md map[string]string) (w, h int, ok bool) {
	v := intsRE.FindAllString(md["imgsz"], -1)
	if len(v) == 1 {
		v = append(v, v[0])
	}
	if len(v) != 2 {
		return 0, 0, false
	}
	h, _ = strconv.Atoi(v[0])
	w, _ = strconv.Atoi(v[1])
	return w, h, w > 0 && h > 0 && w <= 8192 && h <= 8192
}

// YAML writes the proposal as function.yaml: every field the model determined, the
// usual choices for what it could not know, and a comment on each (CHECK: look at it).
func (p *Proposal) YAML(source string) []byte {
	s := p.Spec
	var b strings.Builder
	line := func(indent int, key, value, path string) {
		l := strings.Repeat("  ", indent) + key + ":"
		if value != "" {
			l += " " + value
		}
		if c := p.Comments[path]; c != "" {
			l = fmt.Sprintf("%-34s # %s", l, c)
		}
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "# Written by `diplip fn init %s`.\n# Family: %s, because:\n", source, p.Family)
	for _, w := range p.Why {
		fmt.Fprintf(&b, "#   - %s\n", w)
	}
	b.WriteString("# Lines marked CHECK are what the model file could not say: the usual choice is written;\n" +
		"# compare with how the model was trained, then `diplip fn build` checks the rest against the model.\n")
	line(0, "name", yamlString(s.Name), "name")
	line(0, "runtime", s.Runtime, "runtime")
	line(0, "model", yamlString(s.Model), "model")
	if s.Labels != "" || p.Comments["labels"] != "" {
		v := yamlString(s.Labels)
		if s.Labels == "" {
			v = `""`
		}
		line(0, "labels", v, "labels")
	}
	in := s.Input
	line(0, "input", "", "")
	line(1, "tensor", yamlString(in.Tensor), "input.tensor")
	line(1, "width", strconv.Itoa(in.Width), "input.width")
	line(1, "height", strconv.Itoa(in.Height), "input.height")
	line(1, "layout", in.Layout, "input.layout")
	line(1, "channels", in.Channels, "input.channels")
	line(1, "resize", in.Resize, "input.resize")
	if in.Resize == "letterbox" {
		line(1, "anchor", in.Anchor, "input.anchor")
		line(1, "pad", fmtFloat(*in.Pad), "input.pad")
	}
	line(1, "scale", fmtFloat(*in.Scale), "input.scale")
	line(1, "mean", fmtFloats(in.Mean), "input.mean")
	line(1, "std", fmtFloats(in.Std), "input.std")
	o := s.Output
	line(0, "output", "", "")
	line(1, "decoder", o.Decoder, "output.decoder")
	var ts []string
	for _, t := range o.Tensors {
		ts = append(ts, yamlString(t))
	}
	line(1, "tensors", "["+strings.Join(ts, ", ")+"]", "output.tensors")
	line(1, "activation", o.Activation, "output.activation")
	switch o.Decoder {
	case "classify":
		line(1, "top_k", strconv.Itoa(o.TopK), "output.top_k")
		line(1, "score_threshold", fmtFloat(*o.ScoreThreshold), "output.score_threshold")
	case "embed":
	default:
		line(1, "score_threshold", fmtFloat(*o.ScoreThreshold), "output.score_threshold")
		if o.Decoder != "detr" && (o.YOLO == nil || o.YOLO.Variant != "end2end") {
			line(1, "nms_threshold", fmtFloat(*o.NMSThreshold), "output.nms_threshold")
		}
	}
	if g := o.GFL; g != nil {
		line(1, "gfl", "", "output.gfl")
		var st []string
		for _, v := range g.Strides {
			st = append(st, strconv.Itoa(v))
		}
		line(2, "strides", "["+strings.Join(st, ", ")+"]", "")
		line(2, "reg_max", strconv.Itoa(g.RegMax), "")
		line(2, "order", g.Order, "")
		line(2, "center_offset", fmtFloat(*g.CenterOffset), "")
	}
	if y := o.YOLO; y != nil {
		line(1, "yolo", "", "output.yolo")
		line(2, "variant", y.Variant, "")
	}
	if bx := o.Boxes; bx != nil {
		line(1, "boxes", "", "output.boxes")
		line(2, "format", bx.Format, "")
		line(2, "normalized", strconv.FormatBool(*bx.Normalized), "")
		line(2, "background", bx.Background, "")
	}
	line(0, "batch", "", "")
	line(1, "max", strconv.Itoa(s.Batch.Max), "")
	line(1, "max_delay", time.Duration(s.Batch.MaxDelay).String(), "")
	line(0, "resources", "", "")
	line(1, "device", s.Resources.Device, "")
	line(1, "memory_mb", strconv.Itoa(s.Resources.MemoryMB), "")
	return []byte(b.String())
}

// yamlString writes s plainly when YAML reads it back as the same string, else quoted.
func yamlString(s string) string {
	if s != "" && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./-]*$`).MatchString(s) && !slices.Contains([]string{"true", "false", "null", "yes", "no", "on", "off"}, strings.ToLower(s)) {
		return s
	}
	return strconv.Quote(s)
}

func fmtFloat(v float32) string { return strconv.FormatFloat(float64(v), 'g', -1, 32) }

func fmtFloats(vs []float32) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmtFloat(v))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
