package bench

import (
	"bytes"
	"embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Sweep describes a benchmark run, so that it can be repeated exactly. It is read from a
// YAML file (bench/sweeps/*.yaml); unknown fields are errors.
type Sweep struct {
	Name string `yaml:"name"`
	// Function is the example function (functions/examples/NAME) every row measures.
	// Default yolox-nano; the chain rows need it (it is their first stage).
	Function string `yaml:"function"`
	// Duration of each measured phase.
	Duration Duration `yaml:"duration"`
	// Direct: the standalone loops over the same frames and model, no bus: one lane with
	// every CPU's thread (the `direct` row) and one lane per CPU (the best is `limit`).
	Direct bool `yaml:"direct"`
	// Drain: frames put into Kafka before one runner is deployed on them (replay policy);
	// 0 skips it. At least 500 for a steady figure.
	Drain int `yaml:"drain"`
	// ExactlyOnce: drain and half load again with --delivery exactly-once (Kafka
	// transactions), at the lanes of the best at-least-once drain; rows drain-exactly-once
	// (ratio: fps / that at-least-once drain) and pipeline-exactly-once (latency).
	ExactlyOnce bool `yaml:"exactly_once"`
	// Lanes: the deployment's lanes in the drain and pipeline phases, each run once (0:
	// the runner's default). Default [0].
	Lanes []int `yaml:"lanes"`
	// Pipeline: cameras pushing through the gateway to runners; Loads are fractions of the
	// limit loop's rate (1.5 saturates, 0.5 is "half load").
	Pipeline []float64 `yaml:"pipeline"`
	// Cameras share the offered load.
	Cameras int `yaml:"cameras"`
	// Push is how the cameras send: "http" (one POST per frame, default) or "mjpeg" (one
	// long multipart stream per camera).
	Push string `yaml:"push"`
	// ScaleUp: offer 1.5 × the direct rate to a deployment with min 0, max 2 and time how
	// long until two runners work it.
	ScaleUp bool `yaml:"scale_up"`
	// ColdStart: first frame on a zero-runner stream to first result.
	ColdStart bool `yaml:"cold_start"`
	// Simulated: runner counts for the simulated accelerator against SimPartitions.
	Simulated      []int    `yaml:"simulated"`
	SimPartitions  int32    `yaml:"sim_partitions"`
	SimServiceTime Duration `yaml:"sim_service_time"` // per batch
	SimPerFrame    Duration `yaml:"sim_per_frame"`    // added per frame of a batch
	SimBatch       int      `yaml:"sim_batch"`
	// Tracker: the tracker stage's cost per frame at 10 and 50 detections.
	Tracker bool `yaml:"tracker"`
	// Ingest: HTTP push vs Kafka's ProducerPerformance at the same record size.
	Ingest        bool `yaml:"ingest"`
	IngestRecords int  `yaml:"ingest_records"`
	// Chain: loads, as fractions of the limit rate, of the `chain` rows (issue #24):
	// YOLOX-Nano, then person-reid on its people ≥ 60 px high; camera to enriched result
	// latency, stage 2's crops per second; and one `chain-drain` row (Drain frames already
	// in Kafka through both stages, against YOLOX-Nano alone on the same frames). Empty: off.
	Chain []float64 `yaml:"chain"`
	// Frames1080p: `limit-1080p` and `drain-1080p`, the limit loop and a drain over the
	// sample frames upscaled to 1920x1080 with ffmpeg (made once into the media cache).
	Frames1080p bool `yaml:"frames_1080p"`
	// INT8: `limit-int8` and `drain-int8` with a static INT8 copy of the function: the
	// function directory INT8Dir, or one the bench quantizes (see bench/int8.go).
	INT8    bool   `yaml:"int8"`
	INT8Dir string `yaml:"int8_dir"`
}

// Duration is a time.Duration written as "10s".
type Duration time.Duration

// UnmarshalYAML parses "10s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 10s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// ParseSweep reads and validates a sweep.
func ParseSweep(r io.Reader) (*Sweep, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	s := Sweep{Cameras: 4, SimPartitions: 16, SimBatch: 8, SimServiceTime: Duration(20 * time.Millisecond),
		SimPerFrame: Duration(time.Millisecond), IngestRecords: 2000, Duration: Duration(10 * time.Second)}
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("sweep: empty file")
		}
		return nil, fmt.Errorf("sweep: %w", err)
	}
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if s.Function == "" {
		s.Function = chainFirst
	}
	if strings.ContainsAny(s.Function, `/\`) || strings.HasPrefix(s.Function, ".") {
		errs = append(errs, fmt.Errorf("function %q: want the name of an example function (functions/examples/NAME)", s.Function))
	}
	if len(s.Chain) > 0 && s.Function != chainFirst {
		errs = append(errs, fmt.Errorf("chain: the chain rows run %s → %s, so function must be %s (is %s)", chainFirst, chainSecond, chainFirst, s.Function))
	}
	if s.Duration <= 0 {
		errs = append(errs, errors.New("duration: want > 0"))
	}
	for _, l := range s.Pipeline {
		if l <= 0 || l > 10 {
			errs = append(errs, fmt.Errorf("pipeline: load %v: want a fraction of the limit rate in (0, 10]", l))
		}
	}
	if (len(s.Pipeline) > 0 || s.Drain > 0) && !s.Direct {
		errs = append(errs, errors.New("pipeline and drain are measured against the limit loop, so direct: true is needed"))
	}
	if s.Drain < 0 {
		errs = append(errs, fmt.Errorf("drain %d: want a number of frames ≥ 0", s.Drain))
	}
	if len(s.Lanes) == 0 {
		s.Lanes = []int{0}
	}
	for _, l := range s.Lanes {
		if l < 0 || l > 64 {
			errs = append(errs, fmt.Errorf("lanes: %d: want 0 (the runner's default) to 64", l))
		}
	}
	if s.Push == "" {
		s.Push = "http"
	}
	if s.Push != "http" && s.Push != "mjpeg" {
		errs = append(errs, fmt.Errorf("push %q: want http or mjpeg", s.Push))
	}
	if s.Cameras < 1 || s.Cameras > 256 {
		errs = append(errs, fmt.Errorf("cameras %d: want 1..256", s.Cameras))
	}
	for _, k := range s.Simulated {
		if k < 1 || int32(k) > s.SimPartitions {
			errs = append(errs, fmt.Errorf("simulated: %d runners: want 1..sim_partitions (%d)", k, s.SimPartitions))
		}
	}
	if s.SimBatch < 1 || s.SimServiceTime < 0 || s.SimPerFrame < 0 {
		errs = append(errs, errors.New("sim_batch must be ≥ 1 and sim times ≥ 0"))
	}
	for _, l := range s.Chain {
		if l <= 0 || l > 10 {
			errs = append(errs, fmt.Errorf("chain: load %v: want a fraction of the limit rate in (0, 10]", l))
		}
	}
	if (len(s.Chain) > 0 || s.Frames1080p || s.INT8) && (!s.Direct || s.Drain == 0) {
		errs = append(errs, errors.New("chain, frames_1080p and int8 rows are measured against limit and drain, so direct: true and drain > 0 are needed"))
	}
	if s.INT8Dir != "" && !s.INT8 {
		errs = append(errs, errors.New("int8_dir without int8: true"))
	}
	if s.IngestRecords < 1 {
		errs = append(errs, errors.New("ingest_records: want ≥ 1"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sweep %q: %w", s.Name, err)
	}
	return &s, nil
}

// Percentile returns the q-quantile (0..1) of values by nearest rank; NaN for none.
func Percentile(values []float64, q float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := slices.Clone(values)
	slices.Sort(s)
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// Row is one measurement of a run.
type Row struct {
	Scenario string  // limit, direct, drain, pipeline-*, platform-cpu, cold-start, simulated, ingest-*
	Load     float64 // offered load as a fraction of the limit rate, or 0
	Runners  int
	Offered  float64 // frames/s offered
	FPS      float64 // frames/s done
	P50, P95 float64 // latency ms (end to end, or per frame for direct)
	P99      float64
	Ratio    float64 // against the scenario's reference (see Note)
	Note     string
}

var header = []string{"scenario", "load", "runners", "offered_fps", "fps", "p50_ms", "p95_ms", "p99_ms", "ratio", "note"}

func f(v float64) string {
	if math.IsNaN(v) || v == 0 {
		return ""
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func (r Row) cells() []string {
	runners := ""
	if r.Runners > 0 {
		runners = strconv.Itoa(r.Runners)
	}
	return []string{r.Scenario, f(r.Load), runners, f(r.Offered), f(r.FPS), f(r.P50), f(r.P95), f(r.P99), f(r.Ratio), r.Note}
}

// WriteCSV writes rows with a header line.
func WriteCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	for _, r := range rows {
		if err := cw.Write(r.cells()); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Markdown renders rows as a Markdown table.
func Markdown(rows []Row) string {
	var b bytes.Buffer
	b.WriteString("| " + joinCells(header) + " |\n|")
	for range header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + joinCells(r.cells()) + " |\n")
	}
	return b.String()
}

func joinCells(c []string) string {
	var b bytes.Buffer
	for i, s := range c {
		if i > 0 {
			b.WriteString(" | ")
		}
		b.WriteString(s)
	}
	return b.String()
}

//go:embed sweeps/*.yaml
var sweeps embed.FS

// BuiltinSweep returns a sweep shipped in bench/sweeps, e.g. "quick" or "full".
func BuiltinSweep(name string) (*Sweep, error) {
	b, err := sweeps.ReadFile("sweeps/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in sweep %q (there are quick and full)", name)
	}
	return ParseSweep(bytes.NewReader(b))
}
