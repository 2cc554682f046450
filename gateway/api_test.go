package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/internal/kafkaclient"
	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/node"
	"github.com/diplip/diplip/node/nodetest"
	"github.com/diplip/diplip/registry"
)

// started is a running node as the tests see it.
type started struct {
	*node.Node
	URL string
}

func startLocal(t *testing.T, token string) (*started, *apiclient.Client) {
	t.Helper()
	n := nodetest.Start(t, node.Config{Kafka: testkit.Kafka(t), Token: token})
	l := &started{Node: n, URL: n.URL()}
	c, err := apiclient.New(l.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

// pushExample builds the example function and pushes it to the gateway's registry.
func pushExample(t *testing.T, l *started, tag string, opts ...remote.Option) string {
	t.Helper()
	img, _, err := registry.Build("../functions/examples/yolox-nano", nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := registry.ParseReference(strings.TrimPrefix(l.URL, "http://")+"/fn/yolox-nano:"+tag, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(context.Background(), img, ref, nil, opts...); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

func wantAPIError(t *testing.T, err error, status int, msg string) {
	t.Helper()
	ae, ok := err.(*apiclient.Error)
	if !ok || ae.Status != status || !strings.Contains(ae.Message, msg) {
		t.Fatalf("err = %#v; want %d mentioning %q", err, status, msg)
	}
}

// The paper's steps 3, 6 and 7 through the API: a stream (two Kafka topics), a function
// image in the embedded registry, and a deployment recorded against its digest.
func TestStreamFunctionDeployLifecycle(t *testing.T) {
	ctx := context.Background()
	l, c := startLocal(t, "")
	lobby := testkit.Name("lobby")

	st, err := c.CreateStream(ctx, api.StreamRequest{Name: lobby, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdmin(l.Brokers(), kafkaclient.NewConfig("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// Topic metadata reaches the brokers asynchronously after creation.
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		topics, err := admin.ListTopics()
		if err != nil {
			return err
		}
		if d, ok := topics[st.Topic]; !ok || d.NumPartitions != 4 {
			return fmt.Errorf("frames topic %s: %+v (exists %v)", st.Topic, d, ok)
		}
		if _, ok := topics[st.ResultsTopic]; !ok {
			return fmt.Errorf("results topic %s missing", st.ResultsTopic)
		}
		return nil
	})
	_, err = c.CreateStream(ctx, api.StreamRequest{Name: lobby, Partitions: 4})
	wantAPIError(t, err, http.StatusConflict, "already exists")

	ref := pushExample(t, l, "v1")
	_, err = c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: "hall"})
	wantAPIError(t, err, http.StatusNotFound, "diplip stream create hall")

	d, err := c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: lobby, Max: 2})
	if err != nil {
		t.Fatal(err)
	}
	if d.Function != "yolox-nano" || !strings.Contains(d.Digest, "@sha256:") || d.Batch != 8 || d.Policy != "live" ||
		d.Device != "any" || d.Generation != 1 || (wire.Deployment{Function: d.Function, Stream: d.Stream}).Group() != "diplip.yolox-nano."+lobby {
		t.Fatalf("deployment %+v", d)
	}
	fn, err := c.Function(ctx, "yolox-nano")
	if err != nil || fn.Digest != d.Digest || fn.Size < 3_000_000 {
		t.Fatalf("function record %+v, %v", fn, err)
	}

	// Deploying again is a rolling update of the same record.
	d2, err := c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: lobby, Max: 4, Policy: "replay"})
	if err != nil || d2.Generation != 2 || d2.Max != 4 || d2.Policy != "replay" {
		t.Fatalf("update: %+v, %v", d2, err)
	}

	err = c.DeleteFunction(ctx, "yolox-nano")
	wantAPIError(t, err, http.StatusConflict, "diplip fn undeploy yolox-nano --stream "+lobby)
	err = c.DeleteStream(ctx, lobby)
	wantAPIError(t, err, http.StatusConflict, "has deployment")

	if err := c.Undeploy(ctx, "yolox-nano", lobby); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.Undeploy(ctx, "yolox-nano", lobby), http.StatusNotFound, "not deployed")
	if err := c.DeleteFunction(ctx, "yolox-nano"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteStream(ctx, lobby); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		topics, err := admin.ListTopics()
		if _, ok := topics[st.Topic]; ok || err != nil {
			return fmt.Errorf("frames topic still listed after stream rm (%v)", err)
		}
		return nil
	})
}

