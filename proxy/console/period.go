package console

import (
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// period is a choice of the period picker.
type period struct {
	Name, Label string
	// d is the length of a rolling period ending at the next whole hour.
	d time.Duration
}

// periods are the period picker's choices; "today" starts at UTC
// midnight, "custom" takes the from and to days of the form.
var periods = []period{
	{"today", "Today", 0},
	{"24h", "24 hours", 24 * time.Hour},
	{"7d", "7 days", 7 * 24 * time.Hour},
	{"30d", "30 days", 30 * 24 * time.Hour},
	{"custom", "Custom", 0},
}

// comparisons are what a period may be compared with.
var comparisons = []struct{ Name, Label string }{
	{"previous", "the period before"},
	{"year", "a year before"},
	{"none", "nothing"},
}

// epoch is the first instant the rollups count.
var epoch = time.Unix(0, 0).UTC()

// maxCustomDays bounds a custom period (the rollups answer up to 800
// days).
const maxCustomDays = 800

// span is the period a page shows, the one it is compared with, and the
// picker's state.
type span struct {
	Period  string
	Compare string
	// From and To bound the period, [From, To): whole UTC hours.
	From, To time.Time
	// CompareFrom and CompareTo bound the comparison (zero: none).
	CompareFrom, CompareTo time.Time
	// FromDay and ToDay are the custom form's values (YYYY-MM-DD, To
	// included).
	FromDay, ToDay string
	// Periods and Compares are the picker's choices.
	Periods  []period
	Compares []struct{ Name, Label string }
}

// Link is the page's address with this span and other (site, …).
func (sp span) Link(path, site string) string {
	q := url.Values{"site": {site}, "period": {sp.Period}, "compare": {sp.Compare}}
	if sp.Period == "custom" {
		q.Set("from", sp.FromDay)
		q.Set("to", sp.ToDay)
	}
	return path + "?" + q.Encode()
}

// Label describes the period for headings, e.g. "2026-03-01 to
// 2026-03-07 (UTC)".
func (sp span) Label() string {
	last := sp.To.Add(-time.Hour)
	if sp.From.Format(time.DateOnly) == last.Format(time.DateOnly) {
		return sp.From.Format("2006-01-02 15:04") + " to " + sp.To.Format("15:04") + " UTC"
	}
	return sp.From.Format("2006-01-02 15:04") + " to " + sp.To.Format("2006-01-02 15:04") + " UTC"
}

// spanOf reads the period picker of r (period, compare, from, to), def
// being the default period. A custom period that does not parse gives
// the default period and a message saying why.
func (c *Console) spanOf(r *http.Request, def string) (span, string) {
	q := r.URL.Query()
	now := c.cfg.Now().UTC()
	end := now.Truncate(time.Hour).Add(time.Hour)
	sp := span{Period: def, Compare: "previous", Periods: periods, Compares: comparisons}
	for _, p := range periods {
		if p.Name == q.Get("period") {
			sp.Period = p.Name
		}
	}
	for _, cmp := range comparisons {
		if cmp.Name == q.Get("compare") {
			sp.Compare = cmp.Name
		}
	}
	var msg string
	if sp.Period == "custom" {
		from, to, err := customDays(q.Get("from"), q.Get("to"))
		if err != nil {
			sp.Period = def
			for _, p := range periods {
				if p.Name == def {
					msg = err.Error() + " Showing the last " + p.Label + " instead."
				}
			}
		} else {
			sp.From, sp.To = from, to
		}
	}
	switch sp.Period {
	case "custom":
	case "today":
		sp.From, sp.To = now.Truncate(24*time.Hour), end
	default:
		for _, p := range periods {
			if p.Name == sp.Period {
				sp.From, sp.To = end.Add(-p.d), end
			}
		}
	}
	sp.FromDay, sp.ToDay = sp.From.Format(time.DateOnly), sp.To.Add(-time.Hour).Format(time.DateOnly)
	switch sp.Compare {
	case "previous":
		sp.CompareFrom, sp.CompareTo = sp.From.Add(-sp.To.Sub(sp.From)), sp.From
	case "year":
		sp.CompareFrom, sp.CompareTo = sp.From.AddDate(-1, 0, 0), sp.To.AddDate(-1, 0, 0)
	}
	if sp.CompareFrom.Before(epoch) {
		sp.Compare, sp.CompareFrom, sp.CompareTo = "none", time.Time{}, time.Time{} // nothing was counted before 1970
	}
	return sp, msg
}

// customDays parses a custom period's days: from's midnight to the
// midnight after to (to included), UTC.
func customDays(from, to string) (time.Time, time.Time, error) {
	f, err := time.Parse(time.DateOnly, from)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("The first day must be a date such as 2026-03-01.")
	}
	t, err := time.Parse(time.DateOnly, to)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("The last day must be a date such as 2026-03-31.")
	}
	if f.Before(epoch) {
		return time.Time{}, time.Time{}, fmt.Errorf("The first day must be 1970-01-01 or later.")
	}
	if t.Before(f) {
		return time.Time{}, time.Time{}, fmt.Errorf("The last day is before the first day.")
	}
	if t.Sub(f) >= maxCustomDays*24*time.Hour {
		return time.Time{}, time.Time{}, fmt.Errorf("A period may cover at most %d days.", maxCustomDays)
	}
	return f, t.Add(24 * time.Hour), nil
}
