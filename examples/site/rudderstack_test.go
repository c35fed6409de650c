package site_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/vigie-dev/vigie/internal/chromiumtest"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// rudderAnalytics returns the bundled browser build of RudderStack's
// JavaScript SDK v3 (@rudderstack/analytics-js, plugins included, so that it
// loads nothing from RudderStack's CDN), installed by .ci/run with npm ci
// into $VIGIE_NPM_DIR (proxy/testdata/node/package-lock.json); the test
// skips locally without it.
func rudderAnalytics(t *testing.T) []byte {
	t.Helper()
	dir := os.Getenv("VIGIE_NPM_DIR")
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "@rudderstack", "analytics-js", "dist", "npm", "modern", "bundled", "umd", "index.js"))
	if dir == "" || err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("@rudderstack/analytics-js missing (.ci/run installs it in VIGIE_NPM_DIR=%q): %v", dir, err)
		}
		t.Skip("@rudderstack/analytics-js not installed: see .ci/run (npm ci into VIGIE_NPM_DIR)")
	}
	return b
}

// sdkRequests records the routes Vigie was asked, as "METHOD path".
type sdkRequests struct {
	mu   sync.Mutex
	seen []string
}

func (s *sdkRequests) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, r.Method+" "+r.URL.Path)
}

func (s *sdkRequests) has(req string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.seen, req)
}

func (s *sdkRequests) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.seen, ", ")
}

// rudderPage is a shop page that loads the SDK from its own server and
// points it at Vigie by URLs only (dataPlaneUrl and configUrl), then sends
// a page view, a track and an identify. setup runs before load (a consent
// manager's globals); options are load options merged into the defaults.
func rudderPage(vigie, setup, options string) string {
	return `<!doctype html><html><head><title>Shop</title></head><body>
<script>` + setup + `</script>
<script src="/rsa.js"></script>
<script>
var opts = Object.assign({configUrl: "` + vigie + `", logLevel: "WARN"}, ` + options + `);
var rudderanalytics = new window.rudderanalytics.RudderAnalytics();
rudderanalytics.load("demo", "` + vigie + `", opts);
rudderanalytics.ready(function () {
  rudderanalytics.page("Shop", "Home");
  rudderanalytics.track("Cart Viewed", {items: 2});
  rudderanalytics.identify("user-7", {plan: "pro"});
  document.title = "sent";
});
</script></body></html>`
}

// shopServer serves page and the SDK; with proxyTo it also forwards /t/
// to Vigie, first-party, as the README's nginx line does.
func shopServer(t *testing.T, lib []byte, page func(origin string) string, proxyTo string, seen *sdkRequests) *httptest.Server {
	t.Helper()
	var rp *httputil.ReverseProxy
	if proxyTo != "" {
		target, err := url.Parse(proxyTo)
		if err != nil {
			t.Fatal(err)
		}
		rp = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/t")
			pr.Out.URL.RawPath = ""
			pr.SetXForwarded()
		}}
	}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/rsa.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = w.Write(lib)
		case rp != nil && strings.HasPrefix(r.URL.Path, "/t/"):
			seen.add(r)
			rp.ServeHTTP(w, r)
		default:
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(page(srv.URL)))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// recordVigie wraps the instance's URL with a recording reverse proxy, so
// the test sees the SDK's requests as Vigie got them (cross-origin).
func recordVigie(t *testing.T, in *proxytest.Instance, seen *sdkRequests) string {
	t.Helper()
	target, _ := url.Parse(in.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// consoleLog collects the page's console messages and uncaught
// exceptions, to explain a failure.
func consoleLog(ctx context.Context) *sdkRequests {
	var log sdkRequests
	_ = chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			log.mu.Lock()
			log.seen = append(log.seen, string(e.Type)+": "+strings.Join(parts, " "))
			log.mu.Unlock()
		case *runtime.EventExceptionThrown:
			log.mu.Lock()
			log.seen = append(log.seen, "exception: "+e.ExceptionDetails.Text+" "+exceptionText(e.ExceptionDetails))
			log.mu.Unlock()
		}
	})
	return &log
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}

// rudderEvents waits for the SDK's identify and returns every stored event
// as JSON objects, after checking they all came from the SDK.
func rudderEvents(t *testing.T, in *proxytest.Instance, seen, console *sdkRequests) []map[string]any {
	t.Helper()
	waitEvent(t, in, "RudderStack identify (requests: "+seen.String()+"; console: "+console.String()+")", func(e event) bool { return e.Type == "identify" })
	waitEvent(t, in, "RudderStack track", func(e event) bool { return e.Name == "Cart Viewed" })
	evs := rawEvents(t, in)
	for _, ev := range evs {
		if lib, _ := ev["library"].(string); !strings.HasPrefix(lib, "RudderLabs JavaScript SDK") {
			t.Errorf("event %v %v not sent by the RudderStack SDK: library %q", ev["type"], ev["name"], lib)
		}
	}
	return evs
}

func purposesOf(ev map[string]any) string {
	var ps []string
	for _, p := range ev["purposes"].([]any) {
		ps = append(ps, p.(string))
	}
	slices.Sort(ps)
	return strings.Join(ps, ",")
}

