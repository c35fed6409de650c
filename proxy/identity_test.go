package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// snippetBatch is a batch as the browser snippet sends it: no identifier.
func snippetBatch(event, consentJSON string) string {
	ctx := `"library":{"name":"vigie.js","version":"1"},"page":{"path":"/p","url":"http://localhost/p"}`
	if consentJSON != "" {
		ctx += `,"consent":` + consentJSON
	}
	return `{"writeKey":"demo","batch":[{"type":"track","event":"` + event + `","context":{` + ctx + `}}]}`
}

// postSnippet sends a snippet batch with an optional cookie and returns the
// visitor cookie the answer sets (nil when none).
func postSnippet(t *testing.T, in *proxytest.Instance, body, cookie string) *http.Cookie {
	t.Helper()
	c, _ := postSnippetStatus(t, in, body, cookie)
	return c
}

// postSnippetStatus is postSnippet that also returns the consent status
// the answer gives the snippet (its Vigie-Consent header).
func postSnippetStatus(t *testing.T, in *proxytest.Instance, body, cookie string) (*http.Cookie, string) {
	t.Helper()
	hdr := http.Header{"Content-Type": {"text/plain"}, "Origin": {"http://localhost:3000"}, "User-Agent": {browserUA}}
	if cookie != "" {
		hdr.Set("Cookie", "vigie_id="+cookie)
	}
	req, _ := http.NewRequest("POST", in.URL+"/v1/b", strings.NewReader(body))
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("snippet batch: %d", resp.StatusCode)
	}
	status := resp.Header.Get("Vigie-Consent")
	if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Vigie-Consent") {
		t.Fatalf("the consent status is not exposed to the snippet: %v", resp.Header)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "vigie_id" {
			return c, status
		}
	}
	return nil, status
}

func TestSnippetIdentityCookieFollowsConsent(t *testing.T) {
	in := proxytest.Start(t)
	// No consent: anonymous, and no cookie.
	if c := postSnippet(t, in, snippetBatch("Before", ""), ""); c != nil {
		t.Fatalf("cookie set before consent: %v", c)
	}
	// Consent to analytics: the server sets the identifier cookie.
	c := postSnippet(t, in, snippetBatch("Consent Updated", `{"analytics":true}`), "")
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge < 30*24*3600 || len(c.Value) != 22 {
		t.Fatalf("identifier cookie: %+v", c)
	}
	id := c.Value
	// Next page, no consent signal: the ledger remembers, same visitor,
	// and the cookie is left as it is (its expiry never moves).
	if c2 := postSnippet(t, in, snippetBatch("Later", ""), id); c2 != nil {
		t.Fatalf("cookie set again on a later hit: %+v", c2)
	}
	// Withdrawal clears the cookie.
	if c3 := postSnippet(t, in, snippetBatch("Consent Updated", `{"analytics":false}`), id); c3 == nil || c3.MaxAge >= 0 {
		t.Fatalf("cookie not cleared on withdrawal: %+v", c3)
	}
	// And the ledger now keeps that visitor's later events anonymous, even
	// if the browser sends the old cookie again.
	if c4 := postSnippet(t, in, snippetBatch("After", ""), id); c4 != nil {
		t.Fatalf("cookie set again after withdrawal: %+v", c4)
	}

	evs := adminEvents(t, in, "site=demo")
	byName := map[string]map[string]any{}
	for _, ev := range evs {
		name := ev["name"].(string)
		if _, seen := byName[name]; !seen || name != "Consent Updated" {
			byName[name] = ev
		}
	}
	if len(evs) != 5 {
		t.Fatalf("stored %d events, want 5", len(evs))
	}
	for name, want := range map[string]string{"Before": "anonymous", "Later": "pseudonymous", "After": "anonymous"} {
		ev := byName[name]
		if ev["mode"] != want {
			t.Errorf("%s: mode %v, want %s", name, ev["mode"], want)
		}
		if want == "anonymous" && (ev["anonymous_id"] != nil || ev["subject"] != nil) {
			t.Errorf("%s: anonymous event has an identifier: %v", name, ev)
		}
	}
	if later := byName["Later"]; later["anonymous_id"] == id || later["anonymous_id"] == nil {
		t.Fatalf("cookie id not pseudonymized: %v", later["anonymous_id"])
	}
}

func TestLedgerAppliesToLaterEventsOfServerSDKs(t *testing.T) {
	in := proxytest.Start(t)
	post := func(body string) {
		if code, b := in.Post("/v1/track", "demo", body); code != 200 {
			t.Fatalf("track: %d %s", code, b)
		}
	}
	post(`{"event":"Opted In","userId":"u1","context":{"consent":{"analytics":true,"marketing":true}}}`)
	post(`{"event":"Plain","userId":"u1"}`)
	post(`{"event":"Plain","userId":"u2"}`)
	post(`{"event":"Opted Out","userId":"u1","context":{"consent":{"marketing":false,"analytics":true}}}`)
	post(`{"event":"Plain again","userId":"u1"}`)
	got := map[string][]any{}
	for _, ev := range adminEvents(t, in, "site=demo") {
		key := ev["name"].(string)
		if ev["user_id"] == nil {
			key += "/anonymous"
		}
		purposes, _ := ev["purposes"].([]any)
		got[key] = purposes
	}
	if p := got["Plain"]; len(p) != 3 { // necessary, analytics, marketing from the ledger
		t.Fatalf("u1's later event did not get its recorded consent: %v (all: %v)", p, got)
	}
	if _, ok := got["Plain/anonymous"]; !ok {
		t.Fatalf("another user got u1's consent: %v", got)
	}
	if p := got["Plain again"]; len(p) != 2 {
		t.Fatalf("withdrawal of marketing not applied at once: %v", p)
	}
}

