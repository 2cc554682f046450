package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/internal/assets"
)

// check runs the checks and measurements of one invocation.
type check struct {
	cfg      config
	log      io.Writer
	failures []string

	spec    *functions.Spec
	dynamic *functions.Spec // the same spec, naming the dynamic-batch model
	fnDir   string
	dynDir  string
	labels  []string
	decoder functions.Decoder
	photos  []photo

	compare [][]string
	through [][]string
}

// photo is one shared photo as the model's input.
type photo struct {
	name   string
	w, h   int
	tensor []float32
	geom   functions.Geometry
}

// frameOut is what one device made of one photo.
type frameOut struct {
	raw  []float32
	dets []functions.Detection
}

func (c *check) logf(format string, a ...any) { fmt.Fprintf(c.log, format+"\n", a...) }

func (c *check) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	c.failures = append(c.failures, msg)
	c.logf("FAIL %s", msg)
}

func (c *check) run() error {
	if err := os.MkdirAll(c.cfg.out, 0o755); err != nil {
		return err
	}
	if err := c.load(); err != nil {
		return err
	}
	lib, err := assets.ORTLibrary()
	if err != nil {
		return err
	}
	if err := onnx.Init(); err != nil {
		return err
	}
	c.logf("onnx runtime %s from %s", onnx.Version(), lib)
	c.compare = [][]string{{"check", "device", "photo", "detections", "max_box_diff", "max_raw_diff", "result", "note"}}
	c.through = [][]string{{"device", "model", "lanes", "batch", "images", "seconds", "images_per_s", "p50_ms", "p99_ms"}}

	cpu, err := c.runPhotos("cpu", c.spec, c.fnDir)
	if err != nil {
		return fmt.Errorf("cpu: %w", err)
	}
	for i, p := range c.photos {
		c.row("cpu reference", "cpu", p.name, len(cpu[i].dets), 0, 0, "ok", summary(cpu[i].dets))
	}
	if c.dynamic != nil {
		c.checkDynamic("cpu", cpu)
	}
	c.measure("cpu", c.cfg.cpuLanes, c.cfg.cpuBatches)

	if !c.cfg.skipCUDA {
		c.checkCUDA(lib, cpu)
	}
	if err := c.writeCSV("compare.csv", c.compare); err != nil {
		return err
	}
	return c.writeCSV("throughput.csv", c.through)
}