// TestRudderStackSDKInChromium loads RudderStack's JavaScript SDK v3 on a
// shop page in headless Chromium, pointed at Vigie by its URLs only, in the
// three ways a site runs it: cross-origin (Vigie on its own host) with
// OneTrust, first-party through a reverse proxy under /t/ with a custom
// consent manager, and with the beacon transport. Vigie answers its
// source configuration, CORS lets its headers through, and its
// context.consentManagement decides each event's purposes.
func TestRudderStackSDKInChromium(t *testing.T) {
	lib := rudderAnalytics(t)
	chromiumtest.Path(t) // skip (or fail in CI) before starting servers

	t.Run("cross-origin, OneTrust", func(t *testing.T) {
		in := proxytest.Start(t)
		var seen sdkRequests
		vigie := recordVigie(t, in, &seen)
		// OneTrust has loaded: the visitor allowed performance (C0002)
		// and refused functional and targeting cookies.
		onetrust := `window.OnetrustActiveGroups = ",C0001,C0002,";
window.OneTrust = {GetDomainData: function () { return {Groups: [
  {CustomGroupId: "C0001", GroupName: "Strictly Necessary"}, {CustomGroupId: "C0002", GroupName: "Performance"},
  {CustomGroupId: "C0003", GroupName: "Functional"}, {CustomGroupId: "C0004", GroupName: "Targeting"}]}; }};`
		shop := shopServer(t, lib, func(string) string {
			return rudderPage(vigie, onetrust, `{consentManagement: {enabled: true, provider: "oneTrust"}}`)
		}, "", nil)
		ctx := browser(t)
		console := consoleLog(ctx)
		if err := chromedp.Do(ctx, chromedp.Navigate(shop.URL+"/shop")); err != nil {
			t.Fatal(err)
		}
		evs := rudderEvents(t, in, &seen, console)
		for _, want := range []string{"OPTIONS /sourceConfig/", "GET /sourceConfig/", "OPTIONS /v1/track", "POST /v1/track", "POST /v1/page", "POST /v1/identify"} {
			if !seen.has(want) {
				t.Errorf("the SDK did not send %s (it sent: %s)", want, seen.String())
			}
		}
		for _, ev := range evs {
			if ev["mode"] != "pseudonymous" || purposesOf(ev) != "analytics,necessary" || ev["anonymous_id"] == nil {
				t.Errorf("OneTrust allowed C0002 only: want pseudonymous for analytics, got %v %v: %v %v", ev["type"], ev["name"], ev["mode"], ev["purposes"])
			}
		}
	})

	t.Run("first-party through a reverse proxy, custom consent", func(t *testing.T) {
		in := proxytest.Start(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} })
		var seen sdkRequests
		// The site's own consent banner: everything refused.
		shop := shopServer(t, lib, func(origin string) string {
			return rudderPage(origin+"/t", "", `{consentManagement: {enabled: true, provider: "custom",
  allowedConsentIds: ["necessary"], deniedConsentIds: ["analytics", "personalization", "marketing"]}}`)
		}, in.URL, &seen)
		ctx := browser(t)
		console := consoleLog(ctx)
		if err := chromedp.Do(ctx, chromedp.Navigate(shop.URL+"/shop")); err != nil {
			t.Fatal(err)
		}
		evs := rudderEvents(t, in, &seen, console)
		if !seen.has("GET /t/sourceConfig/") || seen.has("OPTIONS /t/v1/track") {
			t.Errorf("same-origin SDK requests: %s", seen.String())
		}
		for _, ev := range evs {
			if ev["mode"] != "anonymous" || ev["anonymous_id"] != nil || ev["subject"] != nil {
				t.Errorf("consent refused: want anonymous, got %v %v: %v", ev["type"], ev["name"], ev)
			}
		}
		if strings.Contains(in.Logs(), "trusted_proxies") {
			t.Errorf("a warning about an untrusted proxy, though it is trusted:\n%s", in.Logs())
		}
	})

	t.Run("beacon transport", func(t *testing.T) {
		in := proxytest.Start(t)
		var seen sdkRequests
		vigie := recordVigie(t, in, &seen)
		shop := shopServer(t, lib, func(string) string {
			return rudderPage(vigie, "", `{useBeacon: true, beaconQueueOptions: {flushQueueInterval: 200},
  consentManagement: {enabled: true, provider: "custom", allowedConsentIds: ["analytics", "marketing"], deniedConsentIds: []}}`)
		}, "", nil)
		ctx := browser(t)
		console := consoleLog(ctx)
		if err := chromedp.Do(ctx, chromedp.Navigate(shop.URL+"/shop")); err != nil {
			t.Fatal(err)
		}
		evs := rudderEvents(t, in, &seen, console)
		if !seen.has("POST /beacon/v1/batch") || seen.has("POST /v1/track") {
			t.Errorf("beacon transport requests: %s", seen.String())
		}
		for _, ev := range evs {
			if ev["mode"] != "pseudonymous" || purposesOf(ev) != "analytics,marketing,necessary" {
				t.Errorf("beacon event: %v", ev)
			}
		}
	})
}
