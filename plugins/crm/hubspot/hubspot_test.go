package hubspot

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/plugins/crm/delivery/deliverytest"
	"github.com/vigie-dev/vigie/plugins/crm/hubspot/hubspottest"
)

const token = "pat-na1-8c4e1f2a-0b9d-4c3e-a7f6-5d2c1b0a9e8f"

// setup starts a fake HubSpot and a connector to it.
func setup(t *testing.T, mut func(*Config)) (*Connector, *hubspottest.Server, *deliverytest.LogBuffer) {
	t.Helper()
	srv := hubspottest.New(token)
	t.Cleanup(srv.Close)
	logs := &deliverytest.LogBuffer{}
	cfg := Config{Token: delivery.SecretSource{Value: delivery.NewSecret(token)}, BaseURL: srv.URL}
	cfg.Settings = deliverytest.Settings(logs)
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

func upsert(i int) delivery.Change {
	score := float64(i)
	return delivery.Change{
		Kind: delivery.KindUpsert, Site: "shop", Subject: fmt.Sprintf("p%03d", i), EventID: "e1",
		Email: fmt.Sprintf("Contact%03d@Example.com", i), Properties: map[string]any{"firstname": "Jane", "plan": "pro"},
		Segments: []string{"hot-lead"}, Score: &score,
	}
}

func change(kind delivery.Kind, i int, mut func(*delivery.Change)) delivery.Change {
	c := delivery.Change{Kind: kind, Site: "shop", Subject: fmt.Sprintf("p%03d", i), EventID: "e-" + string(kind),
		Email: fmt.Sprintf("contact%03d@example.com", i)}
	if mut != nil {
		mut(&c)
	}
	return c
}

// deliver and allDone are deliverytest's, for this connector.
func deliver(t *testing.T, c *Connector, changes ...delivery.Change) []delivery.Result {
	t.Helper()
	return deliverytest.Deliver(t, c, changes...)
}

var allDone = deliverytest.AllDone

// TestUpsertBatching: 250 contacts go in batches of 100, 100 and 50,
// each contact created once with its properties, segments, score and
// the change's id as objectWriteTraceId.
func TestUpsertBatching(t *testing.T) {
	c, srv, _ := setup(t, func(c *Config) { c.Segments = []string{"hot-lead", "pricing-interest"} })
	var changes []delivery.Change
	for i := range 250 {
		changes = append(changes, upsert(i))
	}
	allDone(t, deliver(t, c, changes...))
	if got := srv.BatchSizes(); !slices.Equal(got, []int{100, 100, 50}) {
		t.Fatalf("batch sizes %v", got)
	}
	if srv.Contacts() != 250 || srv.Creates() != 250 {
		t.Fatalf("%d contacts, %d creates", srv.Contacts(), srv.Creates())
	}
	got, ok := srv.Contact("contact007@example.com")
	if !ok {
		t.Fatal("contact missing")
	}
	want := map[string]string{
		"email": "contact007@example.com", "firstname": "Jane", "plan": "pro", "vigie_score": "7",
		"vigie_marketing_consent": "true", "vigie_segment_hot_lead": "true", "vigie_segment_pricing_interest": "false",
	}
	if fmt.Sprint(got.Properties) != fmt.Sprint(want) {
		t.Errorf("properties %v, want %v", got.Properties, want)
	}
	if !slices.Equal(got.TraceIDs, []string{changes[7].ID()}) {
		t.Errorf("trace ids %v", got.TraceIDs)
	}
	if s := c.Status(); s.Delivered != 250 || s.State != delivery.StateOK || s.RateLimit.Limit != 100 {
		t.Errorf("status %+v", s)
	}
}

// TestPropertiesCreatedOnce: Vigie's properties, a missing mapped
// property and the group are created once, with their types; existing
// properties are left alone.
func TestPropertiesCreatedOnce(t *testing.T) {
	c, srv, _ := setup(t, nil)
	allDone(t, deliver(t, c, upsert(1), upsert(2)))
	allDone(t, deliver(t, c, upsert(3), change(delivery.KindConsentChanged, 3, func(c *delivery.Change) { c.Purposes = []string{"marketing", "analytics"} })))
	if n := srv.Requests("GET " + hubspottest.PathProperties); n != 1 {
		t.Errorf("property list fetched %d times", n)
	}
	// vigie_score, vigie_marketing_consent, vigie_segment_hot_lead, plan;
	// then vigie_consent_purposes.
	if n := srv.Requests("POST " + hubspottest.PathProperties); n != 5 {
		t.Errorf("%d properties created, want 5", n)
	}
	if n := srv.Requests("POST " + hubspottest.PathGroups); n != 1 || !srv.HasGroup("vigie") {
		t.Errorf("group created %d times", n)
	}
	tests := []struct{ name, typ, fieldType string }{
		{"vigie_score", "number", "number"},
		{"vigie_marketing_consent", "bool", "booleancheckbox"},
		{"vigie_segment_hot_lead", "bool", "booleancheckbox"},
		{"vigie_consent_purposes", "string", "text"},
		{"plan", "string", "text"},
		{"firstname", "string", "text"},
	}
	for _, tt := range tests {
		p, ok := srv.Property(tt.name)
		if !ok || p.Type != tt.typ || p.FieldType != tt.fieldType {
			t.Errorf("property %s: %+v, %v", tt.name, p, ok)
		}
		if ok && tt.name != "firstname" && p.GroupName != "vigie" {
			t.Errorf("property %s in group %s", tt.name, p.GroupName)
		}
	}
	if got, _ := srv.Contact("contact003@example.com"); got.Properties["vigie_consent_purposes"] != "analytics;marketing" {
		t.Errorf("purposes %q", got.Properties["vigie_consent_purposes"])
	}
}

// TestPropertyDeletedMeanwhile: a property removed in HubSpot after it
// was cached is recreated and the batch goes through.
func TestPropertyDeletedMeanwhile(t *testing.T) {
	c, srv, _ := setup(t, nil)
	allDone(t, deliver(t, c, upsert(1)))
	srv.Wipe() // the account loses every custom property
	allDone(t, deliver(t, c, upsert(2)))
	if _, ok := srv.Property("vigie_score"); !ok {
		t.Fatal("property not recreated")
	}
}

// TestPartialSuccess: per-input errors of a 207 are read; only the
// retryable failure is sent again, the invalid address fails finally,
// and nothing is created twice.
func TestPartialSuccess(t *testing.T) {
	c, srv, _ := setup(t, nil)
	changes := []delivery.Change{upsert(1), upsert(2), upsert(3)}
	srv.FailEmail("contact002@example.com", 1)
	srv.RejectEmail("contact003@example.com", "Email address contact003@example.com is invalid")
	res := deliver(t, c, changes...)
	if res[0].Outcome != delivery.Done || res[1].Outcome != delivery.Done {
		t.Fatalf("results %+v", res)
	}
	if r := res[2]; r.Outcome != delivery.Failed || r.Retryable || r.Status != http.StatusMultiStatus ||
		!strings.Contains(r.Reason, "VALIDATION_ERROR") || strings.Contains(r.Reason, "contact003") {
		t.Fatalf("invalid input: %+v", r)
	}
	if got := srv.BatchSizes(); !slices.Equal(got, []int{3, 1}) {
		t.Fatalf("batch sizes %v, want the retry to hold only the failed input", got)
	}
	if srv.Creates() != 2 {
		t.Fatalf("%d creates", srv.Creates())
	}
}

// TestWholeBatchRejected: when one bad input fails a whole batch (400),
// the batch is split until the bad input is alone; the others succeed.
func TestWholeBatchRejected(t *testing.T) {
	c, srv, _ := setup(t, nil)
	srv.StrictBatch(true)
	var changes []delivery.Change
	for i := range 8 {
		changes = append(changes, upsert(i))
	}
	srv.RejectEmail("contact005@example.com", "Email address is invalid")
	res := deliver(t, c, changes...)
	for i, r := range res {
		if (i == 5) != (r.Outcome == delivery.Failed) || (i == 5 && r.Retryable) {
			t.Fatalf("change %d: %+v", i, r)
		}
	}
	if srv.Creates() != 7 {
		t.Fatalf("%d creates", srv.Creates())
	}
}

// TestRateLimitPolicies: TEN_SECONDLY_ROLLING waits and retries; DAILY
// pauses the destination until midnight, says so in the status, and
// sends nothing while paused.
func TestRateLimitPolicies(t *testing.T) {
	nextMidnightUTC := func() time.Time {
		n := time.Now().UTC()
		return time.Date(n.Year(), n.Month(), n.Day()+1, 0, 0, 0, 0, time.UTC)
	}
	tests := []struct {
		name       string
		prepare    func(*hubspottest.Server)
		done       bool
		minElapsed time.Duration
		paused     bool
	}{
		{"secondly waits the announced interval", func(s *hubspottest.Server) {
			s.SetInterval(300*time.Millisecond, 100)
			s.RateLimitNext(hubspottest.PolicySecondly)
		}, true, 300 * time.Millisecond, false},
		{"secondly honours Retry-After", func(s *hubspottest.Server) {
			s.Inject(hubspottest.PathBatchUpsert, hubspottest.Reply{Status: 429, Header: http.Header{"Retry-After": {"1"}},
				Body: `{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}`})
		}, true, time.Second, false},
		{"daily pauses", func(s *hubspottest.Server) { s.RateLimitNext(hubspottest.PolicyDaily) }, false, 0, true},
		{"daily remaining 0 pauses", func(s *hubspottest.Server) { s.SetDailyLimit(1) }, true, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, srv, logs := setup(t, nil)
			allDone(t, deliver(t, c, upsert(0))) // properties known
			tt.prepare(srv)
			start := time.Now()
			res := deliver(t, c, upsert(1), upsert(2))
			if elapsed := time.Since(start); elapsed < tt.minElapsed {
				t.Errorf("retried after %v, want at least %v", elapsed, tt.minElapsed)
			}
			for _, r := range res {
				if (r.Outcome == delivery.Done) != tt.done {
					t.Fatalf("result %+v", r)
				}
				if !tt.done && (!r.Retryable || r.RetryAfter < time.Until(nextMidnightUTC())-time.Minute) {
					t.Fatalf("daily: result %+v, want retryable after the reset", r)
				}
			}
			s := c.Status()
			if !tt.paused {
				if s.State == delivery.StatePaused {
					t.Fatalf("paused: %+v", s)
				}
				return
			}
			if s.State != delivery.StatePaused || !s.PausedUntil.Equal(nextMidnightUTC()) || !strings.Contains(s.Reason, "daily") {
				t.Fatalf("status %+v, want paused until %v", s, nextMidnightUTC())
			}
			before := srv.Requests("POST " + hubspottest.PathBatchUpsert)
			res = deliver(t, c, upsert(3), change(delivery.KindDelete, 4, nil))
			if srv.Requests("POST "+hubspottest.PathBatchUpsert) != before || srv.Requests("POST "+hubspottest.PathGDPRDelete) != 0 {
				t.Fatal("requests sent while paused")
			}
			for _, r := range res {
				if r.Outcome != delivery.Failed || !r.Retryable || r.RetryAfter <= 0 {
					t.Fatalf("while paused: %+v", r)
				}
			}
			if strings.Count(logs.String(), "daily API limit reached") != 1 {
				t.Errorf("pause logged %d times", strings.Count(logs.String(), "daily API limit reached"))
			}
		})
	}
}

