package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/plugins/crm/delivery/deliverytest"
	"github.com/vigie-dev/vigie/plugins/crm/webhook/webhooktest"
)

// Secrets: specOld is the spec's vector A secret, current a 32-byte one.
var (
	specOld = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	current = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789ABCDEF"))
)

// newConnector returns a connector to url signing with secrets (default:
// current), fast retries, and a captured log.
func newConnector(t *testing.T, url string, mut func(*Config), secrets ...string) (*Connector, *deliverytest.LogBuffer) {
	t.Helper()
	if len(secrets) == 0 {
		secrets = []string{current}
	}
	logs := &deliverytest.LogBuffer{}
	cfg := Config{URL: url}
	for _, s := range secrets {
		cfg.Secrets = append(cfg.Secrets, delivery.SecretSource{Value: delivery.NewSecret(s)})
	}
	cfg.Settings = deliverytest.Settings(logs)
	if mut != nil {
		mut(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, logs
}

func newReceiver(t *testing.T, secrets ...string) *webhooktest.Receiver {
	t.Helper()
	if len(secrets) == 0 {
		secrets = []string{current}
	}
	r, err := webhooktest.New(secrets...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func upsert(subject string) delivery.Change {
	score := 42.5
	return delivery.Change{
		Kind: delivery.KindUpsert, Site: "shop", Subject: subject, EventID: "evt_" + subject, At: at,
		Email: subject + "@example.com", Properties: map[string]any{"firstname": "Jane"},
		Segments: []string{"hot-lead"}, Score: &score,
	}
}

type vector struct {
	Name, Origin, ID, Timestamp, Body, Signature string
	Secrets                                      []string
	Valid                                        bool
}

// TestSignVectors: the signer reproduces the signatures of the Standard
// Webhooks test suites, and the derived rotation vector (new and old
// secret, in that order).
func TestSignVectors(t *testing.T) {
	b, err := os.ReadFile("../../../examples/crm-receiver/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Vectors []vector }
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, v := range doc.Vectors {
		var secrets []string
		switch {
		case strings.HasPrefix(v.Name, "spec vector"):
			secrets = v.Secrets
		case strings.HasPrefix(v.Name, "rotation: sender signs with new and old"):
			secrets = []string{"whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=", specOld}
		default:
			continue
		}
		s, err := NewSigner(secrets...)
		if err != nil {
			t.Fatal(err)
		}
		var ts int64
		fmt.Sscan(v.Timestamp, &ts)
		if got := s.Sign(v.ID, time.Unix(ts, 0), []byte(v.Body)); got != v.Signature {
			t.Errorf("%s: Sign = %q, want %q (%s)", v.Name, got, v.Signature, v.Origin)
		}
		checked++
	}
	if checked != 3 {
		t.Fatalf("checked %d vectors, want 3", checked)
	}
}

// TestMessages: every kind of change arrives as its documented message,
// signed, with webhook-id msg_<change id>.
func TestMessages(t *testing.T) {
	rcv := newReceiver(t)
	c, _ := newConnector(t, rcv.URL, nil)
	base := delivery.Change{Site: "shop", Subject: "p_1", EventID: "e1", At: at, Email: "jane@example.com"}
	with := func(mut func(*delivery.Change)) delivery.Change { ch := base; mut(&ch); return ch }
	tests := []struct {
		change delivery.Change
		want   string
	}{
		{upsert("p_1"), `{"type":"contact.upserted","timestamp":"2026-03-01T12:00:00.000Z","data":{"site":"shop","subject":"p_1","email":"p_1@example.com","properties":{"firstname":"Jane"},"segments":["hot-lead"],"score":42.5}}`},
		{with(func(c *delivery.Change) { c.Kind = delivery.KindUpsert; c.Subject = "p_2" }), `{"type":"contact.upserted","timestamp":"2026-03-01T12:00:00.000Z","data":{"site":"shop","subject":"p_2","email":"jane@example.com","properties":{},"segments":[]}}`},
		{with(func(c *delivery.Change) { c.Kind = delivery.KindDelete }), `{"type":"contact.deleted","timestamp":"2026-03-01T12:00:00.000Z","data":{"site":"shop","subject":"p_1","email":"jane@example.com"}}`},
		{with(func(c *delivery.Change) { c.Kind = delivery.KindUnsubscribe }), `{"type":"contact.unsubscribed","timestamp":"2026-03-01T12:00:00.000Z","data":{"site":"shop","subject":"p_1","email":"jane@example.com"}}`},
		{with(func(c *delivery.Change) { c.Kind = delivery.KindSegmentEntered; c.Segment = "hot-lead" }), `{"type":"segment.entered","timestamp":"2026-03-01T12:00:00.000Z","data":{"site":"shop","subject":"p_1","email":"jane@example.com","segment":"hot-lead"}}`},
		{with(func(c *delivery.Change) { c.Kind = delivery.KindSegmentExited; c.Segment = "hot-lead"; c.Email = "" }), `{"type":"segment.exited","timestamp":"2026-03-01T12:00:00.000Z","data":{"site":"shop","subject":"p_1","segment":"hot-lead"}}`},
		{with(func(c *delivery.Change) {
			c.Kind = delivery.KindConsentChanged
			c.Purposes = []string{"analytics", "marketing"}
		}), `{"type":"consent.changed","timestamp":"2026-03-01T12:00:00.000Z","data":{"site":"shop","subject":"p_1","email":"jane@example.com","purposes":["analytics","marketing"]}}`},
	}
	var changes []delivery.Change
	for _, tt := range tests {
		changes = append(changes, tt.change)
	}
	results, err := c.Deliver(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]webhooktest.Received{}
	for _, m := range rcv.Messages() {
		got[m.ID] = m
	}
	for i, tt := range tests {
		if results[i].Outcome != delivery.Done || results[i].ID != tt.change.ID() {
			t.Errorf("change %d: %+v", i, results[i])
		}
		m, ok := got[MessageID(tt.change)]
		if !ok {
			t.Errorf("change %d: no message with webhook-id %s", i, MessageID(tt.change))
			continue
		}
		if string(m.Body) != tt.want {
			t.Errorf("change %d body\n got %s\nwant %s", i, m.Body, tt.want)
		}
		if ua := m.Header.Get("User-Agent"); ua != userAgent {
			t.Errorf("User-Agent %q", ua)
		}
	}
	if rcv.Rejected() != 0 {
		t.Fatalf("%d signatures rejected", rcv.Rejected())
	}
}

// TestRotation: with two secrets, each message carries two signatures; a
// receiver that knows only the old or only the new one verifies it.
func TestRotation(t *testing.T) {
	for _, known := range []string{specOld, current} {
		rcv := newReceiver(t, known)
		c, _ := newConnector(t, rcv.URL, nil, current, specOld)
		res, _ := c.Deliver(context.Background(), []delivery.Change{upsert("p1")})
		if res[0].Outcome != delivery.Done || rcv.Rejected() != 0 {
			t.Fatalf("receiver knowing one secret: %+v, %d rejected", res[0], rcv.Rejected())
		}
		if sig := rcv.Messages()[0].Header.Get(HeaderSignature); len(strings.Fields(sig)) != 2 {
			t.Fatalf("signature header %q, want two entries", sig)
		}
	}
	// A receiver with an unrelated secret refuses.
	rcv := newReceiver(t, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	c, _ := newConnector(t, rcv.URL, nil, current, specOld)
	res, _ := c.Deliver(context.Background(), []delivery.Change{upsert("p1")})
	if res[0].Outcome != delivery.Failed || res[0].Retryable || res[0].Status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %+v", res[0])
	}
}

// TestStatusClasses: the receiver's answers drive retries as specified.
func TestStatusClasses(t *testing.T) {
	tests := []struct {
		name       string
		script     []webhooktest.Reply
		outcome    delivery.Outcome
		retryable  bool
		deliveries int
		minElapsed time.Duration
		retryAfter time.Duration
		state      delivery.State
	}{
		{"500 retried", []webhooktest.Reply{{Status: 500}}, delivery.Done, false, 2, 0, 0, delivery.StateOK},
		{"503 twice retried", []webhooktest.Reply{{Status: 503}, {Status: 503}}, delivery.Done, false, 3, 0, 0, delivery.StateOK},
		{"500 thrice gives up retryable", []webhooktest.Reply{{Status: 500}, {Status: 500}, {Status: 500}}, delivery.Failed, true, 3, 0, 0, delivery.StateOK},
		{"400 final", []webhooktest.Reply{{Status: 400}}, delivery.Failed, false, 1, 0, 0, delivery.StateOK},
		{"404 final", []webhooktest.Reply{{Status: 404}}, delivery.Failed, false, 1, 0, 0, delivery.StateOK},
		{"422 final", []webhooktest.Reply{{Status: 422}}, delivery.Failed, false, 1, 0, 0, delivery.StateOK},
		{"501 final", []webhooktest.Reply{{Status: 501}}, delivery.Failed, false, 1, 0, 0, delivery.StateOK},
		{"408 retried", []webhooktest.Reply{{Status: 408}}, delivery.Done, false, 2, 0, 0, delivery.StateOK},
		{"423 retried", []webhooktest.Reply{{Status: 423}}, delivery.Done, false, 2, 0, 0, delivery.StateOK},
		{"429 Retry-After honoured", []webhooktest.Reply{{Status: 429, RetryAfter: "1"}}, delivery.Done, false, 2, time.Second, 0, delivery.StateOK},
		{"429 HTTP-date Retry-After honoured", []webhooktest.Reply{{Status: 429, RetryAfter: "http-date+2s"}}, delivery.Done, false, 2, 900 * time.Millisecond, 0, delivery.StateOK},
		{"429 long Retry-After handed back", []webhooktest.Reply{{Status: 429, RetryAfter: "120"}}, delivery.Failed, true, 1, 0, 120 * time.Second, delivery.StateThrottled},
		{"502 throttles then succeeds", []webhooktest.Reply{{Status: 502}}, delivery.Done, false, 2, 0, 0, delivery.StateOK},
		{"504 throttles then succeeds", []webhooktest.Reply{{Status: 504}}, delivery.Done, false, 2, 0, 0, delivery.StateOK},
		{"redirect is a final failure", []webhooktest.Reply{{Status: 302, Location: "http://169.254.169.254/"}}, delivery.Failed, false, 1, 0, 0, delivery.StateOK},
		{"410 disables", []webhooktest.Reply{{Status: 410}}, delivery.Failed, false, 1, 0, 0, delivery.StateDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t)
			c, _ := newConnector(t, rcv.URL, nil)
			for i, r := range tt.script {
				if r.RetryAfter == "http-date+2s" {
					tt.script[i].RetryAfter = time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)
				}
			}
			rcv.Script(tt.script...)
			ch := upsert("p1")
			start := time.Now()
			res, err := c.Deliver(context.Background(), []delivery.Change{ch})
			elapsed := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.Outcome != tt.outcome || (r.Outcome == delivery.Failed && r.Retryable != tt.retryable) {
				t.Fatalf("result %+v, want %s retryable=%v", r, tt.outcome, tt.retryable)
			}
			if n := rcv.Deliveries(MessageID(ch)); n != tt.deliveries {
				t.Errorf("deliveries %d, want %d", n, tt.deliveries)
			}
			if elapsed < tt.minElapsed {
				t.Errorf("took %v, Retry-After asked for %v", elapsed, tt.minElapsed)
			}
			if tt.retryAfter > 0 && (r.RetryAfter < tt.retryAfter-2*time.Second || elapsed > time.Second) {
				t.Errorf("RetryAfter %v after %v, want %v handed back at once", r.RetryAfter, elapsed, tt.retryAfter)
			}
			if msgs := rcv.Messages(); (tt.outcome == delivery.Done) != (len(msgs) == 1) {
				t.Errorf("%d messages recorded", len(msgs))
			}
			if s := c.Status(); s.State != tt.state {
				t.Errorf("state %s (%s), want %s", s.State, s.Reason, tt.state)
			}
		})
	}
}

// TestGoneStaysDisabled: after a 410 nothing more is sent, every change
// fails with the reason, and the status says so.
func TestGoneStaysDisabled(t *testing.T) {
	rcv := newReceiver(t)
	c, _ := newConnector(t, rcv.URL, nil)
	rcv.Script(webhooktest.Reply{Status: http.StatusGone})
	_, _ = c.Deliver(context.Background(), []delivery.Change{upsert("p1")})
	before := rcv.Requests()
	res, _ := c.Deliver(context.Background(), []delivery.Change{upsert("p2"), upsert("p3")})
	if rcv.Requests() != before {
		t.Fatalf("%d requests sent to a disabled endpoint", rcv.Requests()-before)
	}
	for _, r := range res {
		if r.Outcome != delivery.Failed || r.Retryable || !strings.Contains(r.Reason, "410 Gone") {
			t.Fatalf("result %+v", r)
		}
	}
	s := c.Status()
	if s.State != delivery.StateDisabled || !strings.Contains(s.Reason, "410") || s.Failed != 3 {
		t.Fatalf("status %+v", s)
	}
}

// TestIdempotentRedelivery: a change delivered again (the host's
// redelivery after a lost ack) has the same webhook-id, so the receiver
// keeps one message.
func TestIdempotentRedelivery(t *testing.T) {
	rcv := newReceiver(t)
	c, _ := newConnector(t, rcv.URL, nil)
	ch := upsert("p1")
	for range 3 {
		if res, _ := c.Deliver(context.Background(), []delivery.Change{ch}); res[0].Outcome != delivery.Done {
			t.Fatalf("%+v", res[0])
		}
		ch.At = ch.At.Add(time.Minute) // a later redelivery, same change
	}
	if n := len(rcv.Messages()); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
	if n := rcv.Deliveries(MessageID(ch)); n != 3 {
		t.Fatalf("%d deliveries of the id, want 3", n)
	}
}

// TestSlowReceiver: an answer slower than the timeout is a retryable
// timeout.
func TestSlowReceiver(t *testing.T) {
	rcv := newReceiver(t)
	rcv.SetDelay(400 * time.Millisecond)
	c, _ := newConnector(t, rcv.URL, func(c *Config) {
		c.Timeout = delivery.Duration(100 * time.Millisecond)
		c.Retry.MaxAttempts = 2
	})
	res, _ := c.Deliver(context.Background(), []delivery.Change{upsert("p1")})
	if r := res[0]; r.Outcome != delivery.Failed || !r.Retryable || !strings.Contains(r.Reason, "timeout") {
		t.Fatalf("%+v", r)
	}
}

// TestOrderPerContact: one contact's changes arrive in order while
// contacts go in parallel.
func TestOrderPerContact(t *testing.T) {
	rcv := newReceiver(t)
	rcv.SetDelay(2 * time.Millisecond)
	c, _ := newConnector(t, rcv.URL, nil)
	var changes []delivery.Change
	for i := range 30 {
		ch := upsert(fmt.Sprintf("p%d", i%3))
		ch.EventID = fmt.Sprintf("e%02d", i)
		changes = append(changes, ch)
	}
	res, _ := c.Deliver(context.Background(), changes)
	for _, r := range res {
		if r.Outcome != delivery.Done {
			t.Fatalf("%+v", r)
		}
	}
	pos := map[string]int{}
	for i, m := range rcv.Messages() {
		pos[m.ID] = i
	}
	for i := 3; i < len(changes); i++ {
		if pos[MessageID(changes[i-3])] > pos[MessageID(changes[i])] {
			t.Fatalf("change %d of %s arrived before change %d", i, changes[i].Subject, i-3)
		}
	}
}

// TestNothingSecretInLogsOrResults: a receiver that echoes the signing
// secret and the contact's address in its error body; neither shows in
// results, status or logs.
func TestNothingSecretInLogsOrResults(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":"bad secret %s for p1@example.com, signature %s"}`, current, r.Header.Get(HeaderSignature))
	}))
	t.Cleanup(srv.Close)
	c, logs := newConnector(t, srv.URL, nil)
	res, _ := c.Deliver(context.Background(), []delivery.Change{upsert("p1")})
	status, _ := json.Marshal(c.Status())
	out := res[0].Reason + string(status) + logs.String()
	if !strings.Contains(logs.String(), "webhook delivery failed") {
		t.Fatalf("nothing logged: %q", logs.String())
	}
	for _, leak := range []string{strings.TrimPrefix(current, "whsec_"), "p1@example.com", "example.com"} {
		if strings.Contains(out, leak) {
			t.Fatalf("%q leaked into %s", leak, out)
		}
	}
}