func TestAPIBadInput(t *testing.T) {
	ctx := context.Background()
	l, c := startLocal(t, "")
	_, err := c.CreateStream(ctx, api.StreamRequest{Name: "Bad Name", Partitions: 1})
	wantAPIError(t, err, http.StatusBadRequest, `stream name "Bad Name"`)
	_, err = c.CreateStream(ctx, api.StreamRequest{Name: "ok", Partitions: 0})
	wantAPIError(t, err, http.StatusBadRequest, "partitions 0")

	host := strings.TrimPrefix(l.URL, "http://")
	_, err = c.RegisterFunction(ctx, api.FunctionRequest{Ref: host + "/fn/missing:v9"})
	wantAPIError(t, err, http.StatusNotFound, "not found in its registry; push it first with: diplip fn push")
	_, err = c.RegisterFunction(ctx, api.FunctionRequest{Ref: "127.0.0.1:1/fn/x:v1"})
	wantAPIError(t, err, http.StatusBadGateway, "connection refused")
	_, err = c.RegisterFunction(ctx, api.FunctionRequest{Ref: "UPPER/Case::"})
	wantAPIError(t, err, http.StatusBadRequest, "image reference")

	// An image that is not a function.
	plain := host + "/fn/plain:v1"
	if err := pushPlain(plain); err != nil {
		t.Fatal(err)
	}
	_, err = c.RegisterFunction(ctx, api.FunctionRequest{Ref: plain})
	wantAPIError(t, err, http.StatusBadRequest, "not a diplip function image")

	s1 := testkit.Name("s1")
	_, err = c.CreateStream(ctx, api.StreamRequest{Name: s1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	ref := pushExample(t, l, "v1")
	for _, tc := range []struct {
		req  api.DeployRequest
		want string
	}{
		{api.DeployRequest{Ref: ref, Stream: s1, Device: "tpu"}, `device "tpu"`},
		{api.DeployRequest{Ref: ref, Stream: s1, Min: 3, Max: 2}, "min 3, max 2"},
		{api.DeployRequest{Ref: ref, Stream: s1, Policy: "whenever"}, `policy "whenever"`},
		{api.DeployRequest{Ref: ref, Stream: s1, MaxAge: "soon"}, `max_age "soon"`},
		{api.DeployRequest{Stream: s1}, "ref: required"},
	} {
		_, err := c.Deploy(ctx, tc.req)
		wantAPIError(t, err, http.StatusBadRequest, tc.want)
	}
	if ds, err := c.Deployments(ctx); err != nil || len(ds) != 0 {
		t.Fatalf("rejected deploys left records: %+v, %v", ds, err)
	}

	resp, err := http.Post(l.URL+"/v1/streams", "application/json", strings.NewReader(`{"name":"x","partitions":1,"colour":"red"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown JSON field: %d, want 400", resp.StatusCode)
	}
}

// With a token, the API and the registry refuse requests without it, and accept it as a
// bearer token or as a registry client's basic-auth password.
func TestTokenGuardsAPIAndRegistry(t *testing.T) {
	ctx := context.Background()
	l, c := startLocal(t, "s3cret")
	for _, path := range []string{"/v1/streams", "/v2/"} {
		resp, err := http.Get(l.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s without a token: %d, want 401", path, resp.StatusCode)
		}
	}
	wrong, _ := apiclient.New(l.URL, "guess")
	_, err := wrong.Streams(ctx)
	wantAPIError(t, err, http.StatusUnauthorized, "DIPLIP_TOKEN")
	if _, err := c.Streams(ctx); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if resp, _ := http.Get(l.URL + "/healthz"); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatal("/healthz must stay open for probes")
	}

	// A registry client with a wrong token is refused.
	img, _, err := registry.Build("../functions/examples/yolox-nano", nil)
	if err != nil {
		t.Fatal(err)
	}
	anon, _ := registry.ParseReference(strings.TrimPrefix(l.URL, "http://")+"/fn/yolox-nano:anon", false)
	if _, err := registry.Push(ctx, img, anon, nil, registry.WithToken("wrong")); err == nil ||
		!strings.Contains(err.Error(), "401") {
		t.Fatalf("push with a wrong token: %v, want the registry's 401", err)
	}

	// A registry client with the token as password can push; the gateway reads its own
	// registry with it when resolving the deployment.
	ref := pushExample(t, l, "v1", registry.WithToken("s3cret"))
	cam := testkit.Name("cam")
	if _, err := c.CreateStream(ctx, api.StreamRequest{Name: cam, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(ctx, api.DeployRequest{Ref: ref, Stream: cam}); err != nil {
		t.Fatalf("deploying from the token-guarded registry: %v", err)
	}
}

func pushPlain(refStr string) error {
	img, err := random.Image(256, 1)
	if err != nil {
		return err
	}
	ref, err := registry.ParseReference(refStr, false)
	if err != nil {
		return err
	}
	_, err = registry.Push(context.Background(), img, ref, nil)
	return err
}

// /metrics is Prometheus text that the official parser reads, and the ingest counter
// grows with every accepted frame.
func TestMetricsCountIngest(t *testing.T) {
	ctx := context.Background()
	l, c := startLocal(t, "")
	stream := testkit.Name("m")
	if _, err := c.CreateStream(ctx, api.StreamRequest{Name: stream, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	accepted := func() float64 {
		resp, err := http.Get(l.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("/metrics is not Prometheus text: %v", err)
		}
		for _, m := range fams["diplip_ingest_frames_total"].GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["stream"] == stream && labels["outcome"] == "accepted" {
				return m.GetCounter().GetValue()
			}
		}
		return 0
	}
	jpg := testkit.Media(t, "vtest_frame600.jpg")
	for range 3 {
		resp, err := http.Post(l.URL+"/v1/streams/"+stream+"/frames?camera=c", "image/jpeg", bytes.NewReader(jpg))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("push: %d", resp.StatusCode)
		}
	}
	if got := accepted(); got != 3 {
		t.Fatalf("diplip_ingest_frames_total{outcome=accepted} = %v, want 3", got)
	}
}

// Without a token, the gateway cannot be driven by another web site or through DNS
// rebinding: JSON endpoints want application/json, the Host must be the gateway's, and a
// cross-site Origin is refused; the gateway's own page (same origin) still works.
func TestTokenlessGatewayRefusesCrossSiteRequests(t *testing.T) {
	l, _ := startLocal(t, "")
	host := strings.TrimPrefix(l.URL, "http://")
	_, port, _ := net.SplitHostPort(host)
	post := func(ct, hostHeader, origin string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, l.URL+"/v1/streams", strings.NewReader(`{"name":"`+testkit.Name("x")+`","partitions":1}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if hostHeader != "" {
			req.Host = hostHeader
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, ct, host, origin string
		code                   int
		want                   string
	}{
		{"no content type (a form or a text/plain post)", "", "", "", http.StatusUnsupportedMediaType, "application/json"},
		{"text/plain", "text/plain", "", "", http.StatusUnsupportedMediaType, "application/json"},
		{"a rebinding host name", "application/json", "evil.example:" + port, "", http.StatusMisdirectedRequest, "--allow-host evil.example"},
		{"a cross-site origin", "application/json", "", "http://evil.example", http.StatusForbidden, "--allow-origin"},
		{"the dashboard itself", "application/json", "", l.URL, http.StatusCreated, ""},
		{"localhost on the same port", "application/json; charset=utf-8", "localhost:" + port, "", http.StatusCreated, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(tc.ct, tc.host, tc.origin)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s; want %d mentioning %q", code, body, tc.code, tc.want)
			}
		})
	}
}

// Pulled cameras: a stream with a camera cannot be deleted from under it, and a camera
// removed while it is being added is not left running without its record (nothing keeps
// writing to the stream afterwards).
func TestCameraLifecycleGaps(t *testing.T) {
	ctx := context.Background()
	n, c, file := startWithCameras(t)
	stream := testkit.Name("cams")
	st, err := c.CreateStream(ctx, api.StreamRequest{Name: stream, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddCamera(ctx, api.CameraRequest{ID: "door", Stream: stream, URL: file, Loop: true, FPS: 10}); err != nil {
		t.Fatal(err)
	}
	err = c.DeleteStream(ctx, stream)
	wantAPIError(t, err, http.StatusConflict, "diplip camera rm door")

	var wg sync.WaitGroup
	for i := range 8 {
		id := fmt.Sprintf("race-%d", i)
		wg.Go(func() {
			_, _ = c.AddCamera(ctx, api.CameraRequest{ID: id, Stream: stream, URL: file, Loop: true, FPS: 10})
		})
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			_ = c.RemoveCamera(ctx, id)
		})
	}
	wg.Wait()
	cams, err := c.Cameras(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, cam := range cams {
		if err := c.RemoveCamera(ctx, cam.ID); err != nil {
			t.Fatal(err)
		}
	}
	kc := kafkaclient.New(n.Brokers(), "test-frames")
	defer kc.Close()
	count := func() int64 {
		v, err := kc.StoredRecords(st.Topic)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := count()
	time.Sleep(2 * time.Second)
	if after := count(); after != before {
		t.Fatalf("%d frames written after every camera was removed: a puller was left running", after-before)
	}
	if err := c.DeleteStream(ctx, stream); err != nil {
		t.Fatalf("deleting the stream once its cameras are gone: %v", err)
	}
}