// TestNextReset: the daily limit resets at midnight in the account's
// time zone, UTC without one.
func TestNextReset(t *testing.T) {
	now := time.Date(2026, 3, 1, 22, 30, 0, 0, time.UTC) // 23:30 in Paris, 14:30 in Los Angeles
	tests := []struct {
		zone string
		want time.Time
	}{
		{"", time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)},
		{"Europe/Paris", time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)},
		{"America/Los_Angeles", time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)},
		{"Asia/Tokyo", time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		c, _, _ := setup(t, func(c *Config) { c.TimeZone = tt.zone; c.Now = func() time.Time { return now } })
		if got := c.nextReset(); !got.Equal(tt.want) {
			t.Errorf("%q: next reset %v, want %v", tt.zone, got.UTC(), tt.want)
		}
	}
}

// TestStatusClasses: whole-request failures follow the retry classes.
func TestStatusClasses(t *testing.T) {
	tests := []struct {
		name      string
		replies   []hubspottest.Reply
		done      bool
		retryable bool
		calls     int
		min       time.Duration
	}{
		{"500 retried", []hubspottest.Reply{{Status: 500}}, true, false, 2, 0},
		{"502 then 503 retried", []hubspottest.Reply{{Status: 502}, {Status: 503}}, true, false, 3, 0},
		{"500 thrice retryable", []hubspottest.Reply{{Status: 500}, {Status: 500}, {Status: 500}}, false, true, 3, 0},
		{"503 Retry-After honoured", []hubspottest.Reply{{Status: 503, Header: http.Header{"Retry-After": {"1"}}}}, true, false, 2, time.Second},
		{"501 final", []hubspottest.Reply{{Status: 501}}, false, false, 1, 0},
		{"400 final", []hubspottest.Reply{{Status: 400, Body: `{"status":"error","message":"Invalid input","category":"VALIDATION_ERROR"}`}}, false, false, 1, 0},
		{"403 final", []hubspottest.Reply{{Status: 403, Body: `{"status":"error","message":"missing scopes","category":"MISSING_SCOPES"}`}}, false, false, 1, 0},
		{"408 retried", []hubspottest.Reply{{Status: 408}}, true, false, 2, 0},
		{"423 retried", []hubspottest.Reply{{Status: 423}}, true, false, 2, 0},
		{"redirect final", []hubspottest.Reply{{Status: 301, Header: http.Header{"Location": {"http://169.254.169.254/"}}, Body: "{}"}}, false, false, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, srv, _ := setup(t, nil)
			allDone(t, deliver(t, c, upsert(0)))
			srv.Inject(hubspottest.PathBatchUpsert, tt.replies...)
			start := time.Now()
			r := deliver(t, c, upsert(1))[0]
			if (r.Outcome == delivery.Done) != tt.done || (!tt.done && r.Retryable != tt.retryable) {
				t.Fatalf("result %+v", r)
			}
			if n := srv.Requests("POST "+hubspottest.PathBatchUpsert) - 1; n != tt.calls {
				t.Errorf("%d calls, want %d", n, tt.calls)
			}
			if time.Since(start) < tt.min {
				t.Errorf("Retry-After not honoured")
			}
		})
	}
}

