package proxy_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/plugins/rollup"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// seedOverview sends a run of hits through the API: pseudonymous page
// views from a search engine with utm parameters, internal navigations,
// anonymous visits, a denial, an invalid consent string, a
// track event, a bot, a foreign origin and an unknown write key.
func seedOverview(t *testing.T, in *proxytest.Instance) {
	t.Helper()
	const chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	hits := []struct {
		n          int
		path, body string
		hdr        http.Header
		want       int
	}{
		{3, "/v1/page", `{"userId":"u1","name":"Pricing","context":{"userAgent":"` + chrome + `","consent":{"analytics":true},"page":{"path":"/pricing","url":"https://shop.example/pricing?utm_campaign=spring&utm_source=newsletter&utm_medium=email","referrer":"https://www.google.com/search"}}}`, nil, 200},
		{2, "/v1/page", `{"anonymousId":"a2","context":{"consent":{"analytics":true},"page":{"path":"/docs","url":"https://shop.example/docs","referrer":"https://shop.example/pricing"}}}`, nil, 200},
		{2, "/v1/page", `{"anonymousId":"a3","context":{"page":{"path":"/","url":"https://shop.example/"}}}`, nil, 200},
		{1, "/v1/track", `{"userId":"u1","event":"Signed Up","context":{"consent":{"analytics":true,"marketing":true}}}`, nil, 200},
		{1, "/v1/page", `{"anonymousId":"a4","context":{"consent":{"analytics":false},"page":{"path":"/","url":"https://shop.example/","referrer":"https://news.example/"}}}`, nil, 200},
		{1, "/v1/page", `{"anonymousId":"a5","context":{"consent":{"tcf":"not-a-tc-string"},"page":{"path":"/faq","url":"https://shop.example/faq"}}}`, nil, 200},
		{1, "/v1/page", `{"anonymousId":"a6","context":{"userAgent":"curl/8.5.0","consent":{"analytics":true},"page":{"path":"/"}}}`, nil, 200},
		{1, "/v1/track", `{"anonymousId":"a7","event":"x","writeKey":"demo"}`, http.Header{"Origin": {"https://evil.example"}}, 403},
	}
	for _, h := range hits {
		for range h.n {
			hdr := http.Header{"Authorization": {"Basic ZGVtbzo="}} // demo:
			for k, v := range h.hdr {
				hdr[k] = v
			}
			if code, b := in.Do("POST", h.path, []byte(h.body), hdr); code != h.want {
				t.Fatalf("POST %s %s: %d %s", h.path, h.body, code, b)
			}
		}
	}
	if code, _ := in.Post("/v1/track", "no-such-key", `{"event":"x","anonymousId":"a"}`); code == 200 {
		t.Fatal("an unknown write key was accepted")
	}
}

// bruteForce counts the stored events of site as the rollups define the
// figures (plugins/rollup/README.md), reading every event.
type bruteForce struct {
	events, pageViews, visits [3]uint64 // by mode: 0 all, 1 anonymous, 2 pseudonymous
	visitors                  map[string]bool
	pages, entries, sources   map[string]uint64
	campaigns, devices        map[string]uint64
	browsers, types           map[string]uint64
	purposes                  map[string]uint64
}