func TestSnippetGPCDeniesMarketingWithoutRecordingAChoice(t *testing.T) {
	in := proxytest.Start(t)
	c := postSnippet(t, in, snippetBatch("Consent Updated", `{"analytics":true,"marketing":true,"gpc":true}`), "")
	if c == nil {
		t.Fatal("no cookie after consent")
	}
	// A later hit reporting only the browser's GPC setting keeps the
	// visitor (it is not a refusal) and still denies marketing.
	if c2, status := postSnippetStatus(t, in, snippetBatch("Later", `{"gpc":true}`), c.Value); c2 != nil || !strings.HasPrefix(status, "granted; expires=") {
		t.Fatalf("GPC alone touched the visitor cookie: %+v, status %q", c2, status)
	}
	for _, ev := range adminEvents(t, in, "site=demo") {
		ps, _ := ev["purposes"].([]any)
		if ev["mode"] != "pseudonymous" || len(ps) != 2 { // necessary, analytics
			t.Errorf("%v: mode %v purposes %v, want analytics without marketing", ev["name"], ev["mode"], ps)
		}
	}
}

// TestVisitorCookieNotExtended: the cookie set with a consent is never set
// again by the visitor's later hits, so its expiry stays the consent's
// (13 months by default); the snippet is told when that is.
func TestVisitorCookieNotExtended(t *testing.T) {
	in := proxytest.Start(t)
	before := time.Now()
	c, status := postSnippetStatus(t, in, snippetBatch("Consent Updated", `{"analytics":true}`), "")
	if c == nil || c.MaxAge < 394*24*3600 || c.MaxAge > 395*24*3600 {
		t.Fatalf("identifier cookie: %+v", c)
	}
	expires, err := time.Parse(time.RFC3339, strings.TrimPrefix(status, "granted; expires="))
	if err != nil || expires.Sub(before) < 395*24*time.Hour-time.Minute || expires.Sub(before) > 395*24*time.Hour+time.Minute {
		t.Fatalf("status %q, want granted until 13 months from now", status)
	}
	for i := range 3 {
		c2, s2 := postSnippetStatus(t, in, snippetBatch("Page", ""), c.Value)
		if c2 != nil {
			t.Fatalf("hit %d extended the cookie: %+v", i, c2)
		}
		if s2 != status {
			t.Fatalf("hit %d: status %q, want %q", i, s2, status)
		}
	}
	// A browser without a cookie is asked for consent.
	if c3, s3 := postSnippetStatus(t, in, snippetBatch("Page", ""), ""); c3 != nil || s3 != "needed" {
		t.Fatalf("new visitor: cookie %+v, status %q", c3, s3)
	}
}

// TestVisitorCookieLifetime: with a short consent.cookie_lifetime, the
// cookie ends with the consent; a browser that keeps it after that gets it
// cleared and its events anonymous, the snippet is told the consent
// expired, no cookie is set again without a new choice, and a new choice
// starts a new lifetime.
func TestVisitorCookieLifetime(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.Sites[0].Consent.CookieLifetime = config.Duration(2 * time.Second) })
	c, status := postSnippetStatus(t, in, snippetBatch("Consent Updated", `{"analytics":true}`), "")
	if c == nil || c.MaxAge < 1 || c.MaxAge > 2 || c.Expires.IsZero() || time.Until(c.Expires) > 2*time.Second || !strings.HasPrefix(status, "granted") {
		t.Fatalf("cookie %+v, status %q: want it to end with the consent, 2s from now", c, status)
	}
	if c2 := postSnippet(t, in, snippetBatch("Within", ""), c.Value); c2 != nil {
		t.Fatalf("cookie extended: %+v", c2)
	}
	// Cookie dates are whole seconds, rounded down: the consent itself ends
	// within the second after.
	time.Sleep(time.Until(c.Expires) + 1100*time.Millisecond)
	// The browser should have dropped it; one that did not is told so.
	c3, s3 := postSnippetStatus(t, in, snippetBatch("After", ""), c.Value)
	if c3 == nil || c3.MaxAge >= 0 || s3 != "expired" {
		t.Fatalf("after the lifetime: cookie %+v, status %q; want it cleared and consent expired", c3, s3)
	}
	if c4, s4 := postSnippetStatus(t, in, snippetBatch("After again", ""), ""); c4 != nil || s4 != "needed" {
		t.Fatalf("without the cookie: %+v, status %q; want no cookie and consent needed", c4, s4)
	}
	c5, s5 := postSnippetStatus(t, in, snippetBatch("Consent Updated", `{"analytics":true}`), "")
	if c5 == nil || c5.Value == c.Value || !strings.HasPrefix(s5, "granted") {
		t.Fatalf("new consent: cookie %+v, status %q", c5, s5)
	}
	modes := map[string]any{}
	for _, ev := range adminEvents(t, in, "site=demo") {
		modes[ev["name"].(string)] = ev["mode"]
	}
	if modes["Within"] != "pseudonymous" || modes["After"] != "anonymous" || modes["After again"] != "anonymous" {
		t.Fatalf("modes %v: the consent must end with its lifetime", modes)
	}
}
