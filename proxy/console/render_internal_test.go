package console

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestPagesRenderTheirSources renders the pages whose data comes from the
// parts built later with such data, as their sources will give it: the
// template of each shows it (the browser test sees their waiting state).
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
	for _, tc := range []struct {
		page string
		data any
		want []string
	}{
		{"overview", overviewView{Ready: true, Periods: periods, Period: "7d", O: ov, Previous: &ov.Compare.Totals,
			Series: chartData{Labels: []string{"Page views"}, Data: [][]float64{{1}, {7}}}},
			[]string{">42<", "before: 40", "/pricing", "60 %", "gpc denial", `data-chart="{&#34;labels&#34;`}},
		{"privacy", privacyView{Ready: true, Requests: []PrivacyRequest{{ID: "pr_1", Type: "erase", Site: "demo", Status: "running",
			CreatedAt: now, Deadline: time.Now().Add(29 * 24 * time.Hour), IdentifierKind: "email", SubjectCount: 1,
			Steps: []PrivacyStep{{Name: "events", Status: "done"}}}, {ID: "pr_0", Type: "export", Status: "done", CompletedAt: &done}}},
			[]string{"pr_1", "events: done", "left", "by email", "done 2026-03-01 11:00:00"}},
		{"email", emailView{Ready: true, Campaigns: []Campaign{{Name: "spring-sale", Opens: EmailCounts{Human: 3, PrivacyProxy: 1},
			Clicks: EmailCounts{Human: 1, Scanner: 1}, Links: []LinkStats{{URL: "https://shop.example/sale", Clicks: EmailCounts{Human: 1}}}}}},
			[]string{"spring-sale", "75 %", "50 %", "https://shop.example/sale"}},
		{"destinations", destinationsView{Ready: true, Destinations: []Destination{{Name: "hubspot", Kind: "crm", State: "running", Lag: 4, DeadLetters: 1, LastError: "429"}}},
			[]string{"hubspot", "Resync", "last error: 429"}},
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
