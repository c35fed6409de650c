package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/plugins/geoip/geodb/geodbtest"
	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/preflight"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// TestAnonymousEventsAtRest: with the default configuration, what Badger
// holds of anonymous events carries no IP prefix and no time finer than
// the hour, while pseudonymous ones keep both.
func TestAnonymousEventsAtRest(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.Plugins = []config.Plugin{} })
	for _, body := range []string{
		`{"event":"Anon","anonymousId":"a1","context":{"ip":"192.0.2.7","page":{"path":"/orders/7654321"}}}`,
		`{"event":"Pseudo","anonymousId":"a2","context":{"ip":"192.0.2.7","consent":{"analytics":true}}}`,
	} {
		if code, b := in.Post("/v1/track", "demo", body); code != 200 {
			t.Fatalf("track: %d %s", code, b)
		}
	}
	seen := 0
	err := in.Server.Store().ScanAllVersions(func(k, v []byte) error {
		if !bytes.HasPrefix(k, []byte("e/")) {
			return nil
		}
		ev := &vigiev1.Event{}
		if err := proto.Unmarshal(v, ev); err != nil {
			return err
		}
		seen++
		const hour = int64(time.Hour / time.Millisecond)
		switch ev.GetName() {
		case "Anon":
			if ev.GetIpPrefix() != "" || ev.GetTimestampMs()%hour != 0 || ev.GetReceivedAtMs()%hour != 0 || ev.GetPage().GetPath() != "/orders/[id]" {
				t.Errorf("anonymous event at rest: prefix %q, times %d %d, path %q", ev.GetIpPrefix(), ev.GetTimestampMs(), ev.GetReceivedAtMs(), ev.GetPage().GetPath())
			}
		case "Pseudo":
			if ev.GetIpPrefix() != "192.0.2.0/24" {
				t.Errorf("pseudonymous event at rest: prefix %q", ev.GetIpPrefix())
			}
		}
		return nil
	})
	if err != nil || seen != 2 {
		t.Fatalf("scanned %d events: %v", seen, err)
	}
}

// TestClickIDsAtRest: with marketing consent, a gclid is stored as a
// pseudonym in the campaign, and the stored URL holds no click id.
func TestClickIDsAtRest(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.Plugins = []config.Plugin{} })
	body := `{"type":"page","anonymousId":"a1","context":{"consent":{"analytics":true,"marketing":true},
	  "page":{"url":"https://shop.example/p?gclid=Cj0KCQclickcanary&utm_source=ads"}}}`
	if code, b := in.Post("/v1/page", "demo", body); code != 200 {
		t.Fatalf("page: %d %s", code, b)
	}
	_, raw := in.Admin("/admin/v1/events?site=demo")
	if bytes.Contains(raw, []byte("clickcanary")) || !bytes.Contains(raw, []byte(`"gclid"`)) {
		t.Fatalf("stored: %s", raw)
	}
}

