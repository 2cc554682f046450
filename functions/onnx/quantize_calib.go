package onnx

import (
	"math"
)

// histBins is the number of bins of a calibration histogram: 2048 on each side of 0.
const histBins = 4096

// rangeStats is what calibration keeps of one tensor: its extremes over every frame and,
// for the percentile and entropy methods, a histogram symmetric about 0 over
// [-absMax, absMax] that widens (by merging bins) when a later frame goes beyond it, so
// that frames need not be kept.
type rangeStats struct {
	min, max float64
	seen     bool
	absMax   float64  // the histogram's half-width; 0 until a non-zero value is seen
	hist     []uint64 // nil when only extremes are kept
	zeros    uint64   // values seen before absMax was known (all 0)
}

func newRangeStats(withHist bool) *rangeStats {
	s := &rangeStats{}
	if withHist {
		s.hist = make([]uint64, histBins)
	}
	return s
}

func (s *rangeStats) add(v []float32) {
	if len(v) == 0 {
		return
	}
	lo, hi := float64(v[0]), float64(v[0])
	for _, x := range v {
		f := float64(x)
		if f < lo {
			lo = f
		}
		if f > hi {
			hi = f
		}
	}
	if !s.seen || lo < s.min {
		s.min = lo
	}
	if !s.seen || hi > s.max {
		s.max = hi
	}
	s.seen = true
	if s.hist == nil {
		return
	}
	a := math.Max(-lo, hi)
	if a == 0 {
		s.zeros += uint64(len(v))
		return
	}
	if s.absMax == 0 {
		s.absMax = a
		s.hist[histBins/2] += s.zeros // 0 falls in the first bin at or above 0
		s.zeros = 0
	}
	for a > s.absMax {
		s.widen()
	}
	w := 2 * s.absMax / histBins
	for _, x := range v {
		i := int((float64(x) + s.absMax) / w)
		i = min(max(i, 0), histBins-1)
		s.hist[i]++
	}
}

// widen doubles the histogram's range, merging pairs of bins: the old bins' edges are
// edges of the new ones, so no count moves across an edge.
func (s *rangeStats) widen() {
	next := make([]uint64, histBins)
	for i, c := range s.hist {
		// Old bin i spans [-A + i w, ...]; in units of the new width 2w from -2A, it
		// starts at (histBins/2 + i)/2.
		next[(histBins/2+i)/2] += c
	}
	s.hist = next
	s.absMax *= 2
}

// binEdge is the value at the lower edge of bin i (i = histBins is the top edge).
func (s *rangeStats) binEdge(i int) float64 {
	return -s.absMax + float64(i)*2*s.absMax/histBins
}

// minMaxRange is the observed extremes.
func (s *rangeStats) minMaxRange() (lo, hi float64) { return s.min, s.max }

// percentileRange clips the extremes to the p-th percentile (e.g. 99.99) at the top and
// the (100-p)-th at the bottom, each taken at the edge of the bin it falls in that is
// farther from the middle, and never beyond what was observed.
func (s *rangeStats) percentileRange(p float64) (lo, hi float64) {
	if s.hist == nil || s.absMax == 0 {
		return s.min, s.max
	}
	var total uint64
	for _, c := range s.hist {
		total += c
	}
	if total == 0 {
		return s.min, s.max
	}
	tail := (100 - p) / 100 * float64(total)
	// hi: the smallest upper edge with at most tail values above it.
	var above float64
	hi = s.max
	for i := histBins - 1; i >= 0; i-- {
		if above+float64(s.hist[i]) > tail {
			hi = math.Min(s.max, s.binEdge(i+1))
			break
		}
		above += float64(s.hist[i])
	}
	var below float64
	lo = s.min
	for i := 0; i < histBins; i++ {
		if below+float64(s.hist[i]) > tail {
			lo = math.Max(s.min, s.binEdge(i))
			break
		}
		below += float64(s.hist[i])
	}
	return lo, hi
}

// entropyQuantBins is the number of levels the KL search quantizes a candidate range of
// |x| into: 128, the levels one sign of a signed 8-bit value has (TensorRT's choice).
const entropyQuantBins = 128

// entropyMaxClip is the largest share of a tensor's values an entropy threshold may
// clip (see klThreshold).
const entropyMaxClip = 0.01

// entropyRange picks a threshold t on |x| in TensorRT's way: among the candidate
// thresholds (bin edges of the histogram of |x|), the one whose clipped distribution
// (values beyond t folded into the last bin) loses the least information, by
// Kullback-Leibler divergence, when quantized to 128 levels. The range is then [-t, t]
// cut to what was observed.
func (s *rangeStats) entropyRange() (lo, hi float64) {
	if s.hist == nil || s.absMax == 0 {
		return s.min, s.max
	}
	half := histBins / 2
	abs := make([]float64, half)
	for j := range half {
		abs[j] = float64(s.hist[half+j] + s.hist[half-1-j])
	}
	i := klThreshold(abs, entropyQuantBins)
	t := float64(i) * s.absMax / float64(half)
	return math.Max(s.min, -t), math.Min(s.max, t)
}