// TestIdempotentRetry: a batch applied but answered 500 is sent again;
// the upsert by e-mail updates the contact instead of creating another.
func TestIdempotentRetry(t *testing.T) {
	c, srv, _ := setup(t, nil)
	allDone(t, deliver(t, c, upsert(0)))
	srv.Inject(hubspottest.PathBatchUpsert, hubspottest.Reply{Status: 500, AfterApply: true})
	allDone(t, deliver(t, c, upsert(1), upsert(2)))
	allDone(t, deliver(t, c, upsert(1), upsert(2))) // the host's redelivery
	if srv.Creates() != 3 || srv.Contacts() != 3 {
		t.Fatalf("%d creates, %d contacts", srv.Creates(), srv.Contacts())
	}
	got, _ := srv.Contact("contact001@example.com")
	if got.Updates != 2 || !slices.Equal(got.TraceIDs, []string{upsert(1).ID(), upsert(1).ID(), upsert(1).ID()}) {
		t.Fatalf("contact %+v", got)
	}
}

// TestGDPRDelete: erasure calls gdpr-delete by e-mail, in order with the
// batch; an unknown address is blocklisted and done; 404 is done.
func TestGDPRDelete(t *testing.T) {
	c, srv, _ := setup(t, nil)
	res := deliver(t, c,
		upsert(1), change(delivery.KindDelete, 1, nil), // upsert then erase: gone
		change(delivery.KindDelete, 2, nil), upsert(2), // erase then upsert: exists
		change(delivery.KindDelete, 3, nil), // never synced: blocklisted
	)
	allDone(t, res)
	if _, ok := srv.Contact("contact001@example.com"); ok {
		t.Error("contact 1 not deleted")
	}
	if _, ok := srv.Contact("contact002@example.com"); !ok {
		t.Error("contact 2 missing")
	}
	if !srv.Blocklisted("contact003@example.com") {
		t.Error("contact 3 not blocklisted")
	}
	if got := srv.GDPRDeletes(); !slices.Equal(got, []string{"contact001@example.com", "contact002@example.com", "contact003@example.com"}) {
		t.Errorf("gdpr deletes %v", got)
	}
	srv.Inject(hubspottest.PathGDPRDelete, hubspottest.Reply{Status: 404, Body: `{"status":"error","message":"resource not found","category":"OBJECT_NOT_FOUND"}`})
	allDone(t, deliver(t, c, change(delivery.KindDelete, 4, nil)))
	srv.Inject(hubspottest.PathGDPRDelete, hubspottest.Reply{Status: 500}, hubspottest.Reply{Status: 500}, hubspottest.Reply{Status: 500})
	if r := deliver(t, c, change(delivery.KindDelete, 5, nil))[0]; r.Outcome != delivery.Failed || !r.Retryable {
		t.Errorf("failing gdpr-delete: %+v", r)
	}
}

