package rollup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// TestEmailRows: opens and clicks stored as events are counted per
// campaign, kind, class and link, over hours and days, from memory and
// from the store alike; their recipients are not visitors of the site;
// other events carrying an e-mail (an ESP's "Email Sent") count as events
// only.
func TestEmailRows(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{now: t0}
	a := newAgg(t, s, clk, nil)
	type hit struct {
		name, campaign, class, link string
		n                           int
	}
	hits := []hit{
		{EmailOpenedEvent, "spring", "human", "", 5},
		{EmailOpenedEvent, "spring", "privacy_proxy", "", 3},
		{EmailClickedEvent, "spring", "human", "https://shop.example/sale", 2},
		{EmailClickedEvent, "spring", "scanner", "https://shop.example/sale", 4},
		{EmailClickedEvent, "autumn", "human", "https://shop.example/new", 1},
		{"Email Sent", "spring", "", "", 7},
	}
	want := map[string]uint64{} // per day
	i := 0
	for day := range 3 { // three days: the middle one is whole (a day bucket)
		for _, h := range hits {
			for range h.n {
				i++
				at := t0.Add(time.Duration(day)*24*time.Hour + time.Duration(i%20)*time.Hour)
				ev := &vigiev1.Event{Id: fmt.Sprint(i), Site: "shop", Type: "track", Name: h.name, Source: "email",
					TimestampMs: at.UnixMilli(), ReceivedAtMs: at.UnixMilli(), Mode: vigiev1.Mode_MODE_PSEUDONYMOUS,
					Subject: fmt.Sprintf("recipient-%d", i%3), Purposes: []string{"marketing", "necessary"},
					Email: &vigiev1.Email{Campaign: h.campaign, Class: h.class, Link: h.link}}
				clk.now = at.Add(time.Minute)
				if err := a.Add(ctx, ev); err != nil {
					t.Fatal(err)
				}
				if k := emailKind(h.name); k != "" && day == 0 {
					want[emailKey(k, h.class, h.campaign, h.link)]++
				}
			}
		}
		if day == 1 {
			if err := a.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(what string, a *Aggregator, from, to time.Time, factor uint64) {
		t.Helper()
		st, err := a.Email(ctx, "shop", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Rows) != len(want) || st.Other != 0 {
			t.Fatalf("%s: %d rows (other %d), want %d: %+v", what, len(st.Rows), st.Other, len(want), st.Rows)
		}
		for j, r := range st.Rows {
			if n := want[emailKey(r.Kind, r.Class, r.Campaign, r.Link)] * factor; r.Count != n {
				t.Errorf("%s: %+v, want count %d", what, r, n)
			}
			if j > 0 && r.Count > st.Rows[j-1].Count {
				t.Errorf("%s: rows not largest first", what)
			}
		}
		ov, err := a.Overview(ctx, "shop", from, to, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if ov.Totals.Visitors != 0 || ov.Totals.Events != 22*factor {
			t.Errorf("%s: visitors %d events %d, want 0 and %d", what, ov.Totals.Visitors, ov.Totals.Events, 22*factor)
		}
	}
	check("memory", a, t0, t0.Add(72*time.Hour), 3)
	check("one day", a, t0.Add(24*time.Hour), t0.Add(48*time.Hour), 1)
	clk.now = t0.Add(5 * 24 * time.Hour)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("store", newAgg(t, s, clk, nil), t0, t0.Add(72*time.Hour), 3)

	if _, err := a.Email(ctx, "", t0, t0.Add(time.Hour)); err == nil {
		t.Error("an empty site was accepted")
	}
	if _, err := a.Email(ctx, "shop", t0, t0); err == nil {
		t.Error("an empty period was accepted")
	}
}