// klThreshold returns the number of leading bins of hist (a histogram of |x|) to keep,
// minimising KL(P‖Q) where P is hist cut there with the rest folded into its last bin
// and Q is P quantized to nq levels and expanded back over P's non-empty bins. Candidates
// run from nq bins (or, if more, the fewest that leave at most entropyMaxClip of the
// values beyond) to all of them, in steps that keep the search to about 256 of them.
//
// The floor on candidates guards against the way the method degenerates on a
// distribution with no mass near 0 (a Sigmoid output in [0.16, 0.99]): a threshold below
// every value folds them all into one bin, which quantizes without loss, so its KL is 0
// and it would win, clipping the whole tensor to one value.
func klThreshold(hist []float64, nq int) int {
	n := len(hist)
	if n <= nq {
		return n
	}
	step := max(1, (n-nq)/256)
	var suffix = make([]float64, n+1) // suffix[i] = sum of hist[i:]
	for i := n - 1; i >= 0; i-- {
		suffix[i] = suffix[i+1] + hist[i]
	}
	lowest := nq
	for lowest < n && suffix[lowest] > entropyMaxClip*suffix[0] {
		lowest++
	}
	best, bestKL := n, math.Inf(1)
	p := make([]float64, n)
	q := make([]float64, n)
	for i := lowest; i <= n; i += step {
		copy(p, hist[:i])
		p[i-1] += suffix[i]
		// Quantize hist[:i] (without the outliers, as TensorRT does) into nq bins.
		for j := range nq {
			start := j * i / nq
			stop := (j + 1) * i / nq
			var sum float64
			nonzero := 0
			for k := start; k < stop; k++ {
				sum += hist[k]
				if p[k] != 0 {
					nonzero++
				}
			}
			for k := start; k < stop; k++ {
				q[k] = 0
				if p[k] != 0 && nonzero > 0 {
					q[k] = sum / float64(nonzero)
				}
			}
		}
		if kl := klDivergence(p[:i], q[:i]); kl < bestKL {
			best, bestKL = i, kl
		}
		if i < n && i+step > n {
			i = n - step // try the whole range last
		}
	}
	return best
}

// klDivergence is KL(p‖q) of two histograms, each normalised; a bin empty in q where p
// is not gets a small probability (the smoothing TensorRT's calibrators use).
func klDivergence(p, q []float64) float64 {
	var sp, sq float64
	for i := range p {
		sp += p[i]
		sq += q[i]
	}
	if sp == 0 {
		return 0
	}
	if sq == 0 {
		return math.Inf(1)
	}
	const eps = 1e-7
	var kl float64
	for i := range p {
		if p[i] == 0 {
			continue
		}
		pi := p[i] / sp
		qi := q[i] / sq
		if qi == 0 {
			qi = eps
		}
		kl += pi * math.Log(pi/qi)
	}
	return kl
}

// activationParams are the scale and zero point of an asymmetric uint8 quantization of
// [lo, hi], widened to hold 0 (so that zero padding is exact): scale = (hi-lo)/255,
// zero point = round(-lo/scale) in [0, 255]. An empty range gets scale 1.
func activationParams(lo, hi float64) (scale float32, zp uint8) {
	lo, hi = math.Min(lo, 0), math.Max(hi, 0)
	if hi-lo <= 0 || math.IsNaN(hi-lo) || math.IsInf(hi-lo, 0) {
		return 1, 0
	}
	s := (hi - lo) / 255
	z := math.Round(-lo / s)
	return float32(s), uint8(min(max(z, 0), 255))
}

// weightParams quantizes a weight of shape [C, ...] symmetrically per output channel
// (axis 0) to int8 in [-127, 127]: scale[c] = max|w[c]| / 127, zero point 0. A channel of
// zeros gets scale 1.
func weightParams(w []float32, channels int) (scales []float32, q []int8) {
	per := len(w) / channels
	scales = make([]float32, channels)
	q = make([]int8, len(w))
	for c := range channels {
		var a float64
		for _, x := range w[c*per : (c+1)*per] {
			a = math.Max(a, math.Abs(float64(x)))
		}
		s := a / 127
		if s == 0 {
			s = 1
		}
		scales[c] = float32(s)
		for i, x := range w[c*per : (c+1)*per] {
			v := math.Round(float64(x) / float64(scales[c]))
			q[c*per+i] = int8(min(max(v, -127), 127))
		}
	}
	return scales, q
}

// biasParams quantizes a Conv bias to int32 with scale inputScale × weightScale[c] and
// zero point 0, which is what QLinearConv adds to its int32 accumulator.
func biasParams(b []float32, inputScale float32, weightScales []float32) (scales []float32, q []int32) {
	scales = make([]float32, len(b))
	q = make([]int32, len(b))
	for c, x := range b {
		s := inputScale * weightScales[c]
		if s == 0 {
			s = 1
		}
		scales[c] = s
		v := math.Round(float64(x) / float64(s))
		q[c] = int32(min(max(v, math.MinInt32), math.MaxInt32))
	}
	return scales, q
}
