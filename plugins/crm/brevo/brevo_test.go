package brevo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/brevo/brevotest"
	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/plugins/crm/delivery/deliverytest"
)

const apiKey = "xkeysib-5f0c2a9e8d7b6a5c4b3a2918f7e6d5c4b3a2918f7e6d5c4b3a2918f7e6d5c4b-AbCdEfGh"

func config(url string, logs *deliverytest.LogBuffer) Config {
	cfg := Config{APIKey: delivery.SecretSource{Value: delivery.NewSecret(apiKey)}, BaseURL: url + "/v3"}
	cfg.Settings = deliverytest.Settings(logs)
	return cfg
}

// setup starts a fake Brevo and a connector to it.
func setup(t *testing.T, mut func(*Config)) (*Connector, *brevotest.Server, *deliverytest.LogBuffer) {
	t.Helper()
	srv := brevotest.New(apiKey)
	t.Cleanup(srv.Close)
	logs := &deliverytest.LogBuffer{}
	cfg := config(srv.URL, logs)
	if mut != nil {
		mut(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, srv, logs
}

func email(i int) string { return fmt.Sprintf("contact%03d@example.com", i) }

func upsert(i int, segments ...string) delivery.Change {
	score := float64(i) + 0.5
	return delivery.Change{
		Kind: delivery.KindUpsert, Site: "shop", Subject: fmt.Sprintf("p%03d", i), EventID: "e1",
		Email:      strings.ToUpper(email(i)[:1]) + email(i)[1:],
		Properties: map[string]any{"firstname": "Jane", "plan": "pro", "vip": true, "orders": 3},
		Segments:   segments, Score: &score,
	}
}

func change(kind delivery.Kind, i int, segment string) delivery.Change {
	return delivery.Change{Kind: kind, Site: "shop", Subject: fmt.Sprintf("p%03d", i), EventID: "e-" + string(kind) + segment,
		Email: email(i), Segment: segment}
}

// deliver and allDone are deliverytest's, for this connector.
func deliver(t *testing.T, c *Connector, changes ...delivery.Change) []delivery.Result {
	t.Helper()
	return deliverytest.Deliver(t, c, changes...)
}

var allDone = deliverytest.AllDone

// TestUpsert: the contact is created with its attributes upper-cased
// and typed, the score, and the lists of its synced segments; missing
// attributes, the folder and the lists are created once.
func TestUpsert(t *testing.T) {
	c, srv, _ := setup(t, func(c *Config) { c.Segments = []string{"hot-lead", "pricing"} })
	allDone(t, deliver(t, c, upsert(1, "hot-lead", "not-synced"), upsert(2)))
	allDone(t, deliver(t, c, upsert(3, "hot-lead", "pricing"), upsert(1, "hot-lead")))
	got, ok := srv.Contact(email(1))
	if !ok {
		t.Fatal("contact missing")
	}
	want := map[string]any{"FIRSTNAME": "Jane", "PLAN": "pro", "VIP": true, "ORDERS": 3.0, "VIGIE_SCORE": 1.5}
	if fmt.Sprint(got.Attributes) != fmt.Sprint(want) {
		t.Errorf("attributes %v, want %v", got.Attributes, want)
	}
	hot, ok := srv.ListByName("Vigie: hot-lead")
	if !ok || hot.FolderID != srv.Folder("Vigie") || !slices.Equal(got.ListIDs, []int64{hot.ID}) {
		t.Errorf("lists %v (hot-lead list %+v)", got.ListIDs, hot)
	}
	if _, ok := srv.ListByName("Vigie: not-synced"); ok {
		t.Error("a list was made for an unsynced segment")
	}
	for name, typ := range map[string]string{"PLAN": "text", "VIP": "boolean", "ORDERS": "float", "VIGIE_SCORE": "float"} {
		if got := srv.Attribute(name); got != typ {
			t.Errorf("attribute %s type %q, want %q", name, got, typ)
		}
	}
	counts := map[string]int{
		brevotest.RouteAttributes: 1, brevotest.RouteCreateAttr: 4, brevotest.RouteFolders: 1,
		brevotest.RouteCreateFolder: 1, brevotest.RouteCreateList: 2, brevotest.RouteCreateContact: 4,
	}
	for route, want := range counts {
		if got := srv.Requests(route); got != want {
			t.Errorf("%s: %d requests, want %d", route, got, want)
		}
	}
	if srv.Creates() != 3 {
		t.Errorf("%d creates", srv.Creates())
	}
	// A new connector (a restart) finds the folder and lists.
	c2, err := New(config(srv.URL, &deliverytest.LogBuffer{}))
	if err != nil {
		t.Fatal(err)
	}
	allDone(t, deliver(t, c2, upsert(4, "hot-lead")))
	if srv.Requests(brevotest.RouteCreateFolder) != 1 || srv.Requests(brevotest.RouteCreateList) != 2 {
		t.Error("folder or list created again after a restart")
	}
}

// TestSegmentLists: entering and leaving go in list calls of at most
// 150 e-mails; an e-mail Brevo cannot add (not a contact yet) is
// created in the list; each contact ends as its last change says.
func TestSegmentLists(t *testing.T) {
	c, srv, _ := setup(t, nil)
	var ups, enters, exits []delivery.Change
	for i := range 200 {
		ups = append(ups, upsert(i))
		enters = append(enters, change(delivery.KindSegmentEntered, i, "x"))
		exits = append(exits, change(delivery.KindSegmentExited, i, "x"))
	}
	allDone(t, deliver(t, c, ups...))
	allDone(t, deliver(t, c, enters...))
	list, _ := srv.ListByName("Vigie: x")
	if n := srv.Requests(brevotest.RouteAddToList); n != 2 {
		t.Errorf("%d add calls for 200 e-mails, want 2", n)
	}
	for i := range 200 {
		if got, _ := srv.Contact(email(i)); !slices.Contains(got.ListIDs, list.ID) {
			t.Fatalf("contact %d not in the list", i)
		}
	}
	allDone(t, deliver(t, c, exits[:160]...))
	if n := srv.Requests(brevotest.RouteRemoveFromList); n != 2 {
		t.Errorf("%d remove calls, want 2", n)
	}
	if got, _ := srv.Contact(email(5)); slices.Contains(got.ListIDs, list.ID) {
		t.Error("contact 5 still in the list")
	}
	creates := srv.Creates()
	res := deliver(t, c,
		change(delivery.KindSegmentEntered, 500, "x"),                                               // not a contact: created in the list
		change(delivery.KindSegmentEntered, 199, "x"),                                               // already in: stays
		change(delivery.KindSegmentEntered, 501, "x"), change(delivery.KindSegmentExited, 501, "x"), // last wins: out
		change(delivery.KindSegmentExited, 198, "x"), upsert(198, "x"), // the later upsert wins: in
		change(delivery.KindSegmentEntered, 502, "x"), change(delivery.KindDelete, 502, ""), // erased: moot
		change(delivery.KindSegmentExited, 170, "x"), // not in the list: done
	)
	allDone(t, res)
	checks := map[int]bool{500: true, 199: true, 198: true, 170: false}
	for i, in := range checks {
		got, ok := srv.Contact(email(i))
		if !ok || slices.Contains(got.ListIDs, list.ID) != in {
			t.Errorf("contact %d: exists %v, lists %v, want in=%v", i, ok, got.ListIDs, in)
		}
	}
	if got, ok := srv.Contact(email(501)); ok && slices.Contains(got.ListIDs, list.ID) {
		t.Error("contact 501 in the list")
	}
	if _, ok := srv.Contact(email(502)); ok {
		t.Error("contact 502 exists after its erasure")
	}
	if n := srv.Creates() - creates; n != 1 {
		t.Errorf("%d contacts created, want 1 (contact 500)", n)
	}
}

// TestBlacklistAndDelete: objection blacklists, erasure deletes; an
// address Brevo does not know is done either way (404), and is not
// created.
func TestBlacklistAndDelete(t *testing.T) {
	c, srv, _ := setup(t, nil)
	allDone(t, deliver(t, c, upsert(1), upsert(2)))
	allDone(t, deliver(t, c,
		change(delivery.KindUnsubscribe, 1, ""), change(delivery.KindUnsubscribe, 9, ""),
		change(delivery.KindDelete, 2, ""), change(delivery.KindDelete, 8, ""),
	))
	if got, _ := srv.Contact(email(1)); !got.EmailBlacklisted {
		t.Error("contact 1 not blacklisted")
	}
	if _, ok := srv.Contact(email(2)); ok {
		t.Error("contact 2 not deleted")
	}
	if srv.Contacts() != 1 || !slices.Equal(srv.Deletes(), []string{email(2)}) {
		t.Errorf("%d contacts, deletes %v", srv.Contacts(), srv.Deletes())
	}
	for _, route := range []string{brevotest.RouteDeleteContact, brevotest.RouteUpdateContact} {
		for _, q := range srv.Queries(route) {
			if q != "identifierType=email_id" {
				t.Errorf("%s with query %q", route, q)
			}
		}
	}
	// In one batch, in order: upsert, erase, upsert again.
	allDone(t, deliver(t, c, upsert(3), change(delivery.KindDelete, 3, ""), upsert(4), change(delivery.KindDelete, 4, ""), upsert(4)))
	if _, ok := srv.Contact(email(3)); ok {
		t.Error("contact 3 exists")
	}
	if _, ok := srv.Contact(email(4)); !ok {
		t.Error("contact 4 missing")
	}
}

// TestConsentChanged: the purposes go to VIGIE_CONSENT_PURPOSES of an
// existing contact; an unknown one is not created.
func TestConsentChanged(t *testing.T) {
	c, srv, _ := setup(t, nil)
	allDone(t, deliver(t, c, upsert(1)))
	cc := func(i int) delivery.Change {
		ch := change(delivery.KindConsentChanged, i, "")
		ch.Purposes = []string{"marketing", "analytics"}
		return ch
	}
	allDone(t, deliver(t, c, cc(1), cc(2)))
	if got, _ := srv.Contact(email(1)); got.Attributes[AttrConsentPurposes] != "analytics;marketing" {
		t.Errorf("attributes %v", got.Attributes)
	}
	if srv.Contacts() != 1 {
		t.Error("consent change created a contact")
	}
}

// TestRateLimit: the x-sib-ratelimit headers are honoured: a 429 waits
// for the reset (Brevo sends no Retry-After) and a reset beyond the
// inline wait is handed back; the status shows the limit.
func TestRateLimit(t *testing.T) {
	c, srv, _ := setup(t, func(c *Config) { c.Concurrency = 1 })
	allDone(t, deliver(t, c, upsert(0))) // attributes known
	srv.SetRateLimit(2, time.Second)
	start := time.Now()
	allDone(t, deliver(t, c, upsert(1), upsert(2), upsert(3), upsert(4)))
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Errorf("4 requests at 2 per second took %v", d)
	}
	if s := c.Status(); s.RateLimit.Limit != 2 {
		t.Errorf("status %+v", s.RateLimit)
	}
	srv.SetRateLimit(1, time.Hour)
	res := deliver(t, c, upsert(5), upsert(6))
	if res[0].Outcome != delivery.Done {
		t.Fatalf("%+v", res[0])
	}
	if r := res[1]; r.Outcome != delivery.Failed || !r.Retryable || r.RetryAfter < 50*time.Minute {
		t.Fatalf("%+v", r)
	}
	if s := c.Status(); s.State != delivery.StateThrottled {
		t.Errorf("state %s", s.State)
	}
}

// TestStatusClasses: failures follow the retry classes.
func TestStatusClasses(t *testing.T) {
	tests := []struct {
		name      string
		replies   []brevotest.Reply
		done      bool
		retryable bool
		calls     int
		min       time.Duration
	}{
		{"500 retried", []brevotest.Reply{{Status: 500}}, true, false, 2, 0},
		{"502 and 504 retried", []brevotest.Reply{{Status: 502}, {Status: 504}}, true, false, 3, 0},
		{"503 thrice retryable", []brevotest.Reply{{Status: 503}, {Status: 503}, {Status: 503}}, false, true, 3, 0},
		{"503 Retry-After honoured", []brevotest.Reply{{Status: 503, Header: http.Header{"Retry-After": {"1"}}}}, true, false, 2, time.Second},
		{"501 final", []brevotest.Reply{{Status: 501}}, false, false, 1, 0},
		{"400 final", []brevotest.Reply{{Status: 400, Body: `{"code":"invalid_parameter","message":"Invalid email address"}`}}, false, false, 1, 0},
		{"402 final", []brevotest.Reply{{Status: 402, Body: `{"code":"not_enough_credits","message":"plan upgrade needed"}`}}, false, false, 1, 0},
		{"408 retried", []brevotest.Reply{{Status: 408}}, true, false, 2, 0},
		{"423 retried", []brevotest.Reply{{Status: 423}}, true, false, 2, 0},
		{"redirect final", []brevotest.Reply{{Status: 307, Header: http.Header{"Location": {"http://10.0.0.1/"}}, Body: "{}"}}, false, false, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, srv, _ := setup(t, nil)
			allDone(t, deliver(t, c, upsert(0)))
			srv.Inject(brevotest.RouteCreateContact, tt.replies...)
			start := time.Now()
			r := deliver(t, c, upsert(1))[0]
			if (r.Outcome == delivery.Done) != tt.done || (!tt.done && r.Retryable != tt.retryable) {
				t.Fatalf("%+v", r)
			}
			if n := srv.Requests(brevotest.RouteCreateContact) - 1; n != tt.calls {
				t.Errorf("%d calls, want %d", n, tt.calls)
			}
			if time.Since(start) < tt.min {
				t.Error("Retry-After not honoured")
			}
		})
	}
	c, srv, _ := setup(t, nil)
	srv.RejectEmail(email(7))
	if r := deliver(t, c, upsert(7))[0]; r.Outcome != delivery.Failed || r.Retryable || r.Status != 400 ||
		!strings.Contains(r.Reason, "Invalid email address") {
		t.Fatalf("invalid address: %+v", r)
	}
}

