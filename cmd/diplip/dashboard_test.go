package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/diplip/diplip/internal/testkit"
)

// counter sums a Prometheus counter family across its label sets.
func counter(t *testing.T, url, family string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	var sum float64
	for _, m := range fams[family].GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// The dashboard of a running `diplip up --demo`, in a real headless Chromium: the runner
// goes from idle to active, the camera's live view draws the latest result's boxes, and a
// screenshot is saved in .test-output/. /metrics grows while the demo runs.
func TestDashboard(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: install Node.js 20")
	}
	if _, err := os.Stat("../../internal/uitest/node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core not installed: run go tool task setup (step ui)")
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("chromium not installed: run go tool task setup (Debian package chromium)")
	}
	addr := freeAddr(t)
	url := "http://" + addr
	startUp(t, t.TempDir(), addr, "--demo")

	before := counter(t, url, "diplip_ingest_frames_total")
	out, err := filepath.Abs("../../.test-output/ui")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(out, "dashboard.png")
	cmd := exec.Command(node, "../../internal/uitest/check.mjs", url+"/", shot)
	b, err := cmd.CombinedOutput()
	t.Logf("%s", b)
	if err != nil {
		t.Fatalf("browser check failed: %v", err)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	testkit.CheckFor(t, 30*time.Second, time.Second, func() error {
		after := counter(t, url, "diplip_ingest_frames_total")
		if after <= before {
			return fmt.Errorf("diplip_ingest_frames_total did not grow: %v then %v", before, after)
		}
		if n := counter(t, url, "diplip_frames_processed_total"); n != 0 {
			// Processed frames are counted by the runner process, not the gateway.
			return fmt.Errorf("the gateway counts processed frames (%v); only runners should", n)
		}
		return nil
	})
}
