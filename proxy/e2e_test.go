package proxy_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

const browserUA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"

const consentedTrack = `{"type":"track","event":"Signed Up","messageId":"m-1","anonymousId":"anon-123","userId":"user-42",
 "timestamp":"2026-11-26T10:00:00Z","sentAt":"2026-11-26T10:00:01Z",
 "context":{"ip":"203.0.113.77","userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
   "page":{"url":"https://shop.example/pricing?utm_source=news&session=abc","path":"/pricing","referrer":"https://search.example/q?x=1"},
   "consent":{"analytics":true}},
 "properties":{"plan":"pro","price":12}}`

func TestTrackReachesBadgerAndJetStream(t *testing.T) {
	in := proxytest.Start(t)
	code, body := in.Post("/v1/track", "demo", consentedTrack)
	if code != 200 || !bytes.Contains(body, []byte(`"success":true`)) {
		t.Fatalf("track: %d %s", code, body)
	}
	evs := adminEvents(t, in, "site=demo")
	if len(evs) != 1 {
		t.Fatalf("stored %d events, want 1", len(evs))
	}
	ev := evs[0]
	if ev["type"] != "track" || ev["name"] != "Signed Up" || ev["mode"] != "pseudonymous" {
		t.Fatalf("stored event: %v", ev)
	}
	if ev["user_id"] == "" || ev["user_id"] == "user-42" || ev["anonymous_id"] == "anon-123" || ev["subject"] != ev["user_id"] {
		t.Fatalf("identifiers not pseudonymized: %v", ev)
	}
	if ev["ip_prefix"] != "203.0.113.0/24" {
		t.Fatalf("ip_prefix = %v", ev["ip_prefix"])
	}
	page := ev["page"].(map[string]any)
	if strings.Contains(fmt.Sprint(page["url"]), "session") || !strings.Contains(fmt.Sprint(page["url"]), "utm_source=news") {
		t.Fatalf("url not scrubbed to allowlist: %v", page["url"])
	}
	if props, ok := ev["properties"].(map[string]any); !ok || props["plan"] != "pro" || props["price"] != float64(12) {
		t.Fatalf("properties not shown as JSON: %v", ev["properties"])
	}
	msgs := waitStream(t, in, 1)
	if len(msgs) != 1 {
		t.Fatalf("stream has %d messages", len(msgs))
	}
	m := msgs[0]
	if m.Subject != "vigie.events.demo.track" || m.MsgID != ev["id"] || m.Event.GetId() != ev["id"] {
		t.Fatalf("stream message: subject %s msgid %s id %s, stored id %v", m.Subject, m.MsgID, m.Event.GetId(), ev["id"])
	}
	waitOutboxEmpty(t, in)
}

func TestAllRoutesAccept(t *testing.T) {
	in := proxytest.Start(t)
	bodies := map[string]string{
		"track":    `{"event":"E","anonymousId":"a"}`,
		"page":     `{"name":"Home","anonymousId":"a"}`,
		"screen":   `{"name":"Main","userId":"u"}`,
		"identify": `{"userId":"u","traits":{"plan":"pro"}}`,
		"group":    `{"userId":"u","groupId":"g"}`,
		"alias":    `{"userId":"u","previousId":"a"}`,
	}
	short := map[string]string{"track": "t", "page": "p", "screen": "s", "identify": "i", "group": "g", "alias": "a"}
	want := 0
	for typ, b := range bodies {
		for _, route := range []string{typ, short[typ]} {
			code, body := in.Post("/v1/"+route, "demo", b)
			if code != 200 {
				t.Errorf("/v1/%s: %d %s", route, code, body)
			}
			want++
		}
	}
	batch := `{"batch":[{"type":"track","event":"A","anonymousId":"x"},{"type":"page","anonymousId":"x"}]}`
	for _, route := range []string{"batch", "import", "b"} {
		if code, body := in.Post("/v1/"+route, "demo", batch); code != 200 {
			t.Errorf("/v1/%s: %d %s", route, code, body)
		}
		want += 2
	}
	if got := len(adminEvents(t, in, "site=demo")); got != want {
		t.Fatalf("stored %d events, want %d", got, want)
	}
	waitStream(t, in, want)
}

