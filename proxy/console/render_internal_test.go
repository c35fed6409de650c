package console

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
)

// TestPagesRenderTheirSources renders the pages whose data comes from
// other parts with such data, as their sources give it: the template of
// each shows it, including states a seeded run does not reach (a pending
// request's countdown, a destination).
func TestPagesRenderTheirSources(t *testing.T) {
	p, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	done := now.Add(-time.Hour)
	ov := Overview{Site: "demo", Interval: "hour",
		Totals:    Totals{Visitors: 42, Counts: Counts{Visits: 50, PageViews: 120, Events: 150}},
		Series:    []Point{{Start: now.Add(-time.Hour), Totals: Totals{Counts: Counts{PageViews: 7}}}},
		Compare:   &Period{Totals: Totals{Visitors: 40}},
		Top:       Top{Pages: List{Entries: []Entry{{Key: "/pricing", Count: 30}}, Other: 5, Total: 35}},
		Live:      Live{Events: 3},
		Consent:   Consent{Purposes: []PurposeRate{{Purpose: "analytics", Granted: 60, Rate: 0.6}}},
		Decisions: Decisions{Pseudonymous: 60, Anonymous: 40, Dropped: 2, Reasons: []DecisionReasons{{Outcome: "anonymous", Reason: "gpc denial", Count: 4}}},
	}
	sp := span{Period: "7d", Compare: "previous", Periods: periods, Compares: comparisons, From: now.Add(-7 * 24 * time.Hour), To: now}
	stats := LedgerStats{Site: "demo", At: now, Entries: 7, Choices: 5, Expired: 2, Lifetime: 395 * 24 * time.Hour,
		Purposes: []PurposeChoice{{Purpose: "marketing", Granted: 3, Denied: 1}}, Objections: 1,
		Objected: []PurposeCount{{Purpose: "marketing", Count: 1}}, Restricted: 1, Suppressed: 2}
	pending := PrivacyRequest{ID: "pr_1", Type: "erase", Site: "demo", Status: "running", CreatedAt: now, Deadline: now.Add(29 * 24 * time.Hour),
		DaysLeft: 29, IdentifierKind: "email", Subjects: 1, Steps: []PrivacyStep{{Name: "events", Status: "done"}, {Name: "verify", Status: "pending"}}}
	outlook := Retention{ComputedAt: now, Horizon: "7d", NextPurge: now.Add(6 * time.Hour), Kinds: []storage.Upcoming{
		{Kind: storage.KindProfiles, Ends: storage.EndsByPurge, Due: 4, Next: now.Add(6 * time.Hour)},
		{Kind: storage.KindEvents, Class: "anonymous", Ends: storage.EndsByTTL, Due: 12, Next: now.Add(26 * time.Hour)},
		{Kind: storage.KindVault, Ends: storage.EndsByTTL}}}
	for _, tc := range []struct {
		page string
		data any
		want []string
	}{
		{"overview", overviewView{Ready: true, Span: sp, O: ov, Previous: &ov.Compare.Totals, Cards: cards(ov.Totals, &ov.Compare.Totals, ov.Live),
			Lists: []topList{{"top-pages", "Top pages", ov.Top.Pages}}, Series: seriesOf(ov)},
			[]string{">42<", "before: 40", "&#43;5 %", "/pricing", "60 %", "gpc denial", `data-chart="{&#34;labels&#34;`, "Page views, before"}},
		{"privacy", privacyView{Ready: true, Open: 1, Stats: &stats, Form: requestForm{Types: requestTypes, Kinds: identifierKinds},
			Requests: []PrivacyRequest{pending, {ID: "pr_0", Type: "export", Status: "done", CompletedAt: &done}}, Purge: purgeOf(outlook)},
			[]string{"pr_1", "events: done", "29 day(s) left", "by email", "done 2026-03-01 11:00:00", "Choices that apply", "395 days", "75 %", `name="csrf" value="tok"`,
				"Purged next", `<b id="next-purge">2026-03-01 18:00:00</b>`,
				`<td>profiles (idle)</td><td class="num">4</td><td class="mono">2026-03-01 18:00:00</td><td class="why hide-phone">deleted by the purge</td>`,
				`<td>events (anonymous retention)</td><td class="num">12</td><td class="mono">2026-03-02 14:00:00</td><td class="why hide-phone">expire at their time</td>`,
				"Nothing due: vaulted traits."}},
		{"privacy", privacyView{Ready: true, Purge: purgeOf(Retention{ComputedAt: now, Horizon: "7d", Kinds: []storage.Upcoming{{Kind: storage.KindEvents, Ends: storage.EndsByTTL}}})},
			[]string{`<p class="muted" id="purge-none">Nothing ends within the next 7d.</p>`, "Nothing due: events."}},
		{"privacy", privacyView{Ready: true, PurgeErr: "could not be counted"}, []string{"Purged next", "could not be counted"}},
		{"request", requestView{R: pending, Done: 1}, []string{"pr_1", "29 day(s) left", "1 / 2", "verify"}},
		{"email", emailView{Ready: true, Span: sp, Campaigns: []Campaign{{Name: "spring-sale", Opens: EmailCounts{Human: 3, PrivacyProxy: 1},
			Clicks: EmailCounts{Human: 1, Scanner: 1}, Links: []LinkStats{{URL: "https://shop.example/sale", Clicks: EmailCounts{Human: 1}}}}}},
			[]string{"spring-sale", "75 %", "50 %", "https://shop.example/sale"}},
		{"sensitive", sensitiveView{Ready: true, Span: sp, R: SensitiveReport{Site: "demo", Total: 3,
			Categories: []SensitiveCategory{{Category: "health", Label: "Health", Article: "Art. 9", Action: "anonymous", Total: 3, Layers: map[string]uint64{"values": 3}}},
			Detections: []SensitiveCell{{Category: "health", Layer: "values", Count: 3, Examples: []SensitiveExample{{Field: "properties.note", Example: "my [health] record"}}}}}},
			[]string{"Health", "anonymous", "properties.note", "my [health] record"}},
		{"destinations", destinationsView{Ready: true, Destinations: []Destination{{Name: "hubspot", Connector: "hubspot", State: "ok", Backlog: 4, DeadLetters: 1, LastError: "429"}}},
			[]string{"hubspot", "Resync", "last error: 429"}},
		{"response", responseView{Ready: true, T: ResponseTable{Interval: 0.9, MessageTypes: []string{"promo"}}, Rows: heatRows(ResponseTable{
			ContactTypes: []ResponseContactType{{Name: "hot-lead"}}, MessageTypes: []string{"promo"},
			Cells: []ResponseCell{{ContactType: "hot-lead", MessageType: "promo", Exposures: 40, Mean: 0.25, Lower: 0.1, Upper: 0.4}}})},
			[]string{"hot-lead", "25 %", "10 %–40 %", "heat-9"}},
	} {
		var b bytes.Buffer
		if err := p.byName[tc.page].ExecuteTemplate(&b, "layout", &view{Title: tc.page, Page: tc.page, Site: "demo", CSRF: "tok", Data: tc.data}); err != nil {
			t.Fatalf("%s: %v", tc.page, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s lacks %q", tc.page, w)
			}
		}
		if strings.Contains(b.String(), `id="coming"`) {
			t.Errorf("%s shows its waiting state with a source", tc.page)
		}
	}
}
