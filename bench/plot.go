package bench

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// PlotScaling draws throughput against runners for the simulated rows, with the ideal
// (k × one runner) beside it, into a PNG at path. It draws nothing without such rows.
func PlotScaling(rows []Row, path string) error {
	var got, ideal plotter.XYs
	var one float64
	for _, r := range rows {
		if r.Scenario != "simulated" {
			continue
		}
		if r.Runners == 1 {
			one = r.FPS
		}
		got = append(got, plotter.XY{X: float64(r.Runners), Y: r.FPS})
	}
	if len(got) == 0 {
		return nil
	}
	for _, p := range got {
		ideal = append(ideal, plotter.XY{X: p.X, Y: p.X * one})
	}
	p := plot.New()
	p.Title.Text = "Simulated accelerator: throughput vs runners"
	p.X.Label.Text = "runners"
	p.Y.Label.Text = "frames/s"
	if err := plotutil.AddLinePoints(p, "measured", got, "ideal (k × one runner)", ideal); err != nil {
		return err
	}
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}

// PlotLatency draws end-to-end latency percentiles against offered load for the pipeline
// rows into a PNG at path. It draws nothing without such rows.
func PlotLatency(rows []Row, path string) error {
	var p50, p95, p99 plotter.XYs
	for _, r := range rows {
		if r.Scenario != "pipeline" {
			continue
		}
		p50 = append(p50, plotter.XY{X: r.Offered, Y: r.P50})
		p95 = append(p95, plotter.XY{X: r.Offered, Y: r.P95})
		p99 = append(p99, plotter.XY{X: r.Offered, Y: r.P99})
	}
	if len(p50) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = "Pipeline: end-to-end latency vs offered load"
	p.X.Label.Text = "offered frames/s"
	p.Y.Label.Text = "latency (ms)"
	if err := plotutil.AddLinePoints(p, "p50", p50, "p95", p95, "p99", p99); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}
