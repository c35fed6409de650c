package proxy_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/config"
)

// basicAuth is a Basic Authorization header with user as the write key.
func basicAuth(user string) http.Header {
	return http.Header{"Authorization": {basic(user)}}
}

// TestRudderStackSourceConfig: RudderStack's JavaScript SDK v3 reads
// GET /sourceConfig/ (write key in the query, or Basic) and starts only
// with a source object holding an id, a config object and a destinations
// array (its isValidSourceConfig).
func TestRudderStackSourceConfig(t *testing.T) {
	in := startLean(t)
	for _, c := range []struct {
		name   string
		path   string
		hdr    http.Header
		status int
		code   string
	}{
		{"write key in the query", "/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey=demo&lockIntegrationsVersion=true&lockPluginsVersion=true", nil, 200, ""},
		{"write key as Basic user", "/sourceConfig/?p=npm", basicAuth("demo"), 200, ""},
		{"allowed origin", "/sourceConfig/?writeKey=demo", http.Header{"Origin": {"http://localhost:3000"}}, 200, ""},
		{"unknown write key", "/sourceConfig/?writeKey=nope", nil, 401, "unknown_write_key"},
		{"no write key", "/sourceConfig/", nil, 401, "missing_write_key"},
		{"origin of no site", "/sourceConfig/?writeKey=demo", http.Header{"Origin": {"https://evil.example"}}, 403, "origin_not_allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := in.Do("GET", c.path, nil, c.hdr)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			if c.code != "" {
				if m := decodeErr(t, body); m["code"] != c.code {
					t.Fatalf("code %v, want %s", m["code"], c.code)
				}
				return
			}
			var res struct {
				Source struct {
					ID           string
					Enabled      bool
					Config       map[string]any
					Destinations []any
				}
			}
			if err := json.Unmarshal(body, &res); err != nil {
				t.Fatal(err)
			}
			if res.Source.ID != "demo" || !res.Source.Enabled || res.Source.Config == nil || res.Source.Destinations == nil || len(res.Source.Destinations) != 0 {
				t.Fatalf("source config: %s", body)
			}
		})
	}
}

// TestCORSAllowsClientHeaders: a preflight asking for every header the
// browser clients send (RudderStack's AnonymousId, SentAt and Rsa-* retry
// headers, Segment's X-Retry-Count, Vigie's test header) is allowed, on
// every browser route.
func TestCORSAllowsClientHeaders(t *testing.T) {
	in := startLean(t)
	asked := []string{"authorization", "content-type", "anonymousid", "sentat", "rsa-recovered", "rsa-retry-attempt",
		"rsa-retry-reason", "rsa-since-first-attempt", "rsa-since-last-attempt", "x-retry-count", "x-vigie-test"}
	for _, path := range []string{"/v1/track", "/v1/page", "/v1/batch", "/sourceConfig/", "/beacon/v1/batch"} {
		req, _ := http.NewRequest("OPTIONS", in.URL+path, nil)
		req.Header.Set("Origin", "http://localhost:5173")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", strings.Join(asked, ","))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
			t.Fatalf("%s: preflight %d %v", path, resp.StatusCode, resp.Header)
		}
		var allowed []string
		for _, h := range strings.Split(resp.Header.Get("Access-Control-Allow-Headers"), ",") {
			allowed = append(allowed, strings.ToLower(strings.TrimSpace(h)))
		}
		for _, h := range asked {
			if !slices.Contains(allowed, h) {
				t.Errorf("%s: header %s not allowed (allowed: %v)", path, h, allowed)
			}
		}
	}
}

