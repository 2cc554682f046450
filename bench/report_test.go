package bench

import (
	"bytes"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ q, want float64 }{{0.5, 5}, {0.9, 9}, {0.99, 10}, {0, 1}, {1, 10}} {
		if got := Percentile(v, tc.q); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 0.5)) {
		t.Error("Percentile of nothing should be NaN")
	}
	if v[0] != 5 {
		t.Error("Percentile sorted its input")
	}
}

func TestParseSweep(t *testing.T) {
	s, err := ParseSweep(strings.NewReader("name: q\nduration: 5s\ndirect: true\npipeline: [0.5, 1.5]\nsimulated: [1, 2, 16]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Cameras != 4 || s.SimPartitions != 16 || len(s.Pipeline) != 2 {
		t.Fatalf("defaults: %+v", s)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"name: q\ncolour: red\n", "field colour not found"},
		{"duration: 5s\n", "name: required"},
		{"name: q\npipeline: [0.5]\n", "direct: true is needed"},
		{"name: q\nsimulated: [32]\n", "32 runners"},
		{"name: q\nduration: soon\n", "not a duration"},
		{"name: q\npush: carrier-pigeon\n", `push "carrier-pigeon"`},
	} {
		if _, err := ParseSweep(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSweep(%q) = %v, want it to mention %q", tc.in, err, tc.want)
		}
	}
}

func TestShippedSweepsParse(t *testing.T) {
	files, _ := filepath.Glob("sweeps/*.yaml")
	if len(files) == 0 {
		t.Fatal("no sweeps in bench/sweeps")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseSweep(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestCSVAndMarkdown(t *testing.T) {
	rows := []Row{
		{Scenario: "direct", FPS: 33.333, P50: 30},
		{Scenario: "simulated", Runners: 4, FPS: 100, Ratio: 0.95, Note: "a, b"},
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0][0] != "scenario" || recs[1][4] != "33.33" || recs[2][2] != "4" || recs[2][9] != "a, b" {
		t.Fatalf("csv: %q", recs)
	}
	md := Markdown(rows)
	if !strings.Contains(md, "| simulated |  | 4 |") || strings.Count(md, "\n") != 4 {
		t.Fatalf("markdown:\n%s", md)
	}
}

func TestPlotsWritePNGs(t *testing.T) {
	dir := t.TempDir()
	rows := []Row{{Scenario: "simulated", Runners: 1, FPS: 10}, {Scenario: "simulated", Runners: 2, FPS: 19},
		{Scenario: "pipeline", Offered: 10, P50: 20, P95: 30, P99: 40}, {Scenario: "pipeline", Offered: 20, P50: 25, P95: 50, P99: 90}}
	for name, plot := range map[string]func([]Row, string) error{"s.png": PlotScaling, "l.png": PlotLatency} {
		p := filepath.Join(dir, name)
		if err := plot(rows, p); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Fatalf("%s is not a PNG (%v)", name, err)
		}
	}
}

func TestSampleProcOfThisProcess(t *testing.T) {
	s, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.rss < 1<<20 || s.cpu < 0 {
		t.Fatalf("this process: rss %d bytes, cpu %v", s.rss, s.cpu)
	}
	w := watchProcs(map[string]int{"me": os.Getpid(), "gone": 1 << 30})
	if sum := w.summary(); !strings.HasPrefix(sum, "me ") || strings.Contains(sum, "gone") {
		t.Fatalf("summary %q: want this process only", sum)
	}
}

// The rows of issues #24 and #26 (chain, 1080p, INT8) in both formats: load and offered on
// the chain row, empty cells where a phase has no figure, notes with commas kept whole.
func TestChainHDAndINT8RowsFormat(t *testing.T) {
	rows := []Row{
		{Scenario: "limit", Runners: 2, FPS: 59.02, P50: 31.77, Ratio: 1},
		{Scenario: "limit-1080p", Runners: 2, FPS: 46.19, P50: 30.62, P95: 93.09, P99: 149.93, Ratio: 0.78, Note: "1920x1080, upscaled by ffmpeg"},
		{Scenario: "drain-1080p", Runners: 1, FPS: 32.17, Ratio: 0.70},
		{Scenario: "limit-int8", Runners: 2, FPS: 88.5, Ratio: 1.5, Note: "INT8 vs FP32 over 80 frames: F1 0.950"},
		{Scenario: "drain-int8", Runners: 1, FPS: 80, Ratio: 1.36},
		{Scenario: "chain", Load: 0.5, Runners: 2, Offered: 29.51, FPS: 29.4, P50: 75.5, P95: 120, P99: 150.25, Ratio: 0.25,
			Note: "stage 2 38.2 crops/s, 3.95 per frame; stage 1 runner (yolox-nano) 0.52 cores"},
		{Scenario: "chain-drain", Runners: 2, FPS: 12.67, Ratio: 0.25},
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	chain := recs[6]
	if want := []string{"chain", "0.50", "2", "29.51", "29.40", "75.50", "120.00", "150.25", "0.25"}; strings.Join(chain[:9], ",") != strings.Join(want, ",") ||
		!strings.Contains(chain[9], "38.2 crops/s, 3.95 per frame") {
		t.Fatalf("chain row in csv: %q", chain)
	}
	if d := recs[7]; d[0] != "chain-drain" || d[1] != "" || d[3] != "" || d[4] != "12.67" || d[5] != "" || d[8] != "0.25" {
		t.Fatalf("chain-drain row in csv: %q", d)
	}
	if d := recs[3]; d[0] != "drain-1080p" || d[4] != "32.17" || d[8] != "0.70" {
		t.Fatalf("drain-1080p row in csv: %q", d)
	}
	md := Markdown(rows)
	for _, want := range []string{
		"| limit-1080p |  | 2 |  | 46.19 | 30.62 | 93.09 | 149.93 | 0.78 | 1920x1080, upscaled by ffmpeg |",
		"| limit-int8 |  | 2 |  | 88.50 |  |  |  | 1.50 | INT8 vs FP32 over 80 frames: F1 0.950 |",
		"| drain-int8 |  | 1 |  | 80.00 |  |  |  | 1.36 |  |",
		"| chain | 0.50 | 2 | 29.51 | 29.40 | 75.50 | 120.00 | 150.25 | 0.25 | stage 2 38.2 crops/s",
		"| chain-drain |  | 2 |  | 12.67 |  |  |  | 0.25 |  |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