// TestUnsubscribe: objection sets vigie_marketing_consent false, and
// with unsubscribe_all also opts the address out of all e-mail.
func TestUnsubscribe(t *testing.T) {
	for _, all := range []bool{false, true} {
		c, srv, _ := setup(t, func(c *Config) { c.UnsubscribeAll = all })
		allDone(t, deliver(t, c, upsert(1), change(delivery.KindUnsubscribe, 1, nil)))
		got, _ := srv.Contact("contact001@example.com")
		if got.Properties[PropMarketingConsent] != "false" {
			t.Errorf("unsubscribe_all=%v: consent %q", all, got.Properties[PropMarketingConsent])
		}
		if srv.UnsubscribedAll("contact001@example.com") != all {
			t.Errorf("unsubscribe_all=%v: opted out of all = %v", all, !all)
		}
		if got := srv.BatchSizes(); !slices.Equal(got, []int{1}) {
			t.Errorf("upsert and objection of one contact not merged: %v", got)
		}
	}
}

// TestSegments: entering and leaving set the segment's property; a
// segment not synced is ignored; without an address it is not supported.
func TestSegments(t *testing.T) {
	c, srv, _ := setup(t, func(c *Config) { c.Segments = []string{"hot-lead"} })
	seg := func(kind delivery.Kind, i int, name string) delivery.Change {
		return change(kind, i, func(c *delivery.Change) { c.Segment = name })
	}
	allDone(t, deliver(t, c, seg(delivery.KindSegmentEntered, 1, "hot-lead"), seg(delivery.KindSegmentEntered, 2, "hot-lead")))
	allDone(t, deliver(t, c, seg(delivery.KindSegmentExited, 2, "hot-lead"), seg(delivery.KindSegmentEntered, 3, "other")))
	for email, want := range map[string]string{"contact001@example.com": "true", "contact002@example.com": "false"} {
		if got, _ := srv.Contact(email); got.Properties["vigie_segment_hot_lead"] != want {
			t.Errorf("%s: %q", email, got.Properties["vigie_segment_hot_lead"])
		}
	}
	if _, ok := srv.Property("vigie_segment_other"); ok {
		t.Error("an unsynced segment got a property")
	}
	noEmail := seg(delivery.KindSegmentExited, 4, "hot-lead")
	noEmail.Email = ""
	if r := deliver(t, c, noEmail)[0]; r.Outcome != delivery.NotSupported {
		t.Errorf("exit without e-mail: %+v", r)
	}
}

