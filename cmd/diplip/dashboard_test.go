package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
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

// browserTools returns node for the dashboard's browser checks (internal/uitest), failing
// with what to install when node, playwright-core or Chromium is missing.
func browserTools(t *testing.T) string {
	t.Helper()
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
	return node
}

// screenshotPath is where a browser check saves its screenshot: .test-output/ui/name.
func screenshotPath(t *testing.T, name string) string {
	t.Helper()
	out, err := filepath.Abs("../../.test-output/ui")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(out, name)
}

// The dashboard of a running `diplip up --demo`, in a real headless Chromium: the runner
// goes from idle to active, the camera's live view draws the latest result's boxes, and a
// screenshot is saved in .test-output/. /metrics grows while the demo runs.
func TestDashboard(t *testing.T) {
	node := browserTools(t)
	addr := freeAddr(t)
	url := "http://" + addr
	startUp(t, t.TempDir(), addr, "--demo")

	before := counter(t, url, "diplip_ingest_frames_total")
	shot := screenshotPath(t, "dashboard.png")
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

// The dashboard's chain surfaces, in a real headless Chromium against a real gateway: the
// deploy form has after (a select of the stream's primaries), classes, min size and max
// per frame; deploying through it with after= makes a second stage (checked here through
// the API); the deployments list shows it as FIRST → FUNCTION; and the second stages panel
// counts crops per second and per frame from its enriched results, with its lag, while
// this test pushes the sample video's frames.
func TestDashboardChain(t *testing.T) {
	node := browserTools(t)
	addr := freeAddr(t)
	gw := "--gateway=http://" + addr
	startUp(t, t.TempDir(), addr)
	stream := testkit.Name("dash-chain")
	run(t, 0, "stream", "create", stream, "--partitions", "1", gw)
	det, reid := addr+"/fn/yolox-nano:v1", addr+"/fn/person-reid:v1"
	for ref, dir := range map[string]string{det: "yolox-nano", reid: "person-reid"} {
		run(t, 0, "fn", "build", "../../functions/examples/"+dir, "-t", ref, "--push", "--store", t.TempDir())
	}
	run(t, 0, "fn", "deploy", det, "--stream", stream, "--min", "0", "--max", "1", gw)

	shot := screenshotPath(t, "dashboard-chain.png")
	var browserOut strings.Builder
	cmd := exec.Command(node, "../../internal/uitest/chain.mjs", "http://"+addr+"/", stream, "yolox-nano", reid, shot)
	cmd.Stdout, cmd.Stderr = &browserOut, &browserOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ended := false
	defer func() {
		if !ended {
			cmd.Process.Kill()
			<-done
		}
	}()

	// The deploy the page posted, as the API has it.
	cl := gatewayClient(t, addr)
	testkit.CheckFor(t, 90*time.Second, 250*time.Millisecond, func() error {
		deps, err := cl.Deployments(t.Context())
		if err != nil {
			return err
		}
		for _, d := range deps {
			if d.Stream == stream && d.Role == "after" {
				if d.Function != "person-reid" || d.After != "yolox-nano" || !slices.Equal(d.Classes, []string{"person"}) || d.MinSize != 60 || d.MaxPerFrame != 0 ||
					d.ResultsTopic != wire.AfterResultsTopic(stream, "yolox-nano", "person-reid") {
					t.Fatalf("the dashboard's deploy made %+v; want person-reid after yolox-nano, classes [person], min size 60", d)
				}
				return nil
			}
		}
		select {
		case err := <-done:
			ended = true
			t.Fatalf("the browser check ended before a second stage was deployed (%v):\n%s", err, browserOut.String())
		default:
		}
		return fmt.Errorf("no second stage on %s yet: %+v", stream, deps)
	})

	// Frames until the page has counted crops (5 a second, the sample video looped).
	jpegs := ingest.SplitJPEGs(testkit.Media(t, "vtest_10s.mjpeg"))
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var pushed int
	var browserErr error
push:
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		select {
		case browserErr = <-done:
			ended = true
			break push
		case <-tick.C:
			if _, err := cl.PushFrame(t.Context(), stream, apiclient.Frame{Camera: "vtest", Image: jpegs[pushed%len(jpegs)], ContentType: "image/jpeg"}); err != nil {
				t.Fatal(err)
			}
			pushed++
		}
	}
	if !ended {
		cmd.Process.Kill()
		<-done
		ended = true
		t.Fatalf("the browser check did not end within 5 minutes of frames (%d pushed):\n%s", pushed, browserOut.String())
	}
	t.Logf("%d frames pushed\n%s", pushed, browserOut.String())
	if browserErr != nil {
		t.Fatalf("browser check failed: %v", browserErr)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}

	// The stage-2 lag the panel shows is the scaler's gauge on the gateway's /metrics,
	// one series per second stage (docs/metrics.md).
	key := wire.AfterKey("person-reid", stream, "yolox-nano")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var lagged bool
	for _, m := range fams["diplip_consumer_lag_frames"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "deployment" && l.GetValue() == key {
				lagged = true
				t.Logf("diplip_consumer_lag_frames{deployment=%q} %v", key, m.GetGauge().GetValue())
			}
		}
	}
	if !lagged {
		t.Fatalf("the gateway's /metrics has no diplip_consumer_lag_frames{deployment=%q}", key)
	}
}