func countStored(t *testing.T, s *storage.Store, site string, hosts []string) *bruteForce {
	t.Helper()
	bf := &bruteForce{visitors: map[string]bool{}, pages: map[string]uint64{}, entries: map[string]uint64{}, sources: map[string]uint64{},
		campaigns: map[string]uint64{}, devices: map[string]uint64{}, browsers: map[string]uint64{}, types: map[string]uint64{}, purposes: map[string]uint64{}}
	var evs []*vigiev1.Event
	_, _, err := s.ListEvents(context.Background(), site, storage.EventQuery{Limit: 10_000, Keep: func(b []byte) bool {
		ev := &vigiev1.Event{}
		if proto.Unmarshal(b, ev) != nil {
			t.Fatal("a stored event does not decode")
		}
		evs = append(evs, ev)
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(evs) // oldest first, as the rollups saw them
	none := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	for _, ev := range evs {
		m := 1
		if ev.Mode == vigiev1.Mode_MODE_PSEUDONYMOUS {
			m = 2
			bf.visitors[ev.Subject] = true
			for _, p := range ev.Purposes {
				bf.purposes[p]++
			}
		}
		bf.events[0]++
		bf.events[m]++
		bf.types[ev.Type]++
		if ev.Type != "page" {
			continue
		}
		bf.pageViews[0]++
		bf.pageViews[m]++
		pg := ev.GetPage()
		bf.pages[none(pg.GetPath())]++
		if u, err := url.Parse(pg.GetUrl()); err == nil && u.Host != "" && !slices.Contains(hosts, u.Host) {
			hosts = append(hosts, u.Host)
		}
		ref := strings.TrimPrefix(pg.GetReferrerHost(), "www.")
		if ref != "" && slices.Contains(hosts, ref) {
			continue // internal: not a visit
		}
		bf.visits[0]++
		bf.visits[m]++
		bf.entries[none(pg.GetPath())]++
		src := pg.GetReferrerHost()
		if src == "" {
			src = "(direct)"
		}
		bf.sources[src]++
		bf.campaigns[none(ev.GetCampaign().GetName())]++
		bf.devices[none(ev.GetDevice().GetClass())]++
		bf.browsers[none(ev.GetDevice().GetBrowser())]++
	}
	return bf
}

// overview reads GET /admin/v1/overview.
func overview(t *testing.T, in *proxytest.Instance) rollup.Overview {
	t.Helper()
	code, b := in.Admin("/admin/v1/overview?site=demo")
	if code != 200 {
		t.Fatalf("overview: %d %s", code, b)
	}
	var ov rollup.Overview
	if err := json.Unmarshal(b, &ov); err != nil {
		t.Fatal(err)
	}
	return ov
}

// asMap is a top list as a map, checking it has no "other".
func asMap(t *testing.T, what string, l rollup.List) map[string]uint64 {
	t.Helper()
	if l.Other != 0 {
		t.Errorf("%s: other %d", what, l.Other)
	}
	m := map[string]uint64{}
	for _, e := range l.Entries {
		m[e.Key] = e.Count
	}
	return m
}

// TestOverviewMatchesStoredEvents: with no plugin configured (the enrich
// stage passing events through to the enriched stream), the overview's
// figures equal a brute-force count of the stored events, and its
// decisions the hits sent: kept pseudonymous or anonymous with their
// consent reason, the bot and the foreign origin dropped; after a restart
// nothing is counted twice.
func TestOverviewMatchesStoredEvents(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.Plugins = []config.Plugin{} })
	seedOverview(t, in)
	bf := countStored(t, in.Server.Store(), "demo", []string{"localhost", "127.0.0.1", "[::1]"})
	if bf.events[0] != 10 {
		t.Fatalf("%d events stored, want 10", bf.events[0])
	}
	deadline := time.Now().Add(20 * time.Second)
	for overview(t, in).Totals.Events != bf.events[0] {
		if time.Now().After(deadline) {
			t.Fatalf("the overview counts %d events, %d stored\n%s", overview(t, in).Totals.Events, bf.events[0], in.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ov := overview(t, in); ov.Live.Events != bf.events[0] {
		t.Errorf("live: %d events, want %d", ov.Live.Events, bf.events[0])
	}
	in.Restart() // flushes the decision counters; the consumer resumes after what it committed
	time.Sleep(3 * time.Second)
	ov := overview(t, in)
	tot := ov.Totals
	for _, c := range []struct {
		what      string
		got, want uint64
	}{
		{"events", tot.Events, bf.events[0]}, {"anonymous events", tot.Anonymous.Events, bf.events[1]},
		{"pseudonymous events", tot.Pseudonymous.Events, bf.events[2]},
		{"page views", tot.PageViews, bf.pageViews[0]}, {"anonymous page views", tot.Anonymous.PageViews, bf.pageViews[1]},
		{"visits", tot.Visits, bf.visits[0]}, {"anonymous visits", tot.Anonymous.Visits, bf.visits[1]},
		{"pseudonymous visits", tot.Pseudonymous.Visits, bf.visits[2]},
		{"visitors", tot.Visitors, uint64(len(bf.visitors))},
		{"decided pseudonymous", ov.Decisions.Pseudonymous, bf.events[2]},
		{"decided anonymous", ov.Decisions.Anonymous, bf.events[1]},
		{"dropped", ov.Decisions.Dropped, 2},
		{"consent basis", ov.Consent.Total, bf.events[0]},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, brute force %d", c.what, c.got, c.want)
		}
	}
	for _, l := range []struct {
		what string
		got  rollup.List
		want map[string]uint64
	}{
		{"pages", ov.Top.Pages, bf.pages}, {"entry pages", ov.Top.EntryPages, bf.entries}, {"sources", ov.Top.Sources, bf.sources},
		{"campaigns", ov.Top.Campaigns, bf.campaigns}, {"devices", ov.Top.Devices, bf.devices}, {"browsers", ov.Top.Browsers, bf.browsers},
	} {
		if got := asMap(t, l.what, l.got); !maps.Equal(got, l.want) {
			t.Errorf("%s: %v, brute force %v", l.what, got, l.want)
		}
	}
	types := map[string]uint64{}
	for _, e := range ov.Types {
		types[e.Key] = e.Count
	}
	if !maps.Equal(types, bf.types) {
		t.Errorf("types: %v, brute force %v", types, bf.types)
	}
	// Every decided hit grants necessary; anonymous events keep no purpose.
	bf.purposes["necessary"] += bf.events[1]
	granted := map[string]uint64{}
	for _, p := range ov.Consent.Purposes {
		granted[p.Purpose] = p.Granted
	}
	if !maps.Equal(granted, bf.purposes) {
		t.Errorf("consent: %v granted, brute force %v", granted, bf.purposes)
	}
	reasons := map[string]uint64{}
	for _, r := range ov.Decisions.Reasons {
		reasons[r.Outcome+": "+r.Reason] += r.Count
	}
	want := map[string]uint64{
		"pseudonymous: explicit grant": 6, "anonymous: no consent signal": 2, "anonymous: no identifying grant": 1,
		"anonymous: no consent signal (invalid consent string)": 1, "drop: bot": 1, "drop: origin": 1,
	}
	if !maps.Equal(reasons, want) {
		t.Errorf("reasons: %v\nwant %v", reasons, want)
	}
	if src := asMap(t, "sources", ov.Top.Sources); src["google.com"]+src["www.google.com"] != 3 {
		t.Errorf("the search engine's visits: %v", src)
	}
	if c := asMap(t, "campaigns", ov.Top.Campaigns); c["spring"] != 3 {
		t.Errorf("utm campaign: %v", c)
	}
}

// TestOverviewAPIInput: GET /admin/v1/overview refuses a bad period with
// a JSON error naming the parameter, and answers a comparison when both
// of its ends are given.
func TestOverviewAPIInput(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.Plugins = []config.Plugin{} })
	now := time.Now().UTC().Truncate(time.Hour)
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
	for _, tc := range []struct {
		name, query string
		code        int
		want        string
	}{
		{"not a time", "from=yesterday", 400, `"field":"from"`},
		{"half a comparison", "compare_from=" + ms(now.Add(-48*time.Hour)), 400, `"field":"compare_to"`},
		{"from after to", "from=" + ms(now) + "&to=" + ms(now.Add(-time.Hour)), 400, `"code":"invalid_period"`},
		{"unknown site", "site=nosuch", 400, `"code":"unknown_site"`},
		{"rfc 3339 with comparison", "from=" + now.Add(-24*time.Hour).Format(time.RFC3339) + "&to=" + now.Format(time.RFC3339) +
			"&compare_from=" + ms(now.Add(-48*time.Hour)) + "&compare_to=" + ms(now.Add(-24*time.Hour)), 200, `"compare":{`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := "site=demo&" + tc.query
			if strings.HasPrefix(tc.query, "site=") {
				q = tc.query
			}
			code, b := in.Admin("/admin/v1/overview?" + q)
			if code != tc.code || !strings.Contains(string(b), tc.want) {
				t.Errorf("%d %s, want %d with %s", code, b, tc.code, tc.want)
			}
		})
	}
}
