package bench

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/wire"
)

func TestSoakSlope(t *testing.T) {
	for _, tc := range []struct {
		name   string
		xs, ys []float64
		want   float64
		ok     bool
	}{
		{"a line", []float64{0, 1, 2, 3}, []float64{5, 7, 9, 11}, 2, true},
		{"flat", []float64{0, 1, 2}, []float64{4, 4, 4}, 0, true},
		{"falling", []float64{1, 2}, []float64{10, 4}, -6, true},
		{"noise around a line", []float64{0, 1, 2, 3, 4}, []float64{1, 2.5, 2.5, 4, 5}, 0.95, true},
		{"one point", []float64{1}, []float64{3}, 0, false},
		{"no spread in x", []float64{2, 2, 2}, []float64{1, 5, 9}, 0, false},
		{"empty", nil, nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Slope(tc.xs, tc.ys)
			if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("Slope = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSoakWarmup(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		30 * time.Minute: 5 * time.Minute,
		3 * time.Minute:  30 * time.Second,
		2 * time.Hour:    5 * time.Minute,
	} {
		if got := SoakWarmup(d); got != want {
			t.Errorf("SoakWarmup(%s) = %s, want %s", d, got, want)
		}
	}
}

// series makes a process's samples every 30 s for 30 minutes: RSS, fds and goroutines as
// functions of the time in hours.
func series(name string, pid int, rssMB, fds, gs func(h float64) float64) []SoakSample {
	var out []SoakSample
	for at := time.Duration(0); at <= 30*time.Minute; at += 30 * time.Second {
		h := at.Hours()
		g := soakGoroutinesUnknown
		if gs != nil {
			g = int(math.Round(gs(h)))
		}
		out = append(out, SoakSample{At: at, Process: name, PID: pid, RSS: int64(rssMB(h) * soakBytesPerMB),
			FDs: int(math.Round(fds(h))), Goroutines: g, CPU: at.Seconds() / 2})
	}
	return out
}

func TestSoakTrendsLeaveOutTheWarmup(t *testing.T) {
	// RSS climbs 100 MB in the first 5 minutes (caches, pools), then is flat: no leak.
	warm := func(h float64) float64 {
		if h < 5.0/60 {
			return 100 + 1200*h
		}
		return 200
	}
	flat := func(float64) float64 { return 40 }
	samples := series("up", 1, warm, flat, flat)
	tr := SoakTrends(samples, SoakWarmup(30*time.Minute))
	if len(tr) != 1 {
		t.Fatalf("%d trends, want 1", len(tr))
	}
	got := tr[0]
	if got.Samples != 51 || math.Abs(got.RSSSlope) > 1e-6 || got.FDSlope != 0 || !got.HasGoroutines || got.GSlope != 0 {
		t.Fatalf("trend %+v, want 51 samples and flat slopes", got)
	}
	if got.RSSStart != 100*soakBytesPerMB || got.RSSEnd != 200*soakBytesPerMB || math.Abs(got.CPUCores-0.5) > 1e-9 {
		t.Fatalf("trend %+v: want RSS 100 → 200 MB and 0.5 cores", got)
	}
	if m := got.Misses(30 * time.Minute); len(m) != 0 {
		t.Fatalf("misses %v, want none", m)
	}
	// Over the whole run the same series would look like a leak.
	if all := SoakTrends(samples, 0); all[0].RSSSlope < SoakRSSTargetMBPerHour {
		t.Fatalf("slope with the warm-up %v, want above the target", all[0].RSSSlope)
	}
}

func TestSoakTrendsFindLeaks(t *testing.T) {
	var samples []SoakSample
	flat := func(float64) float64 { return 50 }
	samples = append(samples, series("up", 1, func(h float64) float64 { return 150 + 8*h }, flat, flat)...)             // RSS +8 MB/h
	samples = append(samples, series("kafka", 2, flat, func(h float64) float64 { return 170 + 60*h }, nil)...)          // a descriptor a minute
	samples = append(samples, series("runner r1", 3, flat, flat, func(h float64) float64 { return 70 + 180*h })...)     // a goroutine per camera loop
	samples = append(samples, series("runner r2", 4, func(h float64) float64 { return 220 - 3*h }, flat, flat)[:40]...) // gone after 19.5 min
	samples = append(samples, series("runner r3", 5, func(h float64) float64 { return 220 + 4.9*h }, flat, flat)...)    // under the target
	samples = append(samples, series("runner r4", 6, flat, func(h float64) float64 { return 30 - 30*h }, flat)...)      // closing: |slope|
	tr := SoakTrends(samples, SoakWarmup(30*time.Minute))
	if len(tr) != 6 {
		t.Fatalf("%d trends, want 6", len(tr))
	}
	want := map[string]string{
		"up":        "RSS +8.0 MB/h",
		"kafka":     "descriptors +60.0/h",
		"runner r1": "goroutines +180.0/h",
		"runner r2": "gone after 19m30s",
		"runner r3": "",
		"runner r4": "descriptors -30",
	}
	for _, trend := range tr {
		m := strings.Join(trend.Misses(30*time.Minute), "; ")
		w := want[trend.Process]
		if (w == "") != (m == "") || !strings.Contains(m, w) {
			t.Errorf("%s: misses %q, want %q", trend.Process, m, w)
		}
	}
	if tr[1].HasGoroutines {
		t.Errorf("kafka has goroutines: %+v", tr[1])
	}
}

func TestSoakTooFewSamplesMiss(t *testing.T) {
	s := []SoakSample{{At: 0, Process: "up", PID: 1}, {At: time.Minute, Process: "up", PID: 1}}
	tr := SoakTrends(s, 30*time.Second)
	if m := tr[0].Misses(time.Minute); len(m) != 1 || !strings.Contains(m[0], "no slope") {
		t.Fatalf("misses %v, want no slope", m)
	}
}

func TestSoakCountResults(t *testing.T) {
	res := func(status string, p int32, off int64) soakResult {
		return soakResult{Status: status, Source: wire.Source{Partition: p, Offset: off}}
	}
	end := map[int32]int64{0: 3, 1: 2}
	all := []soakResult{res("ok", 0, 0), res("skipped", 0, 1), res("ok", 0, 2), res("error", 1, 0), res("ok", 1, 1), res("ok", 1, 1)}
	c := countResults(end, all)
	if c.FramesIn != 5 || c.Results != 6 || c.Distinct != 5 || c.OK != 4 || c.Skipped != 1 || c.Errors != 1 || c.Duplicates != 1 || c.Lost != 0 {
		t.Fatalf("counts %+v", c)
	}
	if m := c.Misses(); len(m) != 0 {
		t.Fatalf("misses %v", m)
	}
	// Partition 0's last frame has no result; a result past the end does not stand in for it.
	c = countResults(end, []soakResult{res("ok", 0, 0), res("ok", 0, 1), res("ok", 0, 7), res("ok", 1, 0), res("ok", 1, 1)})
	if c.Lost != 1 || len(c.Misses()) != 1 {
		t.Fatalf("counts %+v, want 1 lost", c)
	}
}

func TestSoakParseGoMetrics(t *testing.T) {
	text := "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 97\n" +
		"go_memstats_heap_inuse_bytes 9.756672e+06\ngo_threads 12\n"
	if g, heap, err := parseGoMetrics(strings.NewReader(text)); err != nil || g != 97 || heap != 9756672 {
		t.Fatalf("parseGoMetrics = %d, %d, %v; want 97, 9756672", g, heap, err)
	}
	if g, heap, err := parseGoMetrics(strings.NewReader("go_goroutines 5\n")); err != nil || g != 5 || heap != -1 {
		t.Fatalf("without the heap: %d, %d, %v; want 5, -1", g, heap, err)
	}
	if _, _, err := parseGoMetrics(strings.NewReader("go_threads 12\n")); err == nil {
		t.Fatal("no go_goroutines: want an error")
	}
}