func TestWriteKeyInBodyAndBatchLevel(t *testing.T) {
	in := proxytest.Start(t)
	if code, body := in.Post("/v1/track", "", `{"writeKey":"demo","event":"E","anonymousId":"a"}`); code != 200 {
		t.Fatalf("writeKey in body: %d %s", code, body)
	}
	if code, body := in.Post("/v1/batch", "", `{"writeKey":"demo","batch":[{"type":"track","event":"E","anonymousId":"a"}]}`); code != 200 {
		t.Fatalf("batch-level writeKey: %d %s", code, body)
	}
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBadInputGetsJSON4xx(t *testing.T) {
	in := proxytest.Start(t)
	auth := func() http.Header {
		r, _ := http.NewRequest("POST", "/", nil)
		r.SetBasicAuth("demo", "")
		return http.Header{"Authorization": {r.Header.Get("Authorization")}}
	}
	big := `{"event":"E","anonymousId":"a","properties":{"x":"` + strings.Repeat("a", 40<<10) + `"}}`
	var many strings.Builder
	many.WriteString(`{"batch":[`)
	for i := 0; i < 2600; i++ {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`{"type":"track","event":"E","anonymousId":"a"}`)
	}
	many.WriteString(`]}`)
	bomb := gz(t, append([]byte(`{"event":"E","anonymousId":"a","p":"`), bytes.Repeat([]byte("0"), 10<<20)...))
	cases := []struct {
		name   string
		path   string
		body   []byte
		hdr    http.Header
		status int
	}{
		{"malformed JSON", "/v1/track", []byte(`{"event":`), auth(), 400},
		{"wrong type", "/v1/track", []byte(`{"event":"E","anonymousId":"a","properties":[1]}`), auth(), 400},
		{"missing event", "/v1/track", []byte(`{"anonymousId":"a"}`), auth(), 400},
		{"missing ids", "/v1/track", []byte(`{"event":"E"}`), auth(), 400},
		{"unknown write key", "/v1/track", []byte(`{"writeKey":"nope","event":"E","anonymousId":"a"}`), nil, 401},
		{"no write key", "/v1/track", []byte(`{"event":"E","anonymousId":"a"}`), nil, 401},
		{"disallowed origin", "/v1/track", []byte(`{"event":"E","anonymousId":"a"}`), func() http.Header { h := auth(); h.Set("Origin", "https://evil.example"); return h }(), 403},
		{"oversized event", "/v1/track", []byte(big), auth(), 413},
		{"too many events", "/v1/batch", []byte(many.String()), auth(), 400},
		{"batch not an array", "/v1/batch", []byte(`{"batch":{}}`), auth(), 400},
		{"gzip bomb", "/v1/track", bomb, func() http.Header { h := auth(); h.Set("Content-Encoding", "gzip"); return h }(), 413},
		{"unknown encoding", "/v1/track", []byte(`x`), func() http.Header { h := auth(); h.Set("Content-Encoding", "br"); return h }(), 415},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := in.Do("POST", c.path, c.body, c.hdr)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, body)
			}
			decodeErr(t, body)
		})
	}
	if n := len(adminEvents(t, in, "site=demo")); n != 0 {
		t.Fatalf("%d events stored from bad input", n)
	}
}

func TestWrongMethodAndUnknownPath(t *testing.T) {
	in := proxytest.Start(t)
	code, body := in.Do("GET", "/v1/track", nil, nil)
	if code != 405 {
		t.Fatalf("GET /v1/track: %d %s", code, body)
	}
	decodeErr(t, body)
	code, body = in.Do("POST", "/v1/nope", []byte(`{}`), nil)
	if code != 404 {
		t.Fatalf("POST /v1/nope: %d %s", code, body)
	}
	decodeErr(t, body)
}

