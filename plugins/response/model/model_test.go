package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	mt := func(name string) MessageType { return MessageType{Name: name} }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; empty for valid
	}{
		{"empty is valid", Config{}, ""},
		{"defaults", Config{MessageTypes: []MessageType{mt("promo")}}, ""},
		{"other is reserved", Config{ContactTypes: []ContactType{{Name: "other", Segments: []string{"a"}}}}, `"other" is reserved`},
		{"bad contact name", Config{ContactTypes: []ContactType{{Name: "VIP", Segments: []string{"a"}}}}, `contact type "VIP": name`},
		{"duplicate contact type", Config{ContactTypes: []ContactType{{Name: "a", Segments: []string{"a"}}, {Name: "a", Segments: []string{"b"}}}}, "duplicate"},
		{"contact type without segments", Config{ContactTypes: []ContactType{{Name: "a"}}}, "at least one segment"},
		{"empty segment", Config{ContactTypes: []ContactType{{Name: "a", Segments: []string{""}}}}, "empty segment"},
		{"duplicate message type", Config{MessageTypes: []MessageType{mt("a"), mt("a")}}, `message type "a": duplicate`},
		{"bad message name", Config{MessageTypes: []MessageType{mt("")}}, `message type "": name`},
		{"negative window", Config{MessageTypes: []MessageType{{Name: "a", Window: -time.Hour}}}, "window"},
		{"unknown kinds", Config{MessageTypes: []MessageType{{Name: "a", Responses: 1 << 5}}}, "unknown response kinds"},
		{"empty conversion", Config{MessageTypes: []MessageType{{Name: "a", Conversions: []string{""}}}}, "empty conversion"},
		{"negative half-life", Config{HalfLife: -1}, "half-life"},
		{"interval 1", Config{Interval: 1}, "interval"},
		{"max below min", Config{MinPriorStrength: 10, MaxPriorStrength: 5}, "max prior strength"},
		{"negative min", Config{MinPriorStrength: -1}, "min prior strength"},
		{"shards", Config{Shards: MaxShards + 1}, "shards"},
		{"prune", Config{PruneBelow: 2}, "prune"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tc.want)
			case tc.want != "" && !errors.Is(err, ErrConfig):
				t.Fatalf("error %v is not ErrConfig", err)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestContactTypeOf(t *testing.T) {
	m := mustNew(t, Config{ContactTypes: []ContactType{
		{Name: "vip-fr", Segments: []string{"vip", "fr"}},
		{Name: "vip", Segments: []string{"vip"}},
		{Name: "newsletter", Segments: []string{"newsletter"}},
	}})
	for _, tc := range []struct {
		segments []string
		want     string
	}{
		{[]string{"fr", "vip"}, "vip-fr"},
		{[]string{"vip"}, "vip"},
		{[]string{"vip", "newsletter"}, "vip"}, // first match wins
		{[]string{"fr", "newsletter"}, "newsletter"},
		{[]string{"fr"}, Other},
		{nil, Other},
	} {
		if got := m.ContactTypeOf(tc.segments); got != tc.want {
			t.Errorf("ContactTypeOf(%v) = %q, want %q", tc.segments, got, tc.want)
		}
	}
}

// TestAttribution runs event sequences through one model each and checks
// every outcome and the resulting counts of the cells.
func TestAttribution(t *testing.T) {
	cfg := Config{
		ContactTypes: []ContactType{{Name: "vip", Segments: []string{"vip"}}},
		MessageTypes: []MessageType{
			{Name: "promo", Conversions: []string{"Order Completed"}},                          // open|click|conversion, 7 days
			{Name: "news", Responses: Click, Window: 2 * day, Conversions: []string{"Signup"}}, // clicks only
		},
	}
	vip := []string{"vip"}
	type step struct {
		e    *Exposure
		r    *Response
		want Outcome
	}
	exp := func(id, mt, key string, d float64, arm Arm) step {
		return step{e: &Exposure{ID: id, Subject: "s", Segments: vip, MessageType: mt, Key: key, Arm: arm, At: days(d)}}
	}
	resp := func(k Kind, key string, d float64, want Outcome) step {
		return step{r: &Response{Subject: "s", Kind: k, Key: key, At: days(d)}, want: want}
	}
	conv := func(event string, d float64, want Outcome) step {
		return step{r: &Response{Subject: "s", Kind: Conversion, Event: event, At: days(d)}, want: want}
	}
	type cellWant struct {
		mt      string
		arm     Arm
		n, r, c float64
	}
	for _, tc := range []struct {
		name  string
		steps []step
		cells []cellWant
	}{
		{"open then click counts once", []step{
			exp("e1", "promo", "email:c1", 0, Treated),
			resp(Open, "email:c1", 0.1, Counted),
			resp(Click, "email:c1", 0.2, Duplicate),
		}, []cellWant{{"promo", Treated, 1, 1, 0}}},
		{"click after the window is lost", []step{
			exp("e1", "promo", "email:c1", 0, Treated),
			resp(Click, "email:c1", 7.5, NoExposure),
		}, []cellWant{{"promo", Treated, 1, 0, 0}}},
		{"response before the exposure is not attributed", []step{
			exp("e1", "promo", "email:c1", 1, Treated),
			resp(Click, "email:c1", 0.5, NoExposure),
		}, []cellWant{{"promo", Treated, 1, 0, 0}}},
		{"key must match", []step{
			exp("e1", "promo", "email:c1", 0, Treated),
			resp(Click, "email:c2", 0.1, NoExposure),
		}, []cellWant{{"promo", Treated, 1, 0, 0}}},
		{"opens do not count for a clicks-only type", []step{
			exp("e1", "news", "email:n1", 0, Treated),
			resp(Open, "email:n1", 0.1, NotCounted),
			resp(Click, "email:n1", 0.2, Counted),
		}, []cellWant{{"news", Treated, 1, 1, 0}}},
		{"conversion after a click counts as a conversion too", []step{
			exp("e1", "promo", "email:c1", 0, Treated),
			resp(Click, "email:c1", 0.1, Counted),
			conv("Order Completed", 3, Counted),
			conv("Order Completed", 4, Duplicate),
		}, []cellWant{{"promo", Treated, 1, 1, 1}}},
		{"conversion goes to the latest exposure whose type counts it", []step{
			exp("e1", "promo", "email:c1", 0, Treated),
			exp("e2", "promo", "email:c2", 1, Treated),
			exp("e3", "news", "email:n1", 1.5, Treated),
			conv("Order Completed", 2, Counted), // e2, not e1, not news
			conv("Order Completed", 2.5, Duplicate),
		}, []cellWant{{"promo", Treated, 2, 1, 1}, {"news", Treated, 1, 0, 0}}},
		{"unconfigured conversion is ignored", []step{
			exp("e1", "promo", "email:c1", 0, Treated),
			conv("Page Viewed", 0.5, Ignored),
		}, []cellWant{{"promo", Treated, 1, 0, 0}}},
		{"holdout: conversions count, opens cannot match", []step{
			exp("h1", "promo", "email:c1", 0, Holdout),
			resp(Open, "email:c1", 0.1, NoExposure),
			conv("Order Completed", 1, Counted),
			conv("Order Completed", 2, Duplicate),
		}, []cellWant{{"promo", Holdout, 1, 0, 1}, {"promo", Treated, 0, 0, 0}}},
		{"repeated exposure id counts once", []step{
			exp("e1", "promo", "email:c1", 0, Treated),
			exp("e1", "promo", "email:c1", 0, Treated),
		}, []cellWant{{"promo", Treated, 1, 0, 0}}},
		{"unknown message type is ignored", []step{
			exp("e1", "nope", "email:c1", 0, Treated),
			resp(Click, "email:c1", 0.1, NoExposure),
		}, nil},
		{"no exposure", []step{resp(Click, "k", 0, NoExposure)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustNew(t, cfg)
			for i, st := range tc.steps {
				var got Outcome
				if st.e != nil {
					want := Counted
					if i > 0 && tc.steps[i-1].e != nil && tc.steps[i-1].e.ID == st.e.ID {
						want = Duplicate
					}
					if !m.HasMessageType(st.e.MessageType) {
						want = Ignored
					}
					if got = expose(t, m, *st.e); got != want {
						t.Errorf("step %d: exposure %s, want %s", i, got, want)
					}
					continue
				}
				if got = respond(t, m, *st.r); got != st.want {
					t.Errorf("step %d: %v response %s, want %s", i, st.r.Kind, got, st.want)
				}
			}
			for _, w := range tc.cells {
				k := cellCounts(m, "vip", w.mt, w.arm, days(0))
				// No decay: counts are exact.
				if k.n != w.n || k.r != w.r || k.c != w.c {
					t.Errorf("cell vip×%s arm %d: n=%v r=%v c=%v, want n=%v r=%v c=%v", w.mt, w.arm, k.n, k.r, k.c, w.n, w.r, w.c)
				}
			}
		})
	}
}

func TestInvalidInput(t *testing.T) {
	m := mustNew(t, segmentsConfig(1, 1))
	for _, e := range []Exposure{
		{MessageType: "msg-0", At: t0},
		{Subject: "s", MessageType: "msg-0"},
		{Subject: "s", MessageType: "msg-0", At: t0, Arm: 7},
	} {
		if _, err := m.Expose(e); !errors.Is(err, ErrInvalid) {
			t.Errorf("Expose(%+v) = %v, want ErrInvalid", e, err)
		}
	}
	for _, r := range []Response{
		{Kind: Click, At: t0},
		{Subject: "s", Kind: Click},
		{Subject: "s", Kind: Open | Click, At: t0},
	} {
		if _, err := m.Respond(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("Respond(%+v) = %v, want ErrInvalid", r, err)
		}
	}
}

// TestDecay: an exposure weighs half after one half-life, whatever the
// order in which events arrive, and a change of behaviour wins over old
// behaviour as the old fades.
func TestDecay(t *testing.T) {
	cfg := segmentsConfig(1, 1)
	cfg.HalfLife = 10 * day
	t.Run("half after one half-life", func(t *testing.T) {
		m := mustNew(t, cfg)
		expose(t, m, Exposure{Subject: "a", Segments: []string{"seg-0"}, MessageType: "msg-0", Key: "k", At: days(0)})
		respond(t, m, Response{Subject: "a", Kind: Click, Key: "k", At: days(1)})
		for _, tc := range []struct {
			at   float64
			want float64
		}{{0, 1}, {10, 0.5}, {20, 0.25}, {35, math.Pow(2, -3.5)}} {
			k := cellCounts(m, "seg-0", "msg-0", Treated, days(tc.at))
			// The response weighs as its exposure does (from day 0).
			if !near(k.n, tc.want, 1e-12) || !near(k.r, tc.want, 1e-12) {
				t.Errorf("day %v: n=%v r=%v, want %v", tc.at, k.n, k.r, tc.want)
			}
		}
	})
	t.Run("order of arrival does not matter", func(t *testing.T) {
		a, b := mustNew(t, cfg), mustNew(t, cfg)
		times := []float64{3, 0, 17, 9, 25}
		for i, d := range times {
			expose(t, a, Exposure{Subject: fmt.Sprint(i), Segments: []string{"seg-0"}, MessageType: "msg-0", At: days(d)})
		}
		sorted := slices.Clone(times)
		slices.Sort(sorted)
		for _, d := range sorted {
			i := slices.Index(times, d)
			expose(t, b, Exposure{Subject: fmt.Sprint(i), Segments: []string{"seg-0"}, MessageType: "msg-0", At: days(d)})
		}
		assertCellsEqual(t, a, b, days(40), 1e-12)
		var want float64
		for _, d := range times {
			want += math.Pow(2, -(40-d)/10)
		}
		if k := cellCounts(a, "seg-0", "msg-0", Treated, days(40)); !near(k.n, want, 1e-12) {
			t.Errorf("n = %v, want %v", k.n, want)
		}
	})
	t.Run("old behaviour fades", func(t *testing.T) {
		m, nodecay := mustNew(t, cfg), mustNew(t, segmentsConfig(1, 1))
		oldRate := float64(campaign(t, m, rng(1), "old", "seg-0", "msg-0", 2000, 0.30, days(0))) / 2000
		campaign(t, nodecay, rng(1), "old", "seg-0", "msg-0", 2000, 0.30, days(0))
		early, _ := m.Estimate("seg-0", "msg-0", days(2))
		newRate := float64(campaign(t, m, rng(2), "new", "seg-0", "msg-0", 2000, 0.05, days(60))) / 2000
		campaign(t, nodecay, rng(2), "new", "seg-0", "msg-0", 2000, 0.05, days(60))
		late, _ := m.Estimate("seg-0", "msg-0", days(62))
		// 6 half-lives later the old campaign weighs 1/64: the estimate is
		// within a point of the new campaign's rate.
		t.Logf("old campaign %.3f, new %.3f; estimate %.3f after the old, %.3f after the new", oldRate, newRate, early.Mean, late.Mean)
		if math.Abs(early.Mean-oldRate) > 0.01 || math.Abs(late.Mean-newRate) > 0.01 {
			t.Errorf("early %.3f (want ≈ %.3f), late %.3f (want ≈ %.3f)", early.Mean, oldRate, late.Mean, newRate)
		}
		if e, _ := nodecay.Estimate("seg-0", "msg-0", days(62)); math.Abs(e.Mean-(oldRate+newRate)/2) > 0.01 {
			t.Errorf("without decay the estimate is %.3f, want the average %.3f", e.Mean, (oldRate+newRate)/2)
		}
	})
}

// TestShrinkage: a small cell's estimate lies between its raw rate and
// its message type's rate in the other cells, and closer to its own rate
// as it grows.
func TestShrinkage(t *testing.T) {
	m := mustNew(t, segmentsConfig(4, 1))
	r := rng(7)
	lo, hi := 1.0, 0.0 // the other cells' observed rates
	for ct, rate := range []float64{0.05, 0.06, 0.04} {
		got := float64(campaign(t, m, r, fmt.Sprint(ct), fmt.Sprintf("seg-%d", ct), "msg-0", 3000, rate, t0)) / 3000
		lo, hi = min(lo, got), max(hi, got)
	}
	// seg-3: 3 responses out of 5.
	for i := range 5 {
		subj := fmt.Sprintf("small-%d", i)
		expose(t, m, Exposure{Subject: subj, Segments: []string{"seg-3"}, MessageType: "msg-0", Key: "k", At: t0})
		if i < 3 {
			respond(t, m, Response{Subject: subj, Kind: Click, Key: "k", At: t0.Add(time.Hour)})
		}
	}
	small, err := m.Estimate("seg-3", "msg-0", days(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("small cell: 3/5 → mean %.3f [%.3f, %.3f], prior mean %.3f strength %.1f", small.Mean, small.Lower, small.Upper, small.PriorMean, small.PriorStrength)
	if small.Mean >= 0.3 || small.Mean <= 0.05 {
		t.Errorf("3/5 among cells at ~5 %%: mean %.3f, want shrunk well below 0.6 and above the pooled 0.05", small.Mean)
	}
	// The prior mean is the other cells' rate, pulled a little toward ½
	// by the pseudo-cell (the outlying small cell makes weak priors
	// plausible, under which the cells say little about the mean).
	if small.PriorMean < lo || small.PriorMean > hi+0.01 {
		t.Errorf("prior mean %.3f, want within the other cells' rates [%.3f, %.3f] (+0.01)", small.PriorMean, lo, hi)
	}
	// With 100 times more data at the same rate the cell speaks for itself.
	for i := range 500 {
		subj := fmt.Sprintf("more-%d", i)
		expose(t, m, Exposure{Subject: subj, Segments: []string{"seg-3"}, MessageType: "msg-0", Key: "k", At: t0})
		if i%5 < 3 {
			respond(t, m, Response{Subject: subj, Kind: Click, Key: "k", At: t0.Add(time.Hour)})
		}
	}
	large, _ := m.Estimate("seg-3", "msg-0", days(1))
	if large.Mean < 0.5 || large.Mean <= small.Mean {
		t.Errorf("3/5 × 101: mean %.3f, want close to 0.6", large.Mean)
	}
}

// TestForgetExact: a model given every subject's events, then told to
// forget some, equals (up to float rounding) a model that never saw them:
// with decay, out-of-order times, holdouts, conversions, and events of
// others before and after the forgotten subject's.
func TestForgetExact(t *testing.T) {
	cfg := segmentsConfig(3, 3)
	cfg.HalfLife = 5 * day
	cfg.MessageTypes[2].Responses = Open
	r := rng(42)
	type ev struct {
		e *Exposure
		r *Response
	}
	var events []ev
	for i := range 3000 {
		subj := fmt.Sprintf("s%d", r.IntN(300))
		at := days(r.Float64() * 20)
		ct := fmt.Sprintf("seg-%d", r.IntN(4)) // seg-3 is no contact type: Other
		mt := fmt.Sprintf("msg-%d", r.IntN(3))
		arm := Treated
		if r.IntN(10) == 0 {
			arm = Holdout
		}
		events = append(events, ev{e: &Exposure{ID: fmt.Sprint(i), Subject: subj, Segments: []string{ct}, MessageType: mt, Arm: arm, Key: mt, At: at}})
		switch r.IntN(4) {
		case 0:
			events = append(events, ev{r: &Response{Subject: subj, Kind: Click, Key: mt, At: at.Add(time.Hour)}})
		case 1:
			events = append(events, ev{r: &Response{Subject: subj, Kind: Conversion, Event: "Order Completed", At: at.Add(2 * day)}})
		case 2:
			events = append(events, ev{r: &Response{Subject: subj, Kind: Open, Key: mt, At: at.Add(time.Minute)}})
		}
	}
	forgotten := map[string]bool{"s7": true, "s123": true, "s299": true}
	run := func(m *Model, skip func(string) bool) {
		for _, x := range events {
			if x.e != nil && !skip(x.e.Subject) {
				expose(t, m, *x.e)
			}
			if x.r != nil && !skip(x.r.Subject) {
				respond(t, m, *x.r)
			}
		}
	}
	all, without := mustNew(t, cfg), mustNew(t, cfg)
	run(all, func(string) bool { return false })
	run(without, func(s string) bool { return forgotten[s] })
	before := all.Table(days(21))
	for s := range forgotten {
		if !all.Forget(s) {
			t.Fatalf("Forget(%s) found nothing", s)
		}
		if all.Has(s) || all.Forget(s) {
			t.Fatalf("%s still there after Forget", s)
		}
	}
	assertCellsEqual(t, all, without, days(21), 1e-9)
	if all.Subjects() != without.Subjects() {
		t.Errorf("subjects %d, want %d", all.Subjects(), without.Subjects())
	}
	after, want := all.Table(days(21)), without.Table(days(21))
	changed := false
	for i := range after {
		if !near(after[i].Mean, want[i].Mean, 1e-9) || !near(after[i].Upper, want[i].Upper, 1e-9) {
			t.Errorf("%s×%s: mean %v [%v], want %v [%v]", after[i].ContactType, after[i].MessageType, after[i].Mean, after[i].Upper, want[i].Mean, want[i].Upper)
		}
		changed = changed || after[i].Exposures != before[i].Exposures
	}
	if !changed {
		t.Error("forgetting changed no cell: the test forgot nothing")
	}
	// The same holds after both models see more events.
	for _, m := range []*Model{all, without} {
		expose(t, m, Exposure{Subject: "late", Segments: []string{"seg-1"}, MessageType: "msg-1", Key: "k", At: days(22)})
		respond(t, m, Response{Subject: "late", Kind: Click, Key: "k", At: days(22.5)})
	}
	assertCellsEqual(t, all, without, days(30), 1e-9)
}

// TestPrune drops what decayed away and expired, keeping the cells the sum
// of what is kept.
func TestPrune(t *testing.T) {
	cfg := segmentsConfig(1, 1)
	cfg.HalfLife = day
	m := mustNew(t, cfg)
	expose(t, m, Exposure{Subject: "old", Segments: []string{"seg-0"}, MessageType: "msg-0", At: days(0)})
	if n := m.Prune(days(5)); n != 0 || !m.Has("old") {
		t.Errorf("pruned %d subjects at day 5, want 0 (the exposure weighs 1/32 and awaits a response)", n)
	}
	expose(t, m, Exposure{Subject: "new", Segments: []string{"seg-0"}, MessageType: "msg-0", At: days(20)})
	if n := m.Prune(days(21)); n != 1 || m.Has("old") || !m.Has("new") {
		t.Errorf("pruned %d at day 21 (old weighs 2^-21), want 1; has old %v, new %v", n, m.Has("old"), m.Has("new"))
	}
	k := cellCounts(m, "seg-0", "msg-0", Treated, days(21))
	if !near(k.n, 0.5, 1e-12) {
		t.Errorf("n = %v after pruning, want the new exposure's 0.5", k.n)
	}
}

// TestNext: Thompson sampling returns the estimates behind the pick, is
// reproducible with a seeded source, and refuses bad candidates.
func TestNext(t *testing.T) {
	m := mustNew(t, segmentsConfig(1, 3))
	r := rng(3)
	for i, rate := range []float64{0.02, 0.2, 0.05} {
		campaign(t, m, r, fmt.Sprint(i), "seg-0", fmt.Sprintf("msg-%d", i), 500, rate, t0)
	}
	cands := []string{"msg-0", "msg-1", "msg-2"}
	p1, err := m.Next(rand.NewPCG(1, 2), "seg-0", cands, days(1))
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := m.NextFor(rand.NewPCG(1, 2), []string{"seg-0", "x"}, cands, days(1))
	if p1.MessageType != "msg-1" || p1.ContactType != "seg-0" || len(p1.Candidates) != 3 {
		t.Fatalf("pick %+v, want msg-1 for seg-0 with 3 candidates", p1)
	}
	for i, c := range p1.Candidates {
		if c.MessageType != cands[i] || !(c.Lower < c.Mean && c.Mean < c.Upper) || c.Draw <= 0 || c.Draw >= 1 {
			t.Errorf("candidate %d: %+v", i, c)
		}
		if c.Draw != p2.Candidates[i].Draw {
			t.Errorf("same seed, different draw: %v vs %v", c.Draw, p2.Candidates[i].Draw)
		}
	}
	for _, tc := range []struct {
		ct    string
		cands []string
		want  error
	}{
		{"seg-0", nil, ErrNoCandidates},
		{"seg-0", []string{"msg-0", "nope"}, ErrUnknownMessageType},
		{"nope", cands, ErrUnknownContactType},
	} {
		if _, err := m.Next(rand.NewPCG(1, 2), tc.ct, tc.cands, days(1)); !errors.Is(err, tc.want) {
			t.Errorf("Next(%q, %v) = %v, want %v", tc.ct, tc.cands, err, tc.want)
		}
	}
	// With no data at all every candidate has the same uniform posterior.
	empty := mustNew(t, segmentsConfig(1, 2))
	p, err := empty.Next(rand.NewPCG(5, 5), Other, []string{"msg-0", "msg-1"}, t0)
	if err != nil || !near(p.Candidates[0].Mean, 0.5, 1e-12) || !near(p.Candidates[0].Alpha, 1, 1e-12) || !near(p.Candidates[1].Beta, 1, 1e-12) {
		t.Errorf("empty model: %+v %v, want Beta(1, 1) posteriors", p, err)
	}
}

// TestUplift simulates a campaign with a 10 % holdout whose message
// raises conversions from 4 % to 6 %: the uplift's interval holds the true
// 2 points, and a message with no effect gets an interval around 0.
func TestUplift(t *testing.T) {
	cfg := segmentsConfig(1, 2)
	m := mustNew(t, cfg)
	r := rng(11)
	for i := range 20000 {
		subj := fmt.Sprint(i)
		mt := fmt.Sprintf("msg-%d", i%2)
		arm := Treated
		if r.Float64() < 0.1 {
			arm = Holdout
		}
		rate := 0.04
		if mt == "msg-0" && arm == Treated {
			rate = 0.06
		}
		expose(t, m, Exposure{Subject: subj, Segments: []string{"seg-0"}, MessageType: mt, Arm: arm, At: t0})
		if r.Float64() < rate {
			respond(t, m, Response{Subject: subj, Kind: Conversion, Event: "Order Completed", At: days(1)})
		}
	}
	for _, tc := range []struct {
		mt   string
		want float64
	}{{"msg-0", 0.02}, {"msg-1", 0}} {
		u, err := m.Uplift(rand.NewPCG(1, 1), "seg-0", tc.mt, days(2), 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: uplift %.4f [%.4f, %.4f], P(>0) %.2f; treated %.4f (n %.0f), holdout %.4f (n %.0f)", tc.mt,
			u.Mean, u.Lower, u.Upper, u.ProbPositive, u.Treated.Mean, u.Treated.Exposures, u.Holdout.Mean, u.Holdout.Exposures)
		if u.Lower > tc.want || u.Upper < tc.want || u.Draws != DefaultUpliftDraws {
			t.Errorf("%s: uplift interval [%.4f, %.4f] misses the true %.2f", tc.mt, u.Lower, u.Upper, tc.want)
		}
	}
	if u, _ := m.Uplift(rand.NewPCG(1, 1), "seg-0", "msg-0", days(2), 0); u.ProbPositive < 0.95 {
		t.Errorf("P(uplift > 0) = %.2f for a real 2-point uplift, want ≥ 0.95", u.ProbPositive)
	}
	cfg.MessageTypes[1].Conversions = nil
	if _, err := mustNew(t, cfg).Uplift(rand.NewPCG(1, 1), "seg-0", "msg-1", days(2), 0); !errors.Is(err, ErrNoConversions) {
		t.Errorf("uplift of a type without conversions: %v, want ErrNoConversions", err)
	}
}