// TestAnonymousEmailHitsAreCounters: an open and a click that may not be
// attributed leave no event in Badger, only campaign-level counters.
func TestAnonymousEmailHitsAreCounters(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.Plugins = []config.Plugin{} })
	pixel, click := mergeTagCampaign(t, in, "solo", "*|VIGIE|*")
	hitWith(t, pixel, click, "*|VIGIE|*", "someone@example.org") // not a value Vigie signed
	err := in.Server.Store().ScanAllVersions(func(k, _ []byte) error {
		if bytes.HasPrefix(k, []byte("e/")) {
			t.Errorf("an anonymous e-mail hit is stored as an event: %q", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	counts := emailCounts(t, in, "solo")
	if len(counts) != 2 {
		t.Fatalf("counters %+v, want an open and a click", counts)
	}
	for _, c := range counts {
		if c.Count != 1 || !strings.HasSuffix(c.Hour, ":00:00Z") || (c.Kind == "click") != (c.Link != "") {
			t.Errorf("counter %+v", c)
		}
	}
	if code, _ := in.Admin("/admin/v1/email/counts?site=nope"); code != 400 {
		t.Errorf("unknown site: %d", code)
	}
}

// TestGeoIPAtIngestion: with geoip.database, anonymous events get their
// country at ingestion (no prefix kept), and the built-in geoip plugin,
// configured without a database of its own, uses the same file for
// pseudonymous events.
func TestGeoIPAtIngestion(t *testing.T) {
	db := geodbtest.City(t, t.TempDir(), map[string]geodbtest.Place{
		"192.0.2.0/24": {Country: "FR", CountryName: "France", Continent: "EU", Region: "IDF", City: "Paris", TimeZone: "Europe/Paris"},
	})
	in := proxytest.Start(t, func(c *config.Config) {
		c.GeoIP.Database = db
		c.Plugins = []config.Plugin{{Name: "geoip"}}
	})
	for _, body := range []string{
		`{"event":"Anon","anonymousId":"a1","context":{"ip":"192.0.2.7"}}`,
		`{"event":"Pseudo","anonymousId":"a2","context":{"ip":"192.0.2.7","consent":{"analytics":true}}}`,
	} {
		if code, b := in.Post("/v1/track", "demo", body); code != 200 {
			t.Fatalf("track: %d %s", code, b)
		}
	}
	for _, ev := range adminEvents(t, in, "site=demo") {
		geo, _ := ev["geo"].(map[string]any)
		switch ev["name"] {
		case "Anon":
			if len(geo) != 1 || geo["country"] != "FR" || ev["ip_prefix"] != nil {
				t.Errorf("anonymous event: geo %v prefix %v, want the country only", geo, ev["ip_prefix"])
			}
		case "Pseudo":
			if geo != nil {
				t.Errorf("pseudonymous event located at ingestion: %v", geo)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := in.Admin("/admin/v1/enriched?site=demo")
		if bytes.Contains(body, []byte(`"Paris"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the geoip plugin did not use geoip.database: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCNILExemptSite: a site in cnil_exempt mode keeps analytics only and
// no user id, refuses at start a plugin that could receive its
// identifiers, and vigie check reports each condition.
func TestCNILExemptSite(t *testing.T) {
	cnil := func(c *config.Config) {
		c.Sites[0].Mode = config.ModeCNILExempt
		c.Plugins = []config.Plugin{{Name: "geoip"}, {Name: "segments"}, {Name: "recorder", Config: map[string]any{"file": t.TempDir() + "/in.txt"}}}
	}
	in := proxytest.Start(t, cnil)
	for _, body := range []string{
		`{"type":"track","event":"Bought","userId":"u-1","anonymousId":"a-1","context":{"ip":"192.0.2.7","consent":{"analytics":true,"marketing":true}}}`,
		`{"type":"identify","userId":"u-1","anonymousId":"a-1","traits":{"plan":"pro"},"context":{"consent":{"analytics":true}}}`,
	} {
		if code, b := in.Post("/v1/batch", "demo", `{"batch":[`+body+`]}`); code != 200 {
			t.Fatalf("batch: %d %s", code, b)
		}
	}
	evs := adminEvents(t, in, "site=demo")
	if len(evs) != 1 {
		t.Fatalf("stored %d events, want the track only: %v", len(evs), evs)
	}
	ev := evs[0]
	if ps, _ := ev["purposes"].([]any); len(ps) != 2 || ev["user_id"] != nil || ev["anonymous_id"] == nil || ev["ip_prefix"] != "192.0.0.0/16" {
		t.Fatalf("cnil_exempt event: %v", ev)
	}

	// The recorder (a built-in that keeps what it gets) is refused; geoip
	// and segments run.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct{ Plugins []plugins.Status }
		_, body := in.Admin("/admin/v1/plugins")
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		states := map[string]plugins.Status{}
		for _, p := range st.Plugins {
			states[p.Name] = p
		}
		rec := states["recorder"]
		if rec.State == plugins.StateFailed && states["geoip"].State == plugins.StateRunning && states["segments"].State == plugins.StateRunning {
			if !strings.Contains(rec.LastError, "cnil_exempt") {
				t.Fatalf("recorder refused for %q", rec.LastError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin states: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// vigie check: one row per condition; the plugin one warns.
	rep := proxy.Check(context.Background(), in.Config)
	rows := map[string]preflight.Result{}
	for _, r := range rep {
		if strings.HasPrefix(r.Name, "cnil_exempt demo: ") {
			rows[strings.TrimPrefix(r.Name, "cnil_exempt demo: ")] = r
		}
	}
	if len(rows) != 9 || rows["data ≤ 25 months"].Status != preflight.Pass || rows["no plugin receiving identifiers"].Status != preflight.Warn ||
		rows["visitors informed, opt-out offered"].Status != preflight.Warn {
		t.Fatalf("check rows: %+v", rows)
	}
	bad := in.Config
	bad.Retention = map[string]config.Duration{"anonymous": 0, "analytics": config.Duration(395 * 24 * time.Hour), "necessary": config.Duration(30 * 24 * time.Hour)}
	if r := proxy.Check(context.Background(), bad); !hasFailed(r, "cnil_exempt demo: data ≤ 25 months", "retention.anonymous is forever") {
		t.Fatalf("check of a configuration keeping anonymous data forever:\n%+v", r)
	}
	if _, err := proxy.New(bad, nil); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "data ≤ 25 months") {
		t.Fatalf("New accepted it: %v", err)
	}
}

// hasFailed reports whether rep has the row name failing with detail.
func hasFailed(rep preflight.Report, name, detail string) bool {
	for _, r := range rep.Failed() {
		if r.Name == name && strings.Contains(r.Detail, detail) {
			return true
		}
	}
	return false
}
