package console

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSpanOf: the period picker's query gives the period and its
// comparison; a custom period that does not parse falls back to the
// page's own default period and says so; no comparison reaches before
// 1970 (the rollups refuse it).
func TestSpanOf(t *testing.T) {
	now := time.Date(2026, 3, 10, 14, 20, 0, 0, time.UTC)
	c := &Console{cfg: Config{Now: func() time.Time { return now }}}
	end := time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC)
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	for _, tc := range []struct {
		name, query, def     string
		from, to, cmpFrom    time.Time
		period, compare, msg string
	}{
		{"default", "", "30d", end.Add(-30 * 24 * time.Hour), end, end.Add(-60 * 24 * time.Hour), "30d", "previous", ""},
		{"today, a year before", "period=today&compare=year", "7d", day("2026-03-10"), end, day("2025-03-10"), "today", "year", ""},
		{"custom", "period=custom&from=2026-02-01&to=2026-02-28&compare=none", "7d", day("2026-02-01"), day("2026-03-01"), time.Time{}, "custom", "none", ""},
		{"custom not a date, e-mail's default", "period=custom&from=soon&to=2026-02-28", "30d", end.Add(-30 * 24 * time.Hour), end, end.Add(-60 * 24 * time.Hour), "30d", "previous", "The first day must be a date such as 2026-03-01. Showing the last 30 days instead."},
		{"custom reversed", "period=custom&from=2026-02-10&to=2026-02-01", "7d", end.Add(-7 * 24 * time.Hour), end, end.Add(-14 * 24 * time.Hour), "7d", "previous", "The last day is before the first day."},
		{"custom too long", "period=custom&from=2020-01-01&to=2026-01-01", "7d", end.Add(-7 * 24 * time.Hour), end, end.Add(-14 * 24 * time.Hour), "7d", "previous", "at most 800 days"},
		{"custom before 1970", "period=custom&from=1969-12-01&to=1970-01-10", "7d", end.Add(-7 * 24 * time.Hour), end, end.Add(-14 * 24 * time.Hour), "7d", "previous", "1970-01-01 or later"},
		{"comparison before 1970 dropped", "period=custom&from=1970-01-01&to=1970-01-31&compare=year", "7d", day("1970-01-01"), day("1970-02-01"), time.Time{}, "custom", "none", ""},
		{"unknown period", "period=fortnight&compare=decade", "7d", end.Add(-7 * 24 * time.Hour), end, end.Add(-14 * 24 * time.Hour), "7d", "previous", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp, msg := c.spanOf(httptest.NewRequest("GET", "/console/overview?"+tc.query, nil), tc.def)
			if !sp.From.Equal(tc.from) || !sp.To.Equal(tc.to) || !sp.CompareFrom.Equal(tc.cmpFrom) || sp.Period != tc.period || sp.Compare != tc.compare {
				t.Errorf("%s %s–%s compared %s from %s, want %s %s–%s %s from %s", sp.Period, sp.From, sp.To, sp.Compare, sp.CompareFrom,
					tc.period, tc.from, tc.to, tc.compare, tc.cmpFrom)
			}
			if (tc.msg == "") != (msg == "") || !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q, want %q", msg, tc.msg)
			}
		})
	}
}