// TestWriteKeyInQuery: RudderStack's beacon transport posts a text/plain
// batch to /beacon/v1/batch with the write key in the writeKey query
// parameter; its SDKs send that parameter on other transports too, and it
// is accepted wherever a write key is read.
func TestWriteKeyInQuery(t *testing.T) {
	in := startLean(t)
	beacon := `{"batch":[{"type":"track","event":"Beacon Sent","anonymousId":"a-1","messageId":"m-1","channel":"web",
"context":{"library":{"name":"RudderLabs JavaScript SDK","version":"3.34.1"}},"originalTimestamp":"2026-01-02T03:04:05.000Z","sentAt":"2026-01-02T03:04:05.100Z"}],
"sentAt":"2026-01-02T03:04:05.100Z"}`
	for _, c := range []struct {
		name, method, path, body, contentType string
		status                                int
	}{
		{"beacon batch", "POST", "/beacon/v1/batch?writeKey=demo", beacon, "text/plain;charset=UTF-8", 200},
		{"beacon batch, unknown key", "POST", "/beacon/v1/batch?writeKey=nope", beacon, "text/plain;charset=UTF-8", 401},
		{"beacon batch, no key", "POST", "/beacon/v1/batch", beacon, "text/plain;charset=UTF-8", 401},
		{"track", "POST", "/v1/track?writeKey=demo", `{"event":"Query Key","anonymousId":"a-2"}`, "application/json", 200},
		{"pixel", "GET", "/v1/p.gif?writeKey=demo&url=https://shop.example/", "", "", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := http.Header{}
			if c.contentType != "" {
				hdr.Set("Content-Type", c.contentType)
			}
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			status, resp := in.Do(c.method, c.path, body, hdr)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, resp)
			}
		})
	}
	names := map[string]bool{}
	for _, ev := range adminEvents(t, in, "site=demo") {
		names[ev["name"].(string)] = true
	}
	if !names["Beacon Sent"] || !names["Query Key"] {
		t.Fatalf("stored: %v", names)
	}
	if status, _ := in.Do("GET", "/beacon/v1/batch", nil, nil); status != http.StatusMethodNotAllowed {
		t.Fatalf("GET on the beacon route: %d, want 405", status)
	}
}

// TestRudderStackConsentManagement: context.consentManagement decides
// purposes like the other consent signals, through the site's
// consent_management map (over the defaults) and its categories.
func TestRudderStackConsentManagement(t *testing.T) {
	in := startLean(t, func(c *config.Config) {
		c.Sites[0].Consent.ConsentManagement = map[string]map[string][]consent.Purpose{
			"ketch": {"behavioral_advertising": {consent.Marketing}, "web_stats": {consent.Analytics}},
		}
	})
	for _, c := range []struct {
		name, cm, mode, purposes string
	}{
		{"onetrust performance allowed", `{"provider":"oneTrust","allowedConsentIds":["C0001","C0002"],"deniedConsentIds":["C0003","C0004"],"resolutionStrategy":"and"}`,
			"pseudonymous", "analytics,necessary"},
		{"onetrust all refused", `{"provider":"oneTrust","allowedConsentIds":["C0001"],"deniedConsentIds":["C0002","C0003","C0004"]}`, "anonymous", ""},
		{"iubenda by default", `{"provider":"iubenda","allowedConsentIds":["1","4","5"],"deniedConsentIds":["2","3"]}`, "pseudonymous", "analytics,marketing,necessary"},
		{"ketch from the site's map", `{"provider":"ketch","allowedConsentIds":["web_stats","behavioral_advertising"],"deniedConsentIds":[]}`, "pseudonymous", "analytics,marketing,necessary"},
		{"GPC still denies marketing", `{"provider":"custom","allowedConsentIds":["analytics","marketing"]}`, "pseudonymous", "analytics,necessary"},
		{"invalid ids: no consent", `{"provider":"custom","allowedConsentIds":"analytics"}`, "anonymous", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := basicAuth("demo")
			if strings.HasPrefix(c.name, "GPC") {
				hdr.Set("Sec-GPC", "1")
			}
			// A visitor of their own each: the ledger would otherwise give
			// an event without a valid signal the previous choice.
			body := `{"event":"` + c.name + `","anonymousId":"` + c.name + `","context":{"consentManagement":` + c.cm + `}}`
			if status, resp := in.Do("POST", "/v1/track", []byte(body), hdr); status != 200 {
				t.Fatalf("track: %d %s", status, resp)
			}
			var got map[string]any
			for _, ev := range adminEvents(t, in, "site=demo") {
				if ev["name"] == c.name {
					got = ev
				}
			}
			var ps []string
			if l, ok := got["purposes"].([]any); ok {
				for _, p := range l {
					ps = append(ps, p.(string))
				}
			}
			slices.Sort(ps)
			if got["mode"] != c.mode || strings.Join(ps, ",") != c.purposes {
				t.Fatalf("stored %v, want %s %s", got, c.mode, c.purposes)
			}
		})
	}
	if v := metricValue(t, in, `vigie_events_rejected_total{reason="invalid_consent_string"}`); v != "1" {
		t.Fatalf("invalid consentManagement counted %q times, want 1", v)
	}
}