// TestIdempotentRetry: a create applied but answered 500 is retried as
// an update; the contact exists once.
func TestIdempotentRetry(t *testing.T) {
	c, srv, _ := setup(t, nil)
	allDone(t, deliver(t, c, upsert(0)))
	srv.Inject(brevotest.RouteCreateContact, brevotest.Reply{Status: 500, AfterApply: true})
	allDone(t, deliver(t, c, upsert(1)))
	allDone(t, deliver(t, c, upsert(1)))
	got, _ := srv.Contact(email(1))
	if srv.Creates() != 2 || got.Updates != 2 {
		t.Fatalf("%d creates, %d updates", srv.Creates(), got.Updates)
	}
}

// TestSlowAnswer: an answer slower than the timeout fails retryably.
func TestSlowAnswer(t *testing.T) {
	c, srv, _ := setup(t, func(c *Config) {
		c.Timeout = delivery.Duration(100 * time.Millisecond)
		c.Retry.MaxAttempts = 2
	})
	srv.SetDelay(400 * time.Millisecond)
	r := deliver(t, c, change(delivery.KindDelete, 1, ""))[0]
	if r.Outcome != delivery.Failed || !r.Retryable || !strings.Contains(r.Reason, "timeout") {
		t.Fatalf("%+v", r)
	}
}

