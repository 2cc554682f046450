package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/api"
	"github.com/diplip/diplip/api/client"
)

// seen is what the fake gateway saw of one request.
type seen struct {
	method, path, contentType, auth string
	query                           url.Values
	body                            string
}

// fakeGateway answers every request with status, header and body, and sends what it saw
// of the request. It checks how the client builds requests; the real endpoints are tested
// against Kafka in ingest and cmd/diplip.
func fakeGateway(t *testing.T, status int, header map[string]string, body string) (*httptest.Server, <-chan seen) {
	t.Helper()
	requests := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		requests <- seen{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), r.Header.Get("Authorization"), r.URL.Query(), string(b)}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, requests
}

func TestPushFrame(t *testing.T) {
	capture := time.UnixMilli(1_790_000_000_123)
	for _, tc := range []struct {
		name      string
		frame     client.Frame
		status    int
		header    map[string]string
		answer    string
		wantQuery url.Values
		wantCT    string
		wantAck   api.FrameAck
		wantErr   *client.Error
	}{
		{
			name:      "stored, numbered by the gateway",
			frame:     client.Frame{Camera: "door", Image: []byte("jpeg bytes")},
			status:    http.StatusCreated,
			answer:    `{"camera":"door","seq":17,"partition":1,"offset":42}`,
			wantQuery: url.Values{"camera": {"door"}},
			wantCT:    "image/jpeg",
			wantAck:   api.FrameAck{Camera: "door", Seq: 17, Partition: 1, Offset: 42},
		},
		{
			name:      "own seq, capture time and PNG",
			frame:     client.Frame{Camera: "door", Seq: 9, CaptureTime: capture, Image: []byte("png bytes"), ContentType: "image/png"},
			status:    http.StatusCreated,
			answer:    `{"camera":"door","seq":9,"partition":0,"offset":3}`,
			wantQuery: url.Values{"camera": {"door"}, "seq": {"9"}, "ts": {"1790000000123"}},
			wantCT:    "image/png",
			wantAck:   api.FrameAck{Camera: "door", Seq: 9, Offset: 3},
		},
		{
			name:      "Kafka did not take it: retry",
			frame:     client.Frame{Camera: "door", Image: []byte("jpeg bytes")},
			status:    http.StatusServiceUnavailable,
			header:    map[string]string{"Retry-After": "2"},
			answer:    `{"error":"kafka did not acknowledge the frame; retry later"}`,
			wantQuery: url.Values{"camera": {"door"}},
			wantCT:    "image/jpeg",
			wantErr:   &client.Error{Status: 503, Message: "kafka did not acknowledge the frame; retry later", RetryAfter: 2 * time.Second},
		},
		{
			name:      "bad frame",
			frame:     client.Frame{Camera: "door", Image: []byte("not an image")},
			status:    http.StatusBadRequest,
			answer:    `{"error":"body is not a decodable image"}`,
			wantQuery: url.Values{"camera": {"door"}},
			wantCT:    "image/jpeg",
			wantErr:   &client.Error{Status: 400, Message: "body is not a decodable image"},
		},
		{
			name:      "an answer that is not the gateway's",
			frame:     client.Frame{Camera: "door", Image: []byte("jpeg bytes")},
			status:    http.StatusBadGateway,
			answer:    `<html>bad gateway</html>`,
			wantQuery: url.Values{"camera": {"door"}},
			wantCT:    "image/jpeg",
			wantErr:   &client.Error{Status: 502, Message: "POST /v1/streams/lobby%20east/frames?camera=door: 502 Bad Gateway"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, requests := fakeGateway(t, tc.status, tc.header, tc.answer)
			cl, err := client.New(srv.URL, "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			ack, err := cl.PushFrame(context.Background(), "lobby east", tc.frame)
			got := <-requests
			if got.method != http.MethodPost || got.path != "/v1/streams/lobby%20east/frames" {
				t.Errorf("request %s %s, want POST /v1/streams/lobby%%20east/frames", got.method, got.path)
			}
			if got.query.Encode() != tc.wantQuery.Encode() {
				t.Errorf("query %q, want %q", got.query.Encode(), tc.wantQuery.Encode())
			}
			if got.contentType != tc.wantCT || got.auth != "Bearer s3cret" || got.body != string(tc.frame.Image) {
				t.Errorf("Content-Type %q, Authorization %q, body %q", got.contentType, got.auth, got.body)
			}
			if tc.wantErr == nil {
				if err != nil || ack != tc.wantAck {
					t.Fatalf("ack %+v, %v; want %+v", ack, err, tc.wantAck)
				}
				return
			}
			var ce *client.Error
			if !errors.As(err, &ce) || *ce != *tc.wantErr {
				t.Fatalf("error %#v, want %#v", err, tc.wantErr)
			}
		})
	}
}

func TestPushFrameUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	cl, _ := client.New(srv.URL, "")
	_, err := cl.PushFrame(context.Background(), "lobby", client.Frame{Camera: "door", Image: []byte("x")})
	var ce *client.Error
	if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("error %v: want an unreachable gateway, not an answer", err)
	}
}

