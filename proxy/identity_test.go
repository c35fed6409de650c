package proxy_test

import (
	"net/http"
	"strings"
	"testing"

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
	for _, c := range resp.Cookies() {
		if c.Name == "vigie_id" {
			return c
		}
	}
	return nil
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
	// Next page, no consent signal: the ledger remembers, same visitor.
	if c2 := postSnippet(t, in, snippetBatch("Later", ""), id); c2 == nil || c2.Value != id {
		t.Fatalf("cookie not kept: %+v", c2)
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
	if c2 := postSnippet(t, in, snippetBatch("Later", `{"gpc":true}`), c.Value); c2 == nil || c2.MaxAge < 0 {
		t.Fatalf("GPC alone cleared the visitor cookie: %+v", c2)
	}
	for _, ev := range adminEvents(t, in, "site=demo") {
		ps, _ := ev["purposes"].([]any)
		if ev["mode"] != "pseudonymous" || len(ps) != 2 { // necessary, analytics
			t.Errorf("%v: mode %v purposes %v, want analytics without marketing", ev["name"], ev["mode"], ps)
		}
	}
}
