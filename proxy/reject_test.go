package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/config"
)

const headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"

// TestRejectionsLoggedAndCounted: every rejection (bad write key, origin,
// consent string, oversized body, bot) is counted per reason and logged at
// debug level with its reason and route, never the key, the address or
// the body; requests to unknown routes are counted too.
func TestRejectionsLoggedAndCounted(t *testing.T) {
	in := startLean(t)
	big := `{"event":"Big","anonymousId":"a","properties":{"x":"` + strings.Repeat("y", 40<<10) + `"}}`
	for _, c := range []struct {
		name, method, path, body string
		hdr                      http.Header
		status                   int
		series                   string
	}{
		{"unknown write key", "POST", "/v1/track", `{"event":"E","anonymousId":"a"}`, basicAuth("secret-key-canary"), 401,
			`vigie_events_rejected_total{reason="write_key"}`},
		{"origin", "POST", "/v1/track", `{"event":"E","anonymousId":"a"}`, http.Header{"Authorization": {basic("demo")}, "Origin": {"https://evil.example"}}, 403,
			`vigie_events_rejected_total{reason="origin"}`},
		{"consent string", "POST", "/v1/track", `{"event":"E","anonymousId":"a","context":{"consent":{"tcf":"not-a-tc-string"}}}`, basicAuth("demo"), 200,
			`vigie_events_rejected_total{reason="invalid_consent_string"}`},
		{"oversized", "POST", "/v1/track", big, basicAuth("demo"), 413, `vigie_events_rejected_total{reason="too_large"}`},
		{"bot", "GET", "/v1/p.gif?k=demo&url=https://shop.example/", "", http.Header{"User-Agent": {headless}}, 200,
			`vigie_bot_hits_total{site="demo"}`},
		{"unknown route", "GET", "/wp-login.php?user=canary", "", nil, 404, `vigie_unknown_route_requests_total{code="404"}`},
		{"wrong method", "POST", "/healthz", "", nil, 405, `vigie_unknown_route_requests_total{code="405"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			status, resp := in.Do(c.method, c.path, body, c.hdr)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, resp)
			}
			if v := metricValue(t, in, c.series); v != "1" {
				t.Fatalf("%s = %q, want 1", c.series, v)
			}
		})
	}
	logs := in.Logs()
	for _, want := range []string{
		`msg="hit rejected" reason=write_key route="POST /v1/track"`,
		`reason=origin route="POST /v1/track" site=demo`,
		`reason=invalid_consent_string route="POST /v1/track" site=demo`,
		`reason=too_large route="POST /v1/track"`,
		`reason=bot route="GET /v1/p.gif" site=demo`,
		`msg="request to an unknown route" route="GET /wp-login.php" status=404`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the logs:\n%s", want, logs)
		}
	}
	debug := grepLines(logs, "level=DEBUG")
	for _, secret := range []string{"secret-key-canary", "canary", "127.0.0.1", "not-a-tc-string", "evil.example"} {
		if strings.Contains(debug, secret) {
			t.Errorf("the debug logs hold %q:\n%s", secret, debug)
		}
	}
}

// TestTestTokenPassesBotFilter: a site's test_token in the X-Vigie-Test
// header lets a headless browser or curl through the bot filter (stored,
// marked as a bot); a wrong or missing token does not.
func TestTestTokenPassesBotFilter(t *testing.T) {
	const token = "test-token-0123456789"
	in := startLean(t, func(c *config.Config) { c.Sites[0].TestToken = token })
	for _, c := range []struct {
		name, token string
		stored      bool
	}{
		{"no token", "", false},
		{"wrong token", "test-token-9876543210", false},
		{"site's token", token, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := http.Header{"User-Agent": {headless}}
			if c.token != "" {
				hdr.Set("X-Vigie-Test", c.token)
			}
			if status, _ := in.Do("GET", "/v1/p.gif?k=demo&name="+strings.ReplaceAll(c.name, " ", "+"), nil, hdr); status != 200 {
				t.Fatalf("pixel: %d", status)
			}
			var got map[string]any
			for _, ev := range adminEvents(t, in, "site=demo") {
				if ev["name"] == c.name {
					got = ev
				}
			}
			if (got != nil) != c.stored {
				t.Fatalf("stored %v, want %v", got, c.stored)
			}
			if got != nil && got["device"].(map[string]any)["bot"] != true {
				t.Fatalf("a test client's hit is not marked as a bot: %v", got)
			}
		})
	}
	if strings.Contains(in.Logs(), token) {
		t.Fatal("the test token is in the logs")
	}
}

// TestTestTokenTooShort: a short test token is refused by the
// configuration, naming the field.
func TestTestTokenTooShort(t *testing.T) {
	cfg := config.Default()
	cfg.Sites[0].TestToken = "short"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "sites[0].test_token") {
		t.Fatalf("validate: %v", err)
	}
}

// TestHomeLeadsToTheConsole: / redirects to the console, whose sign-in
// page links to the demo site (when there is one), and other methods on
// them get 405.
func TestHomeLeadsToTheConsole(t *testing.T) {
	in := startLean(t)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := noFollow.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	if code, loc := get(in.URL + "/"); code != http.StatusFound || loc != "/console/" {
		t.Fatalf("GET /: %d %s", code, loc)
	}
	if code, loc := get(in.URL + "/console/"); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/signin") {
		t.Fatalf("GET /console/ signed out: %d %s", code, loc)
	}
	if status, body := in.Do("GET", "/console/signin", nil, nil); status != 200 || !strings.Contains(string(body), `href="/demo/"`) {
		t.Fatalf("GET /console/signin: %d %s", status, body)
	}
	for _, path := range []string{"/", "/console/"} {
		if status, _ := in.Do("POST", path, nil, nil); status != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d, want 405", path, status)
		}
	}
	off := startLean(t, func(c *config.Config) { c.DemoPath = "off" })
	if status, body := off.Do("GET", "/console/signin", nil, nil); status != 200 || strings.Contains(string(body), `/demo/`) {
		t.Fatalf("GET /console/signin without a demo: %d %s", status, body)
	}
}