// load reads the function, the dynamic model's spec and the photos.
func (c *check) load() error {
	c.fnDir = c.cfg.function
	if c.fnDir == "" {
		d, err := assets.Example("yolox-nano")
		if err != nil {
			return err
		}
		c.fnDir = d
	}
	spec, labels, err := loadFunction(c.fnDir)
	if err != nil {
		return err
	}
	c.spec, c.labels = spec, labels
	dec, ok := functions.DecoderFor(spec.Output.Decoder)
	if !ok || spec.Output.Decoder != "yolox" {
		return fmt.Errorf("%s: output.decoder %q: the check compares boxes, so it wants the yolox decoder", c.fnDir, spec.Output.Decoder)
	}
	c.decoder = dec
	if c.cfg.dynamicModel != "" {
		if _, err := os.Stat(c.cfg.dynamicModel); err != nil {
			return fmt.Errorf("-dynamic-model: %w", err)
		}
		d := *spec
		d.Model = filepath.Base(c.cfg.dynamicModel)
		c.dynamic, c.dynDir = &d, filepath.Dir(c.cfg.dynamicModel)
	}
	media := c.cfg.media
	for _, name := range c.cfg.photos {
		p := filepath.Join(media, name)
		if media == "" {
			if p, err = assets.Media(name); err != nil {
				return err
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		img, err := decodeImage(b)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		ph := photo{name: name, w: img.Rect.Dx(), h: img.Rect.Dy(), tensor: make([]float32, onnx.FrameLen(spec.Input))}
		if ph.geom, err = fillTensor(img, spec.Input, ph.tensor); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		c.photos = append(c.photos, ph)
	}
	return nil
}

// runPhotos opens spec's model on device and infers each photo alone (batch 1).
func (c *check) runPhotos(device string, spec *functions.Spec, dir string) ([]frameOut, error) {
	s, err := onnx.Open(dir, spec, c.options(device, 1))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	out := make([]frameOut, len(c.photos))
	for i, p := range c.photos {
		outs, err := s.Infer(p.tensor, 1)
		if err != nil {
			return nil, err
		}
		if out[i], err = c.decode(outs, 0, p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *check) decode(outs []onnx.Output, k int, p photo) (frameOut, error) {
	t := outs[0].Frame(k)
	r, err := c.decoder.Decode(c.spec, []functions.Tensor{t}, p.geom, c.labels)
	if err != nil {
		return frameOut{}, err
	}
	return frameOut{raw: t.Data, dets: r.Detections}, nil
}

func (c *check) options(device string, lanes int) onnx.Options {
	o := onnx.Options{Device: device, Lanes: lanes}
	if device != "cpu" {
		o.GPUMemLimit, o.ArenaExtendStrategy = c.cfg.gpuMemLimit, c.cfg.arena
	}
	return o
}

// checkDynamic runs all photos as one batch through the dynamic-batch model on device
// and compares each frame with the fixed model's result on the same device.
func (c *check) checkDynamic(device string, fixed []frameOut) {
	s, err := onnx.Open(c.dynDir, c.dynamic, c.options(device, 1))
	if err != nil {
		c.fail("dynamic-batch model on %s: %v", device, err)
		return
	}
	defer s.Close()
	if !s.DynamicBatch {
		c.fail("%s: the batch axis is not dynamic", c.cfg.dynamicModel)
		return
	}
	n := onnx.FrameLen(c.spec.Input)
	input := make([]float32, 0, len(c.photos)*n)
	for _, p := range c.photos {
		input = append(input, p.tensor...)
	}
	outs, err := s.Infer(input, len(c.photos))
	if err != nil {
		c.fail("dynamic-batch model on %s, batch %d: %v", device, len(c.photos), err)
		return
	}
	for k, p := range c.photos {
		got, err := c.decode(outs, k, p)
		if err != nil {
			c.fail("dynamic-batch model on %s: %s: %v", device, p.name, err)
			continue
		}
		c.compareFrames(fmt.Sprintf("dynamic batch %d vs fixed", len(c.photos)), device, p, fixed[k], got, 1e-4)
	}
}

// compareFrames checks got against want (another device or model) and adds a row.
func (c *check) compareFrames(what, device string, p photo, want, got frameOut, rawTol float64) {
	boxDiff, err := compareDetections(want.dets, got.dets, p.w, p.h, c.cfg.tolerance)
	rawDiff := maxAbsDiff(want.raw, got.raw)
	result, note := "ok", summary(got.dets)
	if err != nil {
		result, note = "FAIL", err.Error()
		c.fail("%s on %s: %s: %v", what, device, p.name, err)
	} else if rawDiff > rawTol {
		// Informational: a raw difference only matters when it moves boxes or classes.
		note = fmt.Sprintf("raw outputs differ by up to %.3g (over %.0e, boxes within tolerance); %s", rawDiff, rawTol, note)
	}
	c.row(what, device, p.name, len(got.dets), boxDiff, rawDiff, result, note)
}

func (c *check) row(what, device, name string, dets int, boxDiff, rawDiff float64, result, note string) {
	c.compare = append(c.compare, []string{what, device, name, strconv.Itoa(dets),
		strconv.FormatFloat(boxDiff, 'g', 4, 64), strconv.FormatFloat(rawDiff, 'g', 4, 64), result, note})
	c.logf("%-28s %-7s %-20s %2d detections  box diff %.3g  raw diff %.3g  %s", what, device, name, dets, boxDiff, rawDiff, result)
}

// checkCUDA reports what the GPU side has, refuses a device that does not exist, runs
// the photos on the GPU against the CPU's results, and measures.
func (c *check) checkCUDA(lib string, cpu []frameOut) {
	dev := c.cfg.device
	r, err := onnx.ProbeCUDA(lib)
	if err != nil {
		c.fail("probing the CUDA provider: %v", err)
	}
	c.logf("cuda provider %q; GPUs visible: %d; libraries the loader would not find: %v", r.Provider, r.GPUs, r.Missing)
	if r.GPUs > 0 {
		// The bad input of the issue: a GPU this machine does not have.
		missing := fmt.Sprintf("cuda:%d", r.GPUs)
		s, err := onnx.Open(c.fnDir, c.spec, c.options(missing, 1))
		switch {
		case err == nil:
			s.Close()
			c.fail("%s opened on a machine with %d GPU(s)", missing, r.GPUs)
		case !errors.Is(err, onnx.ErrDeviceUnavailable):
			c.fail("%s: the error does not say the device is unavailable: %v", missing, err)
		default:
			c.row("nonexistent device refused", missing, "-", 0, 0, 0, "ok", err.Error())
		}
	}
	gpu, err := c.runPhotos(dev, c.spec, c.fnDir)
	if err != nil {
		c.fail("the model on %s: %v", dev, err)
		return
	}
	for i, p := range c.photos {
		c.compareFrames("cuda vs cpu", dev, p, cpu[i], gpu[i], 1e-3)
	}
	if c.dynamic != nil {
		c.checkDynamic(dev, gpu)
	}
	c.measure(dev, c.cfg.lanes, c.cfg.batches)
}

// measure times the fixed-batch model at batch 1, and the dynamic one at each batch
// size, for each lane count on device, adding a row per configuration.
func (c *check) measure(device string, lanes, batches []int) {
	type model struct {
		name    string
		spec    *functions.Spec
		dir     string
		batches []int
	}
	models := []model{{"fixed", c.spec, c.fnDir, []int{1}}}
	if c.dynamic != nil {
		models = append(models, model{"dynamic", c.dynamic, c.dynDir, batches})
	}
	for _, m := range models {
		for _, l := range lanes {
			s, err := onnx.Open(m.dir, m.spec, c.options(device, l))
			if err != nil {
				c.fail("%s model on %s with %d lanes: %v", m.name, device, l, err)
				continue
			}
			for _, b := range m.batches {
				res, err := c.time(s, l, b)
				if err != nil {
					c.fail("%s model on %s, %d lanes, batch %d: %v", m.name, device, l, b, err)
					continue
				}
				c.through = append(c.through, []string{device, m.name, strconv.Itoa(l), strconv.Itoa(b), strconv.Itoa(res.images),
					fmt.Sprintf("%.3f", res.seconds), fmt.Sprintf("%.1f", res.perSecond()), fmt.Sprintf("%.3f", res.p50), fmt.Sprintf("%.3f", res.p99)})
				c.logf("measured %-7s %-7s lanes %d batch %2d: %8.1f images/s  p50 %7.3f ms  p99 %7.3f ms  (%d images)",
					device, m.name, l, b, res.perSecond(), res.p50, res.p99, res.images)
			}
			s.Close()
		}
	}
}

// timing is one configuration's measurement: images inferred, the wall time, and the
// per-Run latency percentiles in milliseconds.
type timing struct {
	images   int
	seconds  float64
	p50, p99 float64
}

func (t timing) perSecond() float64 { return float64(t.images) / t.seconds }

// time runs batches of b photos (cycling through them) from lanes goroutines for the
// configured duration, after three warm-up runs per lane (the first runs of a shape
// allocate buffers and, on a GPU, choose convolution algorithms).
func (c *check) time(s *onnx.Session, lanes, b int) (timing, error) {
	n := onnx.FrameLen(c.spec.Input)
	input := make([]float32, 0, b*n)
	for i := range b {
		input = append(input, c.photos[i%len(c.photos)].tensor...)
	}
	var (
		mu    sync.Mutex
		lat   []float64
		first error
		wg    sync.WaitGroup
	)
	loop := func(until time.Time, runs int, record bool) {
		for i := 0; (runs > 0 && i < runs) || (runs == 0 && time.Now().Before(until)); i++ {
			t0 := time.Now()
			_, err := s.Infer(input, b)
			d := time.Since(t0)
			mu.Lock()
			if err != nil && first == nil {
				first = err
			}
			if record {
				lat = append(lat, float64(d.Microseconds())/1000)
			}
			stop := first != nil
			mu.Unlock()
			if stop {
				return
			}
		}
	}
	for range lanes {
		wg.Go(func() { loop(time.Time{}, 3, false) })
	}
	wg.Wait()
	if first != nil {
		return timing{}, first
	}
	start := time.Now()
	until := start.Add(c.cfg.duration)
	for range lanes {
		wg.Go(func() { loop(until, 0, true) })
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if first != nil {
		return timing{}, first
	}
	slices.Sort(lat)
	return timing{images: len(lat) * b, seconds: elapsed, p50: percentile(lat, 0.50), p99: percentile(lat, 0.99)}, nil
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// compareDetections checks that got has the detections of want, in order, with the same
// classes and boxes within tol of the image's width (x) or height (y). It returns the
// largest coordinate difference so measured, as a fraction of the image size.
func compareDetections(want, got []functions.Detection, w, h int, tol float64) (float64, error) {
	if len(want) != len(got) {
		return 0, fmt.Errorf("%d detections, want %d (%s against %s)", len(got), len(want), summary(got), summary(want))
	}
	worst := 0.0
	for i := range want {
		a, b := want[i], got[i]
		if a.ClassID != b.ClassID {
			return worst, fmt.Errorf("detection %d is class %d (%s), want %d (%s)", i, b.ClassID, b.Label, a.ClassID, a.Label)
		}
		for _, d := range []float64{
			math.Abs(float64(a.Box.X1-b.Box.X1)) / float64(w), math.Abs(float64(a.Box.X2-b.Box.X2)) / float64(w),
			math.Abs(float64(a.Box.Y1-b.Box.Y1)) / float64(h), math.Abs(float64(a.Box.Y2-b.Box.Y2)) / float64(h),
		} {
			worst = max(worst, d)
		}
		if worst > tol {
			return worst, fmt.Errorf("detection %d (%s) box %v, want %v: differs by %.3g of the image, over %.3g", i, b.Label, b.Box, a.Box, worst, tol)
		}
	}
	return worst, nil
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	worst := 0.0
	for i := range a {
		worst = max(worst, math.Abs(float64(a[i]-b[i])))
	}
	return worst
}

// summary names the detections by label, e.g. "7 person, 2 car".
func summary(dets []functions.Detection) string {
	counts := map[string]int{}
	var order []string
	for _, d := range dets {
		l := d.Label
		if l == "" {
			l = "class " + strconv.Itoa(d.ClassID)
		}
		if counts[l] == 0 {
			order = append(order, l)
		}
		counts[l]++
	}
	s := ""
	for i, l := range order {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", counts[l], l)
	}
	return s
}

func (c *check) writeCSV(name string, rows [][]string) error {
	p := filepath.Join(c.cfg.out, name)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	if err := w.WriteAll(rows); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	c.logf("wrote %s (%d rows)", p, len(rows)-1)
	return nil
}
