package functions

import (
	"fmt"
	"math"
)

// gflDecoder decodes Generalized Focal Loss heads (NanoDet, PP-PicoDet): per level of
// stride s, a grid of ceil(W/s) × ceil(H/s) anchors, each with class scores and, for each
// side (left, top, right, bottom), reg_max+1 logits whose softmax expectation times s is
// the distance from the anchor's centre to that side. Boxes in canvas pixels go through
// the letterbox back to the source, then class-aware NMS (spec.Output.GFL has the
// settings; SOURCE.md §2 of the shared models is the reference).
type gflDecoder struct{}

// gflGrid is the anchor grid of one level.
func gflGrid(w, h, stride int) (fw, fh int) {
	return (w + stride - 1) / stride, (h + stride - 1) / stride
}

// gflLevels gives, per level, the index in the tensors of its scores and of its
// distributions (both the same for the combined order).
func gflLevels(g *GFL) (scores, dists []int) {
	n := len(g.Strides)
	for i := range n {
		switch g.Order {
		case "interleaved":
			scores, dists = append(scores, 2*i), append(dists, 2*i+1)
		case "combined":
			scores, dists = append(scores, 0), append(dists, 0)
		default:
			scores, dists = append(scores, i), append(dists, n+i)
		}
	}
	return scores, dists
}

func (gflDecoder) CheckOutputs(spec *Spec, outputs []TensorInfo) error {
	g := spec.Output.GFL
	bins := int64(4 * (g.RegMax + 1))
	if g.Order == "combined" {
		if len(outputs) != 1 {
			return fmt.Errorf("the gfl decoder in order combined reads one output, the spec names %d", len(outputs))
		}
		total := int64(0)
		for _, s := range g.Strides {
			fw, fh := gflGrid(spec.Input.Width, spec.Input.Height, s)
			total += int64(fw * fh)
		}
		sh := outputs[0].Shape
		if len(sh) != 3 || (sh[1] >= 0 && sh[1] != total) || (sh[2] >= 0 && sh[2] <= bins) {
			return fmt.Errorf("output %q: the gfl decoder (order combined, strides %v, reg_max %d) wants %s for a %dx%d input; the model gives %v",
				outputs[0].Name, g.Strides, g.RegMax, wantDims(total, fmt.Sprintf("classes+%d", bins)), spec.Input.Width, spec.Input.Height, sh)
		}
		return nil
	}
	if len(outputs) != 2*len(g.Strides) {
		return fmt.Errorf("the gfl decoder with strides %v reads %d outputs (scores and distributions per level), the spec names %d",
			g.Strides, 2*len(g.Strides), len(outputs))
	}
	si, di := gflLevels(g)
	classes := int64(-1)
	for l, s := range g.Strides {
		fw, fh := gflGrid(spec.Input.Width, spec.Input.Height, s)
		rows := int64(fw * fh)
		sc, ds := outputs[si[l]], outputs[di[l]]
		if sh := sc.Shape; len(sh) != 3 || (sh[1] >= 0 && sh[1] != rows) || (sh[2] >= 0 && classes >= 0 && sh[2] != classes) {
			return fmt.Errorf("output %q (the class scores of stride %d, order %s): the gfl decoder wants %s for a %dx%d input; the model gives %v",
				sc.Name, s, g.Order, wantDims(rows, "classes"), spec.Input.Width, spec.Input.Height, sh)
		} else if sh[2] >= 0 {
			classes = sh[2]
		}
		if sh := ds.Shape; len(sh) != 3 || (sh[1] >= 0 && sh[1] != rows) || (sh[2] >= 0 && sh[2] != bins) {
			return fmt.Errorf("output %q (the box distributions of stride %d, order %s, reg_max %d): the gfl decoder wants %s; the model gives %v",
				ds.Name, s, g.Order, g.RegMax, wantDims(rows, bins), sh)
		}
	}
	return nil
}

func (gflDecoder) Decode(spec *Spec, outputs []Tensor, geo Geometry, labels []string) (FrameResult, error) {
	g := spec.Output.GFL
	for _, o := range outputs {
		if err := checkLen(o); err != nil {
			return FrameResult{}, err
		}
		if len(o.Shape) != 2 {
			return FrameResult{}, fmt.Errorf("gfl output %q has shape %v per frame: want [anchors values]", o.Name, o.Shape)
		}
	}
	want := 2 * len(g.Strides)
	if g.Order == "combined" {
		want = 1
	}
	if len(outputs) != want {
		return FrameResult{}, fmt.Errorf("gfl: %d outputs, want %d", len(outputs), want)
	}
	si, di := gflLevels(g)
	nb := g.RegMax + 1
	thr := *spec.Output.ScoreThreshold
	off := *g.CenterOffset
	var dets []Detection
	row0 := 0 // the combined tensor's first row of the level
	var scores, probs []float32
	for l, s := range g.Strides {
		fw, fh := gflGrid(spec.Input.Width, spec.Input.Height, s)
		rows := fw * fh
		sc, ds := outputs[si[l]], outputs[di[l]]
		var classes, scCols, dsCols, dsFirst int
		if g.Order == "combined" {
			scCols = int(sc.Shape[1])
			classes, dsCols, dsFirst = scCols-4*nb, scCols, scCols-4*nb
			if int(sc.Shape[0]) < row0+rows || classes < 1 {
				return FrameResult{}, fmt.Errorf("gfl output %q has shape %v: want at least %d rows of classes+%d", sc.Name, sc.Shape, row0+rows, 4*nb)
			}
		} else {
			classes, scCols, dsCols = int(sc.Shape[1]), int(sc.Shape[1]), int(ds.Shape[1])
			if int(sc.Shape[0]) != rows || int(ds.Shape[0]) != rows || dsCols != 4*nb || classes < 1 {
				return FrameResult{}, fmt.Errorf("gfl stride %d: outputs %q %v and %q %v; want [%d classes] and [%d %d]",
					s, sc.Name, sc.Shape, ds.Name, ds.Shape, rows, rows, 4*nb)
			}
		}
		if cap(scores) < classes {
			scores = make([]float32, classes)
		}
		scores = scores[:classes]
		probs = probs[:0]
		probs = append(probs, make([]float32, nb)...)
		for a := range rows {
			r := row0 + a
			activate(spec.Output.Activation, scores, sc.Data[r*scCols:r*scCols+classes])
			best, bestScore := 0, float32(math.Inf(-1))
			for k, v := range scores {
				if v > bestScore {
					best, bestScore = k, v
				}
			}
			if !(bestScore >= thr) { // NaN scores fail too
				continue
			}
			d := ds.Data[r*dsCols+dsFirst : r*dsCols+dsFirst+4*nb]
			var dist [4]float32
			for side := range 4 {
				softmax(probs, d[side*nb:(side+1)*nb])
				var e float32
				for j, p := range probs {
					e += p * float32(j)
				}
				dist[side] = e * float32(s)
			}
			cx := (float32(a%fw) + off) * float32(s)
			cy := (float32(a/fw) + off) * float32(s)
			dets = append(dets, Detection{ClassID: best, Score: bestScore,
				Box: Box{cx - dist[0], cy - dist[1], cx + dist[2], cy + dist[3]}})
		}
		if g.Order == "combined" {
			row0 += rows
		}
	}
	return FrameResult{Detections: finish(spec, dets, geo, labels, true)}, nil
}