// TestSSRF: without allow_private a loopback endpoint is refused before
// any byte is sent; plain http needs allow_private.
func TestSSRF(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		t.Error("the loopback endpoint was reached")
	}))
	t.Cleanup(srv.Close)
	c, _ := newConnector(t, srv.URL, func(c *Config) { c.AllowPrivate = false })
	res, _ := c.Deliver(context.Background(), []delivery.Change{upsert("p1")})
	if r := res[0]; r.Outcome != delivery.Failed || r.Retryable || !strings.Contains(r.Reason, "loopback") {
		t.Fatalf("%+v", r)
	}
	if _, err := New(Config{URL: "http://hooks.example.com/", Secrets: []delivery.SecretSource{{Value: delivery.NewSecret(current)}}}); !errors.Is(err, ErrConfig) {
		t.Fatalf("plain http accepted: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	good := delivery.SecretSource{Value: delivery.NewSecret(current)}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no url", Config{Secrets: []delivery.SecretSource{good}}},
		{"no secret", Config{URL: "https://hooks.example.com/"}},
		{"secret not base64", Config{URL: "https://hooks.example.com/", Secrets: []delivery.SecretSource{{Value: delivery.NewSecret("whsec_???")}}}},
		{"secret too short", Config{URL: "https://hooks.example.com/", Secrets: []delivery.SecretSource{{Value: delivery.NewSecret("whsec_c2hvcnQ=")}}}},
		{"secret env missing", Config{URL: "https://hooks.example.com/", Secrets: []delivery.SecretSource{{Env: "VIGIE_TEST_NO_SUCH_VAR"}}}},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "MDEy") {
			t.Errorf("%s: error shows the secret", tt.name)
		}
	}
}
