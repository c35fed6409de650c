package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/vigie-dev/vigie/internal/chromiumtest"
	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// browser starts a headless Chromium with a fresh profile, at a desktop
// size.
func browser(t *testing.T) context.Context {
	t.Helper()
	ctx := chromiumtest.Start(t, 3*time.Minute, chromedp.Flag("hide-scrollbars", true))
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshots is where the screenshots go: $VIGIE_SCREENSHOTS_DIR (CI
// keeps it as an artifact), else a temp dir.
func screenshots(t *testing.T) string {
	dir := os.Getenv("VIGIE_SCREENSHOTS_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screen is a viewport and theme a page is shown in.
type screen struct {
	name          string
	width, height int64
	mobile        bool
	theme         string
}

var screens = []screen{
	{"desktop-light", 1280, 800, false, "light"},
	{"desktop-dark", 1280, 800, false, "dark"},
	{"phone-light", 390, 844, true, "light"},
	{"phone-dark", 390, 844, true, "dark"},
}

// show sets the viewport and theme.
func show(t *testing.T, ctx context.Context, s screen) {
	t.Helper()
	opts := []chromedp.EmulateViewportOption{}
	if s.mobile {
		opts = append(opts, chromedp.EmulateMobile)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(s.width, s.height, opts...)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: s.theme}}}); err != nil {
		t.Fatal(err)
	}
}

// shoot writes a screenshot of the viewport to dir/name.png.
func shoot(t *testing.T, ctx context.Context, dir, name string) []byte {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	return png
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// post sends an event to in with write key demo.
func post(t *testing.T, in *proxytest.Instance, path, body string, hdr http.Header) {
	t.Helper()
	r, _ := http.NewRequest("POST", "/", nil)
	r.SetBasicAuth("demo", "")
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr.Set("Authorization", r.Header.Get("Authorization"))
	if code, b := in.Do("POST", path, []byte(body), hdr); code != 200 {
		t.Fatalf("POST %s: %d %s", path, code, b)
	}
}

// noRedirect is a client that does not follow a tracked link's redirect.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// seedEmail rewrites a campaign for user-43 (GPC: no marketing, so its
// opens and clicks are counted per campaign only) and user-45 (who granted
// marketing: stored as events, counted by the rollups). user-43 opens
// twice and clicks, Gmail's image proxy opens its message once; user-45
// opens and clicks: 4 opens, 75 % by people, and 2 clicks by people.
func seedEmail(t *testing.T, in *proxytest.Instance) {
	t.Helper()
	post(t, in, "/v1/identify", `{"userId":"user-45","traits":{"email":"ada@example.org"},"context":{"consent":{"analytics":true,"marketing":true}}}`, nil)
	html := `<html><body><p>Spring sale</p><a href="https://shop.example/pricing">Pricing</a></body></html>`
	body, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "spring", "html": html, "recipients": []string{"user-43", "user-45"}, "honeypot": false})
	code, out := in.Do("POST", "/admin/v1/email/rewrite", body, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 200 {
		t.Fatalf("rewrite: %d %s", code, out)
	}
	var rw struct {
		Messages []struct{ Recipient, HTML string }
	}
	if err := json.Unmarshal(out, &rw); err != nil || len(rw.Messages) != 2 {
		t.Fatalf("rewrite answer: %s", out)
	}
	const firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
	const gmail = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
	for _, m := range rw.Messages {
		pixel, click := regexp.MustCompile(`src="https?://[^"/]+(/e/o/[^"]+)"`).FindStringSubmatch(m.HTML), regexp.MustCompile(`href="https?://[^"/]+(/e/c/[^"]+)"`).FindStringSubmatch(m.HTML)
		if pixel == nil || click == nil {
			t.Fatalf("no pixel or tracked link in %s", m.HTML)
		}
		hits := []struct{ path, ua string }{{pixel[1], firefox}, {click[1], firefox}}
		if m.Recipient == "user-43" {
			hits = append(hits, struct{ path, ua string }{pixel[1], firefox}, struct{ path, ua string }{pixel[1], gmail})
		}
		for _, h := range hits {
			req, _ := http.NewRequest("GET", in.URL+h.path, nil)
			req.Header.Set("User-Agent", h.ua)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 && resp.StatusCode != http.StatusFound {
				t.Fatalf("GET %s: %d", h.path, resp.StatusCode)
			}
		}
	}
}

// browserSignIn signs in through the sign-in page, as a person would.
func browserSignIn(t *testing.T, ctx context.Context, in *proxytest.Instance, tok string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(in.URL+"/"),
		chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", tok),
		chromedp.Submit("#token"),
		chromedp.WaitVisible("nav.main"),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
}

// anonymousRetention is the seeded run's retention of anonymous events.
const anonymousRetention = 72 * time.Hour

// TestConsoleInChromium: a newcomer signs in with the admin token, sees
// the first-run page wait for the first event and then show it; with data
// from a seeded run (events through the API, the segments plugin running)
// every page renders, in light and dark themes, on a desktop and a phone
// (no sideways scrolling), and a screenshot of each is written; a
// marketer signed in sees aggregates only (overview, e-mail, responses)
// and a friendly page where a person's data would be (members, privacy
// requests, sensitive data); the privacy page says what will be purged
// next and when.

func TestConsoleInChromium(t *testing.T) {
	// The default plugins (geoip, segments with the demo segments), the
	// response plugin and a CRM destination (the noop connector), as real
	// processes.
	in := proxytest.Start(t, func(c *config.Config) {
		c.Plugins = append(config.DefaultPlugins(), config.Plugin{Name: "response", Config: map[string]any{
			"contact_types": []any{map[string]any{"name": "pricing-readers", "segments": []any{"pricing-interest"}}},
			"message_types": []any{map[string]any{"name": "promo"}, map[string]any{"name": "digest"}},
		}}, config.Plugin{Name: "crm-noop", Builtin: "crm", Config: map[string]any{"connector": "noop", "rate_limit": map[string]any{}}})
		// Anonymous events kept 3 days (the streams no longer): the
		// privacy page's "Purged next" has them within its 7 days.
		if c.Retention == nil {
			c.Retention = map[string]config.Duration{}
		}
		c.Retention[config.RetentionAnonymous] = config.Duration(anonymousRetention)
		c.NATS.MaxAge = config.Duration(anonymousRetention)
	})
	seeded := time.Now()
	ctx := browser(t)
	dir := screenshots(t)

	// Sign-in: / leads there, with a link to the demo.
	if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+"/"), chromedp.WaitVisible("#demo-link")); err != nil {
		t.Fatal(err)
	}
	shoot(t, ctx, dir, "signin-desktop-light")
	if err := chromedp.Do(ctx, chromedp.SendKeys("#token", "vigie_not-the-token-0123456789"),
		chromedp.Submit("#token"), chromedp.WaitVisible("#signin-error")); err != nil {
		t.Fatal(err)
	}
	browserSignIn(t, ctx, in, in.AdminToken())

	// First run: no event yet, the snippets with the site's write key and
	// the wait; then the first event appears by itself.
	if err := chromedp.Do(ctx, chromedp.WaitVisible("#waiting")); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#first-run"); !strings.Contains(got, "Waiting for your first event") || !strings.Contains(got, `data-write-key="demo"`) ||
		!strings.Contains(got, "/v1/p.gif?k=demo") || !strings.Contains(got, "curl -u 'demo:'") {
		t.Fatalf("first-run panel:\n%s", got)
	}
	shoot(t, ctx, dir, "first-run-desktop-light")
	post(t, in, "/v1/page", `{"anonymousId":"visitor-1","name":"Home","context":{"page":{"path":"/","url":"https://shop.example/"},"consent":{"analytics":true}}}`, nil)
	if err := chromedp.Do(ctx, chromedp.WaitVisible("#got-first")); err != nil {
		t.Fatal(err)
	}
	if got := text(t, ctx, "#got-first"); !strings.Contains(got, "page") || !strings.Contains(got, "pseudonymous") || !strings.Contains(got, "explicit grant") {
		t.Fatalf("first event: %q", got)
	}
	shoot(t, ctx, dir, "first-event-desktop-light")

	// A seeded run: pricing pages with profiling consent (a segment
	// entry), an anonymous visit, GPC, scrubbed personal data, a bot, a
	// foreign origin, an unknown write key.
	for range 3 {
		post(t, in, "/v1/page", `{"userId":"user-42","name":"Pricing","context":{"page":{"path":"/pricing"},"consent":{"analytics":true,"personalization":true}}}`, nil)
	}
	post(t, in, "/v1/page", `{"anonymousId":"visitor-2","name":"Docs","context":{"page":{"path":"/docs"}}}`, nil)
	post(t, in, "/v1/track", `{"userId":"user-43","event":"Newsletter","properties":{"note":"write to jane.doe@example.com"},"context":{"consent":{"analytics":true,"marketing":true}}}`, http.Header{"Sec-Gpc": {"1"}})
	if code, _ := in.Do("GET", "/v1/p.gif?k=demo&url=https://shop.example/", nil, http.Header{"User-Agent": {"curl/8.5"}}); code != 200 {
		t.Fatal("pixel")
	}
	if code, _ := in.Do("POST", "/v1/track", []byte(`{"event":"x","anonymousId":"a","writeKey":"demo"}`), http.Header{"Origin": {"https://evil.example"}}); code != http.StatusForbidden {
		t.Fatal("foreign origin accepted")
	}
	in.Post("/v1/track", "no-such-key", `{"event":"x","anonymousId":"a"}`)
	// A health trait for the sensitive-data report, and an e-mail
	// campaign: opened by its consenting recipient and by Gmail's image
	// proxy, one link clicked.
	post(t, in, "/v1/identify", `{"userId":"user-44","traits":{"medical_condition":"asthma","plan":"pro"},"context":{"consent":{"analytics":true}}}`, nil)
	seedEmail(t, in)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, b := in.Admin("/admin/v1/segments?site=demo")
		var sv struct {
			Segments []struct {
				Name string
				Size int64
			}
		}
		_ = json.Unmarshal(b, &sv)
		entered := false
		for _, s := range sv.Segments {
			entered = entered || (s.Name == "pricing-interest" && s.Size == 1)
		}
		if entered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no segment entry: %s\n%s", b, in.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The decision counters reach the overview once flushed (every 10 s).
	for {
		_, b := in.Admin("/admin/v1/overview?site=demo")
		var ov struct{ Decisions struct{ Dropped int } }
		_ = json.Unmarshal(b, &ov)
		if ov.Decisions.Dropped >= 2 {
			break
		}
		if time.Now().After(deadline.Add(15 * time.Second)) {
			t.Fatalf("no decision counted: %s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The stored opens and clicks reach the e-mail page through the
	// rollups' consumer.
	for {
		if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+"/console/email?site=demo"), chromedp.WaitVisible("#email-opens")); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(text(t, ctx, "#email-opens"), "4") {
			break
		}
		if time.Now().After(deadline.Add(15 * time.Second)) {
			t.Fatalf("e-mail opens: %q", text(t, ctx, "#email-opens"))
		}
		time.Sleep(300 * time.Millisecond)
	}

	// Every page, with what it must show.
	pages := []struct {
		name, path, sel string
		want            []string
	}{
		{"overview", "/console/overview?site=demo", "#overview-chart .uplot canvas", []string{"Visits", "Page views", "Last 5 minutes",
			"/pricing", "explicit grant", "bot", "origin", "analytics", "Entry pages", "Countries", "Events by type"}},
		{"live", "/console/live?site=demo", "#live", []string{"pseudonymous", "anonymous", "explicit grant", "gpc", "denied marketing", "email ×1", "bot", "rejected", "origin", "write_key", "key k1"}},
		{"segments", "/console/segments?site=demo", "#segments", []string{"pricing-interest", `profile.count("page", "/pricing*", "7d") >= 3`, "hot-lead"}},
		{"members", "/console/segments/pricing-interest/members?site=demo", "#members", nil},
		{"plugins", "/console/plugins?site=demo", "#plugins", []string{"segments", "geoip", "running"}},
		{"email", "/console/email?site=demo", "#campaigns", []string{"spring", "https://shop.example/pricing",
			"75 % by people, 25 % by machines", "100 % by people, 0 % by machines"}},
		{"destinations", "/console/destinations?site=demo", "#destinations", []string{"crm-noop", "noop", "Resync"}},
		{"privacy", "/console/privacy?site=demo", "#audit", []string{"console.signin", "token:t1 (admin)", "access", "done",
			"Visitors in the ledger", "download as Markdown", "Purged next", "The purge runs next at"}},
		{"request", "", "#steps", []string{"access request", "Subjects found", "done", "consent_history"}},
		{"sensitive", "/console/sensitive?site=demo", "#categories", []string{"Health", "drop_field", "medical_condition"}},
		{"response", "/console/response?site=demo", "#heatmap", []string{"pricing-readers", "pricing-interest", "promo", "digest", "other"}},
		{"sites", "/console/sites?site=demo", "#add-site", []string{"demo", "configuration file"}},
		{"site", "/console/sites/demo?site=demo", "#first-run", []string{`data-write-key="demo"`}},
	}
	// A privacy request, made through the console's form.
	if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+"/console/privacy?site=demo"), chromedp.Click("#new-request summary"),
		chromedp.SetValue("#rq-type", "access"), chromedp.SetValue("#rq-kind", "user_id"),
		chromedp.SendKeys("#rq-identifier", "user-42"), chromedp.Click("#rq-submit"), chromedp.WaitVisible("#steps")); err != nil {
		t.Fatalf("privacy request: %v", err)
	}
	requestURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	var readme []byte
	for _, p := range pages {
		if p.path == "" {
			p.path = strings.TrimPrefix(requestURL, in.URL)
		}
		for _, s := range screens {
			show(t, ctx, s)
			if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+p.path), chromedp.WaitVisible(p.sel)); err != nil {
				t.Fatalf("%s (%s): %v", p.name, s.name, err)
			}
			if s.name == "desktop-light" {
				body := text(t, ctx, "main")
				for _, w := range p.want {
					if !strings.Contains(strings.ToLower(body), strings.ToLower(w)) { // headers are upper-cased by CSS
						t.Errorf("%s lacks %q:\n%s", p.name, w, body)
					}
				}
			}
			if s.mobile {
				wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
				if err != nil || wide {
					t.Errorf("%s scrolls sideways on a phone (%v)", p.name, err)
				}
			}
			png := shoot(t, ctx, dir, p.name+"-"+s.name)
			if p.name == "live" && s.name == "desktop-light" {
				readme = png
			}
		}
	}
	// Purged next: the seeded anonymous events end with their retention.
	show(t, ctx, screens[0])
	if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+"/console/privacy?site=demo"), chromedp.WaitVisible("#purge-next")); err != nil {
		t.Fatalf("purged next: %v", err)
	}
	purge := text(t, ctx, "#purge-next")
	m := regexp.MustCompile(`events \(anonymous retention\)\s+(\d+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s+expire at their time`).FindStringSubmatch(purge)
	if m == nil {
		t.Fatalf("purged next lacks the anonymous events:\n%s", purge)
	}
	if first, err := time.Parse(time.DateTime, m[2]); err != nil || m[1] == "0" ||
		first.Before(seeded.Add(anonymousRetention-time.Second).Truncate(time.Second)) || first.After(time.Now().Add(anonymousRetention)) {
		t.Errorf("anonymous events: %s due, first %s (seeded %s, retention %s)", m[1], m[2], seeded.UTC().Format(time.DateTime), anonymousRetention)
	}
	// The destination's Resync button starts a full resync.
	if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+"/console/destinations?site=demo"), chromedp.Click("#destinations button"),
		chromedp.WaitVisible("#message")); err != nil {
		t.Fatalf("resync: %v", err)
	}
	if got := text(t, ctx, "#message"); !strings.Contains(got, "A resync of crm-noop was started") {
		t.Errorf("resync: %q", got)
	}
	// The segments page draws its chart with uPlot.
	show(t, ctx, screens[0])
	if err := chromedp.Do(ctx, chromedp.Navigate(in.URL+"/console/segments?site=demo"), chromedp.WaitVisible("#segments-chart .uplot canvas")); err != nil {
		t.Fatalf("segments chart: %v", err)
	}
	if os.Getenv("VIGIE_UPDATE_SCREENSHOT") == "1" {
		if len(readme) > 200_000 {
			t.Fatalf("the README screenshot is %d bytes, more than 200 KB", len(readme))
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "console.png"), readme, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// CSRF in the browser: a page of another origin (same host, another
	// port, so the browser sends the session cookie along: same-site)
	// posts a form to the console, once without the token and once with a
	// token it guessed. Both are refused with the console's page, and no
	// site is added.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		csrf := ""
		if r.URL.Query().Has("guess") {
			csrf = `<input type="hidden" name="csrf" value="` + strings.Repeat("A", 43) + `">`
		}
		_, _ = w.Write([]byte(`<!doctype html><form id="f" method="post" action="` + in.URL + `/console/sites">` +
			`<input name="id" value="evil"><input name="origins" value="https://evil.example">` + csrf +
			`</form><script>document.getElementById("f").submit()</script>`))
	}))
	defer evil.Close()
	for _, q := range []string{"", "?guess"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(evil.URL+"/"+q), chromedp.WaitVisible("#error-message")); err != nil {
			t.Fatalf("forged form %q: %v", q, err)
		}
		if got := text(t, ctx, "#error-message"); !strings.Contains(got, "did not come from a console page") {
			t.Errorf("forged form %q: %q", q, got)
		}
	}
	shoot(t, ctx, dir, "csrf-refused-desktop-light")
	if _, b := in.Admin("/admin/v1/sites"); strings.Contains(string(b), `"evil"`) {
		t.Fatalf("a forged form added a site: %s", b)
	}

	// A marketer: aggregates, never a person's data.
	mctx := browser(t)
	browserSignIn(t, mctx, in, newToken(t, in, access.Marketer))
	if err := chromedp.Do(mctx, chromedp.Navigate(in.URL+"/console/live?site=demo"), chromedp.WaitVisible("#live-summary")); err != nil {
		t.Fatal(err)
	}
	if body := text(t, mctx, "main"); strings.Contains(body, "key k1") || !strings.Contains(body, "explicit grant") {
		t.Errorf("marketer's live page:\n%s", body)
	}
	shoot(t, mctx, dir, "live-marketer-desktop-light")
	if err := chromedp.Do(mctx, chromedp.Navigate(in.URL+"/console/segments/pricing-interest/members?site=demo"), chromedp.WaitVisible("#error-message")); err != nil {
		t.Fatal(err)
	}
	if got := text(t, mctx, "#error-message"); !strings.Contains(got, "not open to the marketer role") {
		t.Errorf("marketer on the member list: %q", got)
	}
	shoot(t, mctx, dir, "members-marketer-desktop-light")
	// The aggregates pages are open to the marketer; the privacy pages,
	// which name requests and show the audit trail, are not.
	for _, p := range []struct{ path, sel string }{
		{"/console/overview?site=demo", "#cards"}, {"/console/email?site=demo", "#campaigns"}, {"/console/response?site=demo", "#heatmap"},
	} {
		if err := chromedp.Do(mctx, chromedp.Navigate(in.URL+p.path), chromedp.WaitVisible(p.sel)); err != nil {
			t.Fatalf("marketer on %s: %v", p.path, err)
		}
	}
	if nav := text(t, mctx, "nav.main"); strings.Contains(nav, "Privacy") || strings.Contains(nav, "Sensitive") {
		t.Errorf("the marketer's navigation links the privacy pages: %q", nav)
	}
	for _, path := range []string{"/console/privacy?site=demo", strings.TrimPrefix(requestURL, in.URL), "/console/sensitive?site=demo"} {
		if err := chromedp.Do(mctx, chromedp.Navigate(in.URL+path), chromedp.WaitVisible("#error-message")); err != nil {
			t.Fatalf("marketer on %s: %v", path, err)
		}
		if got := text(t, mctx, "#error-message"); !strings.Contains(got, "not open to the marketer role") {
			t.Errorf("marketer on %s: %q", path, got)
		}
	}
	t.Logf("screenshots in %s", dir)
}
