package site_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/vigie-dev/vigie/internal/chromiumtest"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// browser starts a headless Chromium with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	// Headless Chromium says "HeadlessChrome", which Vigie counts as a
	// bot and does not store: present as the desktop browser it is.
	ctx := chromiumtest.Start(t, 90*time.Second,
		chromedp.UserAgent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"))
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// event is a stored event as the admin API shows it.
type event struct {
	ID          string   `json:"id"`
	Type        string   `json:"type"`
	Name        string   `json:"name"`
	Mode        string   `json:"mode"`
	AnonymousID string   `json:"anonymous_id"`
	UserID      string   `json:"user_id"`
	Subject     string   `json:"subject"`
	Library     string   `json:"library"`
	Vaulted     []string `json:"vaulted_traits"`
	Page        struct{ Path, URL, Search string }
	Traits      json.RawMessage `json:"traits"`
}

// events lists the stored events, oldest first.
func events(t *testing.T, in *proxytest.Instance) []event {
	t.Helper()
	code, body := in.Admin("/admin/v1/events?site=demo&limit=1000")
	if code != 200 {
		t.Fatalf("admin events: %d %s", code, body)
	}
	var out struct{ Events []event }
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(out.Events)-1; i < j; i, j = i+1, j-1 {
		out.Events[i], out.Events[j] = out.Events[j], out.Events[i]
	}
	return out.Events
}

// waitEvent waits until an event matching ok is stored and returns it.
func waitEvent(t *testing.T, in *proxytest.Instance, what string, ok func(event) bool) event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, ev := range events(t, in) {
			if ok(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stored event %s; have %+v\nserver log:\n%s", what, events(t, in), in.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cookies returns the browser's cookies for the server.
func cookies(t *testing.T, ctx context.Context) []*network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Cookies
}

func TestDemoSiteConsentFlowInChromium(t *testing.T) {
	in := proxytest.Start(t)
	ctx := browser(t)
	demo := in.URL + "/demo/"

	// 1. First visit, banner not answered: an anonymous page view, and
	// nothing stored in the browser.
	if err := chromedp.Do(ctx, chromedp.Navigate(demo), chromedp.WaitVisible("#consent-banner")); err != nil {
		t.Fatal(err)
	}
	first := waitEvent(t, in, "first page view", func(e event) bool { return e.Type == "page" })
	if first.Mode != "anonymous" || first.AnonymousID != "" || first.Subject != "" || first.Page.Path != "/demo/" {
		t.Fatalf("first page view before consent: %+v", first)
	}
	if cs := cookies(t, ctx); len(cs) != 0 {
		t.Fatalf("cookies before consent: %+v", cs)
	}
	storage, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie + "|" + localStorage.length + "|" + sessionStorage.length`))
	if err != nil {
		t.Fatal(err)
	}
	if storage != "|0|0" {
		t.Fatalf("the snippet stored something before consent: %q", storage)
	}
	if err := chromedp.Do(ctx, chromedp.Click("#buy")); err != nil {
		t.Fatal(err)
	}
	added := waitEvent(t, in, "Product Added before consent", func(e event) bool { return e.Name == "Product Added" })
	if added.Mode != "anonymous" || added.AnonymousID != "" {
		t.Fatalf("track before consent: %+v", added)
	}

	// 2. Accept: the server sets its HttpOnly first-party cookie.
	if err := chromedp.Do(ctx, chromedp.Click("#accept-all")); err != nil {
		t.Fatal(err)
	}
	consented := waitEvent(t, in, "Consent Updated", func(e event) bool { return e.Name == "Consent Updated" })
	if consented.Mode != "pseudonymous" || consented.AnonymousID == "" {
		t.Fatalf("consent event: %+v", consented)
	}
	var id *network.Cookie
	for _, c := range cookies(t, ctx) {
		if c.Name == "vigie_id" {
			id = c
		}
	}
	if id == nil || !id.HTTPOnly || id.SameSite != network.CookieSameSiteLax {
		t.Fatalf("identifier cookie after consent: %+v", id)
	}

	// 3. Navigate: same visitor on the next page, without any new consent
	// signal (the server's ledger remembers the choice).
	if err := chromedp.Do(ctx, chromedp.Click("#nav-pricing"), chromedp.WaitVisible("#demo-request"), chromedp.Click("#demo-request")); err != nil {
		t.Fatal(err)
	}
	pricing := waitEvent(t, in, "pricing page view", func(e event) bool { return e.Type == "page" && e.Page.Path == "/demo/pricing.html" })
	demoReq := waitEvent(t, in, "Demo Requested", func(e event) bool { return e.Name == "Demo Requested" })
	if pricing.Mode != "pseudonymous" || pricing.AnonymousID != consented.AnonymousID || demoReq.AnonymousID != consented.AnonymousID {
		t.Fatalf("visitor not recognized: consent %s, pricing %+v, demo %+v", consented.AnonymousID, pricing, demoReq)
	}

	// 4. Single-page-app navigation sends a page view.
	if err := chromedp.Do(ctx, chromedp.Click("#nav-docs"), chromedp.WaitVisible("#spa-api"), chromedp.Click("#spa-api")); err != nil {
		t.Fatal(err)
	}
	// (The query string is not kept: "chapter" is not an allowed parameter.)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var docs []event
		for _, e := range events(t, in) {
			if e.Type == "page" && e.Page.Path == "/demo/docs.html" && e.AnonymousID == consented.AnonymousID {
				docs = append(docs, e)
			}
		}
		if len(docs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want the docs page load and one SPA page view, have %+v", docs)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// 5. The newsletter form identifies the visitor: the e-mail goes to the
	// vault, never to the event.
	if err := chromedp.Do(ctx, chromedp.Navigate(demo), chromedp.WaitVisible("#email"),
		chromedp.SendKeys("#email", "ada@example.org"), chromedp.SendKeys("#firstName", "Ada"), chromedp.Click("#subscribe")); err != nil {
		t.Fatal(err)
	}
	ident := waitEvent(t, in, "identify", func(e event) bool { return e.Type == "identify" })
	if ident.AnonymousID != consented.AnonymousID || len(ident.Vaulted) == 0 || strings.Contains(string(ident.Traits), "ada@") {
		t.Fatalf("identify: %+v traits %s", ident, ident.Traits)
	}
	for _, ev := range events(t, in) {
		if ev.Library == "" || !strings.HasPrefix(ev.Library, "vigie.js") {
			t.Errorf("event %s %s not sent by the snippet: library %q", ev.Type, ev.Name, ev.Library)
		}
	}
}

func TestSnippetReadsConsentPlatformsInChromium(t *testing.T) {
	in := proxytest.Start(t)
	ctx := browser(t)
	// The CMP has loaded with no consent and Consent Mode defaults denied:
	// the page view is anonymous and no cookie is set.
	if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+"/demo/cmp.html"), chromedp.WaitVisible("#cmp-accept")); err != nil {
		t.Fatal(err)
	}
	first := waitEvent(t, in, "page view", func(e event) bool { return e.Type == "page" })
	if first.Mode != "anonymous" || first.AnonymousID != "" {
		t.Fatalf("page view under a CMP without consent: %+v", first)
	}
	if cs := cookies(t, ctx); len(cs) != 0 {
		t.Fatalf("cookies without consent: %+v", cs)
	}
	// The visitor accepts in the CMP: a TC string granting TCF purposes
	// 1–11 and a Consent Mode update; the snippet sends them.
	if err := chromedp.Do(ctx, chromedp.Click("#cmp-accept")); err != nil {
		t.Fatal(err)
	}
	upd := waitEvent(t, in, "Consent Updated from the CMP", func(e event) bool { return e.Name == "Consent Updated" })
	if upd.Mode != "pseudonymous" || upd.AnonymousID == "" {
		t.Fatalf("consent from the CMP not applied: %+v", upd)
	}
	var purposes []string
	for _, ev := range rawEvents(t, in) {
		if ev["name"] == "Consent Updated" {
			for _, p := range ev["purposes"].([]any) {
				purposes = append(purposes, p.(string))
			}
		}
	}
	slices.Sort(purposes)
	if strings.Join(purposes, ",") != "analytics,marketing,necessary,personalization" {
		t.Fatalf("purposes from TCF + Consent Mode: %v", purposes)
	}
	found := false
	for _, c := range cookies(t, ctx) {
		found = found || (c.Name == "vigie_id" && c.HTTPOnly)
	}
	if !found {
		t.Fatal("no identifier cookie after the CMP's consent")
	}
}

// rawEvents lists the stored events as JSON objects.
func rawEvents(t *testing.T, in *proxytest.Instance) []map[string]any {
	t.Helper()
	_, body := in.Admin("/admin/v1/events?site=demo&limit=1000")
	var out struct{ Events []map[string]any }
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Events
}

// analyticsNext returns the UMD build of Segment's browser library
// analytics-next, installed by .ci/run with npm ci into $VIGIE_NPM_DIR
// (proxy/testdata/node/package-lock.json); the test skips locally without it.
func analyticsNext(t *testing.T) []byte {
	t.Helper()
	dir := os.Getenv("VIGIE_NPM_DIR")
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "@segment", "analytics-next", "dist", "umd", "index.js"))
	if dir == "" || err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("analytics-next missing (.ci/run installs it in VIGIE_NPM_DIR=%q): %v", dir, err)
		}
		t.Skip("analytics-next not installed: see .ci/run (npm ci into VIGIE_NPM_DIR)")
	}
	return b
}

// TestSegmentAnalyticsNextInChromium loads Segment's own browser library on
// a page of another origin, pointed at Vigie by its documented settings
// (cdnURL for the settings, apiHost for the events): it fetches
// /v1/projects/{writeKey}/settings and posts page, track and identify.
func TestSegmentAnalyticsNextInChromium(t *testing.T) {
	lib := analyticsNext(t)
	in := proxytest.Start(t)
	ctx := browser(t)
	host := strings.TrimPrefix(in.URL, "http://")
	page := `<!doctype html><html><head><title>Shop</title><script src="/analytics-next.js"></script></head><body>
<script>
AnalyticsNext.AnalyticsBrowser.load(
  {writeKey: "demo", cdnURL: "` + in.URL + `"},
  {integrations: {"Segment.io": {apiHost: "` + host + `/v1", protocol: "http", deliveryStrategy: {strategy: "standard"}}}}
).then(function (r) {
  var a = r[0];
  return a.page().then(function () { return a.track("Cart Viewed", {items: 2}, {context: {consent: {analytics: true}}}); })
    .then(function () { return a.identify("user-7", {plan: "pro"}, {context: {consent: {analytics: true}}}); })
    .then(function () { document.title = "sent"; });
}).catch(function (e) { document.title = "error: " + e; });
</script></body></html>`
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/analytics-next.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = w.Write(lib)
		default:
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(page))
		}
	}))
	t.Cleanup(site.Close)
	if err := chromedp.Do(ctx, chromedp.Navigate(site.URL+"/shop")); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, in, "analytics-next identify", func(e event) bool { return e.Type == "identify" })
	var sawPage, sawTrack bool
	for _, ev := range events(t, in) {
		if !strings.HasPrefix(ev.Library, "analytics.js") {
			t.Errorf("event %s not sent by analytics-next: library %q", ev.Type, ev.Library)
		}
		sawPage = sawPage || (ev.Type == "page" && ev.Page.Path == "/shop")
		sawTrack = sawTrack || (ev.Name == "Cart Viewed" && ev.Mode == "pseudonymous" && ev.AnonymousID != "")
	}
	if !sawPage || !sawTrack {
		t.Fatalf("page %v, consented track %v: %+v", sawPage, sawTrack, events(t, in))
	}
}

// TestDemoAsksAgainWhenConsentEndsInChromium: the vigie_id cookie lasts
// consent.cookie_lifetime from the choice and later pages do not extend
// it; once it has ended, the snippet tells the banner (consentStatus) and
// the demo's banner asks again, though the site still remembers the
// visitor's old answer.
func TestDemoAsksAgainWhenConsentEndsInChromium(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.Sites[0].Consent.CookieLifetime = config.Duration(4 * time.Second) })
	ctx := browser(t)
	demo := in.URL + "/demo/"
	if err := chromedp.Do(ctx, chromedp.Navigate(demo), chromedp.WaitVisible("#consent-banner"), chromedp.Click("#accept-all")); err != nil {
		t.Fatal(err)
	}
	var expires float64
	deadline := time.Now().Add(10 * time.Second)
	for expires == 0 {
		for _, c := range cookies(t, ctx) {
			if c.Name == "vigie_id" {
				expires = c.Expires
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no identifier cookie after consent")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A later page within the lifetime: the banner stays hidden and the
	// cookie keeps its expiry.
	if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+"/demo/pricing.html"), chromedp.WaitReady("body"), chromedp.Sleep(time.Second)); err != nil {
		t.Fatal(err)
	}
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('consent-banner').hidden`))
	if err != nil {
		t.Fatal(err)
	}
	if !hidden {
		t.Fatal("the banner asked again within the consent's lifetime")
	}
	for _, c := range cookies(t, ctx) {
		if c.Name == "vigie_id" && c.Expires != expires {
			t.Fatalf("a later page moved the cookie's expiry from %v to %v", expires, c.Expires)
		}
	}
	// After the lifetime: the banner shows again by itself.
	time.Sleep(time.Until(time.Unix(int64(expires)+1, 0)))
	if err := chromedp.Do(ctx, chromedp.Navigate(demo), chromedp.WaitVisible("#consent-banner")); err != nil {
		t.Fatalf("the banner did not ask again once the consent ended: %v", err)
	}
}