func TestPushMJPEG(t *testing.T) {
	const stream = "--b\r\nContent-Type: image/jpeg\r\n\r\nxx\r\n--b--\r\n"
	for _, tc := range []struct {
		name     string
		boundary string
		status   int
		header   map[string]string
		answer   string
		wantCT   string
		wantSum  api.MJPEGSummary
		wantErr  *client.Error
	}{
		{
			name:     "whole stream stored",
			boundary: "b",
			status:   http.StatusOK,
			answer:   `{"camera":"door","frames":1,"skipped":0,"first_seq":5,"last_seq":5}`,
			wantCT:   "multipart/x-mixed-replace; boundary=b",
			wantSum:  api.MJPEGSummary{Camera: "door", Frames: 1, FirstSeq: 5, LastSeq: 5},
		},
		{
			name:    "boundary left to the gateway",
			status:  http.StatusOK,
			answer:  `{"camera":"door","frames":1,"first_seq":5,"last_seq":5}`,
			wantSum: api.MJPEGSummary{Camera: "door", Frames: 1, FirstSeq: 5, LastSeq: 5},
		},
		{
			name:     "Kafka stopped taking frames: the summary of those stored comes with the error",
			boundary: "b",
			status:   http.StatusServiceUnavailable,
			header:   map[string]string{"Retry-After": "2"},
			answer:   `{"camera":"door","frames":3,"skipped":1,"first_seq":5,"last_seq":7,"error":"kafka did not acknowledge the frame"}`,
			wantCT:   "multipart/x-mixed-replace; boundary=b",
			wantSum:  api.MJPEGSummary{Camera: "door", Frames: 3, Skipped: 1, FirstSeq: 5, LastSeq: 7, Error: "kafka did not acknowledge the frame"},
			wantErr:  &client.Error{Status: 503, Message: "kafka did not acknowledge the frame", RetryAfter: 2 * time.Second},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, requests := fakeGateway(t, tc.status, tc.header, tc.answer)
			hc := &http.Client{Timeout: time.Nanosecond} // a stream outlives any per-request timeout
			cl, err := client.New(srv.URL, "", client.WithHTTPClient(hc))
			if err != nil {
				t.Fatal(err)
			}
			sum, err := cl.PushMJPEG(context.Background(), "lobby", "door", tc.boundary, strings.NewReader(stream))
			got := <-requests
			if got.method != http.MethodPost || got.path != "/v1/streams/lobby/mjpeg" || got.query.Encode() != "camera=door" {
				t.Errorf("request %s %s?%s", got.method, got.path, got.query.Encode())
			}
			if got.contentType != tc.wantCT || got.auth != "" || got.body != stream {
				t.Errorf("Content-Type %q, Authorization %q, body %q", got.contentType, got.auth, got.body)
			}
			if sum != tc.wantSum {
				t.Errorf("summary %+v, want %+v", sum, tc.wantSum)
			}
			var ce *client.Error
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatal(err)
			case tc.wantErr != nil && (!errors.As(err, &ce) || *ce != *tc.wantErr):
				t.Fatalf("error %#v, want %#v", err, tc.wantErr)
			}
		})
	}
}

func TestNewRejectsANilHTTPClient(t *testing.T) {
	if _, err := client.New("http://127.0.0.1:1", "", client.WithHTTPClient(nil)); err == nil {
		t.Fatal("New accepted WithHTTPClient(nil)")
	}
}
