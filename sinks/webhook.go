package sinks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/diplip/diplip/api"
)

// Target is where a sink's events go. Deliver returns nil once the target accepted the
// event; an error that is Permanent is not retried. Deliver is called by one goroutine of
// a partition at a time, but the partitions of a sink call it concurrently.
type Target interface {
	Deliver(ctx context.Context, ev api.SinkEvent) (answer string, err error)
	Close()
}

// Counter is a target that also keeps zone counts (MQTT's retained messages).
type Counter interface {
	PublishCount(ctx context.Context, c api.SinkCount) error
}

// permanentError is an answer that retrying will not change (a 4xx but 408 and 429).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether err is not worth retrying.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// The headers of a webhook request. A receiver verifies a request by computing
// HMAC-SHA256(secret, TIMESTAMP + "." + BODY) in hex, comparing it with the signature
// header (after "sha256=") in constant time, and refusing timestamps too far from now
// (a replayed request); it drops duplicates by the idempotency key.
const (
	HeaderIdempotencyKey = "Idempotency-Key"    // the event's stable id
	HeaderEventID        = "X-Diplip-Event-Id"  // the same
	HeaderTimestamp      = "X-Diplip-Timestamp" // Unix seconds of this attempt
	HeaderSignature      = "X-Diplip-Signature" // sha256=HEX, with a secret only
	HeaderSink           = "X-Diplip-Sink"      // the sink's name
	HeaderAttempt        = "X-Diplip-Attempt"   // 1 for the first try
)

// Sign returns the signature header's value for body sent at timestamp (Unix seconds):
// "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a webhook request's signature; receivers written in Go can use it.
func Verify(secret []byte, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// Webhook posts events as JSON.
type Webhook struct {
	URL     string
	Secret  []byte // empty: unsigned
	Headers map[string]string
	Name    string // the sink's
	Client  *http.Client
}

// NewWebhook returns a webhook target with a client that gives a request 10 s and, unless
// allowLinkLocal, refuses to connect to a link-local address: the check at add time is
// made again on every connection, so a name that later resolves to the cloud metadata
// service (DNS rebinding) is not followed there.
func NewWebhook(name, url string, secret []byte, headers map[string]string, allowLinkLocal bool) *Webhook {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !allowLinkLocal {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			if ap, err := netip.ParseAddrPort(address); err == nil && isLinkLocal(ap.Addr()) {
				return Permanent(fmt.Errorf("webhook: %s is a link-local address (add the sink with --allow-link-local to send there)", ap.Addr()))
			}
			return nil
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	return &Webhook{URL: url, Secret: secret, Headers: headers, Name: name, Client: &http.Client{
		Timeout: 10 * time.Second, Transport: tr,
		// A redirect could lead a signed request anywhere; the target is the URL given.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type attemptKey struct{}

// Deliver posts ev; 2xx is accepted, 408, 429 and 5xx are retried, any other status is
// permanent.
func (w *Webhook) Deliver(ctx context.Context, ev api.SinkEvent) (string, error) {
	body, err := marshal(ev)
	if err != nil {
		return "", Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return "", Permanent(err)
	}
	for k, v := range w.Headers {
		req.Header.Set(k, v)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "diplip-sink")
	req.Header.Set(HeaderIdempotencyKey, ev.ID)
	req.Header.Set(HeaderEventID, ev.ID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSink, w.Name)
	if n, ok := ctx.Value(attemptKey{}).(int); ok {
		req.Header.Set(HeaderAttempt, strconv.Itoa(n))
	}
	if len(w.Secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(w.Secret, ts, body))
	}
	resp, err := w.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	answer := "HTTP " + resp.Status
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return answer, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return answer, fmt.Errorf("webhook answered %s: %s", resp.Status, bytes.TrimSpace(snippet))
	default:
		return answer, Permanent(fmt.Errorf("webhook answered %s: %s", resp.Status, bytes.TrimSpace(snippet)))
	}
}

// Close does nothing; a webhook holds no connection of its own to close.
func (w *Webhook) Close() { w.Client.CloseIdleConnections() }