func TestGzipWithFormContentTypeIsJSON(t *testing.T) {
	in := proxytest.Start(t)
	h := http.Header{"Content-Encoding": {"gzip"}, "Content-Type": {"application/x-www-form-urlencoded"}}
	body := gz(t, []byte(`{"writeKey":"demo","batch":[{"type":"track","event":"E","anonymousId":"a"}]}`))
	if code, b := in.Do("POST", "/v1/batch", body, h); code != 200 {
		t.Fatalf("gzip form-labelled batch: %d %s", code, b)
	}
	if n := len(adminEvents(t, in, "site=demo")); n != 1 {
		t.Fatalf("stored %d, want 1", n)
	}
}

func TestBatchKeepsGoodEvents(t *testing.T) {
	in := proxytest.Start(t)
	code, body := in.Post("/v1/batch", "demo", `{"batch":[
	  {"type":"track","event":"ok1","anonymousId":"a","messageId":"g1"},
	  {"type":"track","anonymousId":"a","messageId":"bad-no-event"},
	  {"type":"page","anonymousId":"a","messageId":"g2"},
	  {"type":"nonsense","anonymousId":"a","messageId":"bad-type"},
	  {"type":"identify","userId":"u","messageId":"g3"},
	  {"type":"track","event":"other site","anonymousId":"a","writeKey":"nope","messageId":"bad-key"}]}`)
	if code != 400 {
		t.Fatalf("partial batch: %d %s", code, body)
	}
	var e struct {
		Errors []struct {
			Index     int    `json:"index"`
			MessageID string `json:"messageId"`
			Error     string `json:"error"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if len(e.Errors) != 3 || e.Errors[0].Index != 1 || e.Errors[1].Index != 3 || e.Errors[2].Index != 5 || e.Errors[2].MessageID != "bad-key" || e.Errors[0].Error == "" {
		t.Fatalf("per-event errors: %s", body)
	}
	if n := len(adminEvents(t, in, "site=demo")); n != 3 {
		t.Fatalf("stored %d good events, want 3", n)
	}
}

func TestDuplicateMessageIDStoredOnce(t *testing.T) {
	in := proxytest.Start(t)
	b := `{"event":"E","anonymousId":"a","messageId":"same-id"}`
	for i := 0; i < 3; i++ {
		if code, body := in.Post("/v1/track", "demo", b); code != 200 {
			t.Fatalf("send %d: %d %s", i, code, body)
		}
	}
	in.Restart()
	if code, _ := in.Post("/v1/track", "demo", b); code != 200 {
		t.Fatal("after restart")
	}
	if n := len(adminEvents(t, in, "site=demo")); n != 1 {
		t.Fatalf("stored %d, want 1", n)
	}
	if msgs := waitStream(t, in, 1); len(msgs) != 1 {
		t.Fatalf("stream has %d", len(msgs))
	}
}

func TestCORS(t *testing.T) {
	in := proxytest.Start(t)
	h := http.Header{
		"Origin":                         {"http://localhost:3000"},
		"Access-Control-Request-Method":  {"POST"},
		"Access-Control-Request-Headers": {"authorization,content-type,x-retry-count"},
	}
	req, _ := http.NewRequest("OPTIONS", in.URL+"/v1/batch", nil)
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	allow := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, want := range []string{"authorization", "content-type", "x-retry-count"} {
		if !strings.Contains(allow, want) {
			t.Errorf("preflight does not allow %s: %q", want, allow)
		}
	}
	req, _ = http.NewRequest("OPTIONS", in.URL+"/v1/batch", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("evil preflight: %d %v", resp.StatusCode, resp.Header)
	}
	code, _ := in.Do("POST", "/v1/track", []byte(`{"writeKey":"demo","event":"E","anonymousId":"a"}`), http.Header{"Origin": {"http://127.0.0.1:8080"}})
	if code != 200 {
		t.Fatalf("allowed origin: %d", code)
	}
}

func TestPixel(t *testing.T) {
	in := proxytest.Start(t)
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", in.URL+path, nil)
		req.Header.Set("User-Agent", browserUA)
		return http.DefaultClient.Do(req)
	}
	resp, err := get("/v1/p.gif?k=demo&url=" + "https%3A%2F%2Fshop.example%2Fa%3Futm_medium%3Dmail%26token%3Dsecret&title=Hi")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" || !bytes.HasPrefix(b, []byte("GIF89a")) {
		t.Fatalf("pixel: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	if !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
		t.Fatalf("pixel cacheable: %v", resp.Header)
	}
	evs := adminEvents(t, in, "site=demo")
	if len(evs) != 1 || evs[0]["type"] != "page" || evs[0]["mode"] != "anonymous" || evs[0]["source"] != "pixel" {
		t.Fatalf("pixel event: %v", evs)
	}
	if p := evs[0]["page"].(map[string]any); p["path"] != "/a" || p["url"] != nil {
		t.Fatalf("anonymous pixel page: %v", p)
	}
	// With consent in the pixel and an anonymous id, the hit is pseudonymous.
	resp, err = get("/v1/p.gif?k=demo&aid=abc&consent=analytics&url=https%3A%2F%2Fshop.example%2Fb")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	evs = adminEvents(t, in, "site=demo")
	if len(evs) != 2 || evs[0]["mode"] != "pseudonymous" || evs[0]["anonymous_id"] == nil || evs[0]["anonymous_id"] == "abc" {
		t.Fatalf("consented pixel event: %v", evs[0])
	}
	if code, body := in.Do("GET", "/v1/p.gif?k=nope", nil, nil); code != 401 {
		t.Fatalf("pixel with unknown key: %d %s", code, body)
	}
	// A crawler fetching the pixel is counted, not stored.
	if code, _ := in.Do("GET", "/v1/p.gif?k=demo", nil, http.Header{"User-Agent": {"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}}); code != 200 {
		t.Fatalf("bot pixel: %d", code)
	}
	if evs := adminEvents(t, in, "site=demo"); len(evs) != 2 {
		t.Fatalf("bot hit stored: %d events", len(evs))
	}
	_, metrics := in.Do("GET", "/metrics", nil, nil)
	if !bytes.Contains(metrics, []byte(`vigie_bot_hits_total{site="demo"} 1`)) {
		t.Fatal("bot hit not counted")
	}
}

func TestSettingsForAnalyticsNext(t *testing.T) {
	in := proxytest.Start(t)
	code, body := in.Do("GET", "/v1/projects/demo/settings", nil, nil)
	if code != 200 {
		t.Fatalf("settings: %d %s", code, body)
	}
	var s struct {
		Integrations map[string]struct {
			APIKey  string `json:"apiKey"`
			APIHost string `json:"apiHost"`
		} `json:"integrations"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	seg := s.Integrations["Segment.io"]
	if seg.APIKey != "demo" || seg.APIHost != strings.TrimPrefix(in.URL, "http://")+"/v1" {
		t.Fatalf("settings: %s", body)
	}
	if code, _ := in.Do("GET", "/v1/projects/nope/settings", nil, nil); code != 404 {
		t.Fatalf("unknown key settings: %d", code)
	}
}

func TestAdminNeedsToken(t *testing.T) {
	in := proxytest.Start(t)
	for _, h := range []http.Header{nil, {"Authorization": {"Bearer wrong"}}, {"Authorization": {in.AdminToken()}}} {
		if code, body := in.Do("GET", "/admin/v1/events", nil, h); code != 401 {
			t.Fatalf("admin with %v: %d", h, code)
		} else {
			decodeErr(t, body)
		}
	}
	if code, body := in.Admin("/admin/v1/stats"); code != 200 || !bytes.Contains(body, []byte("outbox_depth")) {
		t.Fatalf("stats: %d %s", code, body)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	in := proxytest.Start(t)
	in.Post("/v1/track", "demo", `{"event":"E","anonymousId":"a"}`)
	in.Post("/v1/track", "nope", `{"event":"E","anonymousId":"a"}`)
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := in.Do("GET", p, nil, nil); code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	_, body := in.Do("GET", "/metrics", nil, nil)
	for _, want := range []string{
		`vigie_events_accepted_total{site="demo",type="track"} 1`,
		`vigie_events_rejected_total{reason="write_key"} 1`,
		`vigie_consent_decisions_total{outcome="anonymous"} 1`,
		"vigie_ingest_duration_seconds_bucket", "vigie_outbox_depth", "vigie_publish_errors_total",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestConsentDecisions(t *testing.T) {
	drop := func(c *config.Config) { c.Sites[0].Consent.Unconsented = "drop" }
	cases := []struct {
		name     string
		opts     []proxytest.Option
		consent  string
		hdr      http.Header
		stored   bool
		mode     string
		purposes string
	}{
		{"no consent, anonymous policy", nil, ``, nil, true, "anonymous", ""},
		{"no consent, drop policy", []proxytest.Option{drop}, ``, nil, false, "", ""},
		{"analytics granted", nil, `{"analytics":true}`, nil, true, "pseudonymous", "[analytics necessary]"},
		{"segment categories", nil, `{"categoryPreferences":{"Advertising":true,"Analytics":true}}`, nil, true, "pseudonymous", "[analytics marketing necessary]"},
		{"GPC beats marketing grant", nil, `{"analytics":true,"marketing":true}`, http.Header{"Sec-Gpc": {"1"}}, true, "pseudonymous", "[analytics necessary]"},
		{"DNT denies marketing", nil, `{"marketing":true,"analytics":true}`, http.Header{"Dnt": {"1"}}, true, "pseudonymous", "[analytics necessary]"},
		{"explicit denial", nil, `{"analytics":false}`, nil, true, "anonymous", ""},
		{"invalid consent is none", nil, `{"analytics":"yes please"}`, nil, true, "anonymous", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := proxytest.Start(t, c.opts...)
			ctx := ""
			if c.consent != "" {
				ctx = `,"context":{"consent":` + c.consent + `}`
			}
			h := http.Header{}
			for k, v := range c.hdr {
				h[k] = v
			}
			r, _ := http.NewRequest("POST", "/", nil)
			r.SetBasicAuth("demo", "")
			h.Set("Authorization", r.Header.Get("Authorization"))
			code, body := in.Do("POST", "/v1/track", []byte(`{"event":"E","anonymousId":"a","userId":"u"`+ctx+`}`), h)
			if code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			evs := adminEvents(t, in, "site=demo")
			if !c.stored {
				if len(evs) != 0 {
					t.Fatalf("stored %v", evs)
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("stored %d", len(evs))
			}
			ev := evs[0]
			if ev["mode"] != c.mode {
				t.Fatalf("mode %v, want %s", ev["mode"], c.mode)
			}
			if c.mode == "anonymous" && (ev["user_id"] != nil || ev["anonymous_id"] != nil || ev["subject"] != nil) {
				t.Fatalf("anonymous event keeps an identifier: %v", ev)
			}
			if got := fmt.Sprint(ev["purposes"]); c.purposes != "" && got != c.purposes {
				t.Fatalf("purposes %s, want %s", got, c.purposes)
			}
		})
	}
}

func TestNewRefusesBadPluginConfig(t *testing.T) {
	for _, c := range []struct {
		name    string
		plugins []config.Plugin
		want    []string
	}{
		{"unknown built-in", []config.Plugin{{Name: "geoipp"}}, []string{`"geoipp" is not a built-in`, "geoip, "}},
		{"bad expression", []config.Plugin{{Name: "segments", Config: map[string]any{"segments": []any{
			map[string]any{"name": "hot", "when": "profile.scor >= 1"},
		}}}}, []string{`segment "hot"`, ":1:"}},
		{"non-bool expression", []config.Plugin{{Name: "segments", Config: map[string]any{"segments": []any{
			map[string]any{"name": "n", "when": "profile.score"},
		}}}}, []string{`segment "n"`}},
	} {
		cfg := config.Default()
		cfg.Plugins = c.plugins
		_, err := proxy.New(cfg, nil)
		if !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
}

func TestSnippetServed(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.SnippetPath = "/t/s.js" })
	req, _ := http.NewRequest("GET", in.URL+"/t/s.js", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(zr)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		!bytes.Contains(js, []byte("vigie.js")) || resp.Header.Get("ETag") == "" {
		t.Fatalf("snippet: %d %v %d bytes", resp.StatusCode, resp.Header, len(js))
	}
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	if resp, err := http.DefaultTransport.RoundTrip(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: %v %v", resp, err)
	}
	if code, _ := in.Do("GET", "/s.js", nil, nil); code != 404 {
		t.Fatalf("default path still served after moving it: %d", code)
	}
}