// TestSlowAnswer: an answer slower than the timeout fails retryably.
func TestSlowAnswer(t *testing.T) {
	c, srv, _ := setup(t, func(c *Config) {
		c.Timeout = delivery.Duration(100 * time.Millisecond)
		c.Retry.MaxAttempts = 2
	})
	srv.SetDelay(400 * time.Millisecond)
	r := deliver(t, c, upsert(1))[0]
	if r.Outcome != delivery.Failed || !r.Retryable || !strings.Contains(r.Reason, "timeout") {
		t.Fatalf("%+v", r)
	}
}

// TestNothingSecretInLogsOrErrors: the token and addresses never reach
// results, status or logs, even when HubSpot's error bodies echo them.
func TestNothingSecretInLogsOrErrors(t *testing.T) {
	c, srv, logs := setup(t, nil)
	allDone(t, deliver(t, c, upsert(0)))
	srv.Inject(hubspottest.PathBatchUpsert, hubspottest.Reply{Status: 400,
		Body: `{"status":"error","message":"token ` + token + ` cannot write contact001@example.com","category":"VALIDATION_ERROR"}`})
	srv.Inject(hubspottest.PathGDPRDelete, hubspottest.Reply{Status: 403,
		Body: `{"status":"error","message":"Authorization: Bearer ` + token + ` lacks scope for contact002@example.com"}`})
	res := deliver(t, c, upsert(1), change(delivery.KindDelete, 2, nil))
	bad, _ := New(Config{Token: delivery.SecretSource{Value: delivery.NewSecret("pat-na1-wrong-token-0000")}, BaseURL: srv.URL,
		Settings: delivery.Settings{AllowPrivate: true, Logger: slog.New(slog.NewTextHandler(logs, nil))}})
	res = append(res, deliver(t, bad, upsert(3))...)
	status, _ := json.Marshal([]delivery.Status{c.Status(), bad.Status()})
	out := fmt.Sprint(res) + string(status) + logs.String()
	for _, r := range res {
		if r.Outcome != delivery.Failed || r.Retryable {
			t.Fatalf("%+v", r)
		}
	}
	if !strings.Contains(logs.String(), "failed") {
		t.Fatalf("nothing logged: %s", logs.String())
	}
	for _, leak := range []string{token, "8c4e1f2a", "wrong-token", "contact00", "@example.com"} {
		if strings.Contains(strings.ToLower(out), strings.ToLower(leak)) {
			t.Fatalf("%q leaked: %s", leak, out)
		}
	}
	if !strings.Contains(fmt.Sprint(res), "401") {
		t.Errorf("bad token not reported as 401: %v", res)
	}
}

func TestConfigErrors(t *testing.T) {
	tok := delivery.SecretSource{Value: delivery.NewSecret(token)}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no token", Config{}},
		{"token env missing", Config{Token: delivery.SecretSource{Env: "VIGIE_TEST_NO_TOKEN"}}},
		{"bad time zone", Config{Token: tok, TimeZone: "Mars/Olympus"}},
		{"batch too large", Config{Token: tok, BatchSize: 101}},
		{"colliding segments", Config{Token: tok, Segments: []string{"hot-lead", "hot_lead"}}},
		{"bad group", Config{Token: tok, PropertyGroup: "Vigie Props"}},
		{"plain http", Config{Token: tok, BaseURL: "http://api.hubapi.com"}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
	if p := SegmentProperty("Pricing-Interest.v2"); p != "vigie_segment_pricing_interest_v2" {
		t.Errorf("SegmentProperty = %q", p)
	}
}