// TestNothingSecretInLogsOrErrors: the API key and addresses never reach
// results, status or logs, even when Brevo's error bodies echo them.
func TestNothingSecretInLogsOrErrors(t *testing.T) {
	c, srv, logs := setup(t, nil)
	allDone(t, deliver(t, c, upsert(0)))
	srv.Inject(brevotest.RouteCreateContact, brevotest.Reply{Status: 400,
		Body: `{"code":"invalid_parameter","message":"key ` + apiKey + ` cannot import ` + email(1) + `"}`})
	srv.Inject(brevotest.RouteDeleteContact, brevotest.Reply{Status: 403,
		Body: `{"code":"permission_denied","message":"api-key: ` + apiKey + ` (/v3/contacts/contact002%40example.com)"}`})
	res := deliver(t, c, upsert(1), change(delivery.KindDelete, 2, ""))
	cfg := config(srv.URL, logs)
	cfg.APIKey = delivery.SecretSource{Value: delivery.NewSecret("xkeysib-0000wrongkey-0000")}
	bad, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res = append(res, deliver(t, bad, change(delivery.KindUnsubscribe, 3, ""))...)
	for _, r := range res {
		if r.Outcome != delivery.Failed || r.Retryable {
			t.Fatalf("%+v", r)
		}
	}
	status, _ := json.Marshal([]delivery.Status{c.Status(), bad.Status()})
	out := fmt.Sprint(res) + string(status) + logs.String()
	if !strings.Contains(logs.String(), "brevo delivery failed") {
		t.Fatalf("nothing logged: %s", logs.String())
	}
	for _, leak := range []string{apiKey, "5f0c2a9e", "wrongkey", "contact00", "example.com"} {
		if strings.Contains(out, leak) {
			t.Fatalf("%q leaked: %s", leak, out)
		}
	}
	if !strings.Contains(fmt.Sprint(res), "401") {
		t.Errorf("bad key not reported as 401: %v", res)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no key", Config{}},
		{"key file missing", Config{APIKey: delivery.SecretSource{File: "/nonexistent/brevo-key"}}},
		{"plain http", Config{APIKey: delivery.SecretSource{Value: delivery.NewSecret(apiKey)}, BaseURL: "http://api.brevo.com/v3"}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
	if a := AttributeName("first-name.x"); a != "FIRST_NAME_X" {
		t.Errorf("AttributeName = %q", a)
	}
}
