package rollup

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

var (
	grantAnalytics = consent.Decision{Outcome: consent.Pseudonymous, Granted: consent.NewSet(consent.Analytics, consent.Necessary), Reason: "explicit grant"}
	grantAll       = consent.Decision{Outcome: consent.Pseudonymous, Granted: consent.NewSet(consent.Analytics, consent.Marketing, consent.Necessary), Reason: "default grant"}
	noSignal       = consent.Decision{Outcome: consent.Drop, Granted: consent.NewSet(consent.Necessary), Reason: "no consent signal"}
	gpc            = consent.Decision{Outcome: consent.Anonymous, Granted: consent.NewSet(consent.Necessary), Reason: "gpc denial"}
)

func newCounter(t testing.TB, s *storage.Store, clk *clock) *DecisionCounter {
	t.Helper()
	d, err := NewDecisionCounter(DecisionConfig{Store: s, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDecisionCounterOverview(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{now: t0.Add(10*time.Hour + 30*time.Minute)}
	d := newCounter(t, s, clk)
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				d.CountDecision("shop", grantAnalytics)
				d.CountDecision("shop", grantAnalytics)
				d.CountDecision("shop", noSignal)
				d.CountDecision("shop", gpc)
				d.Count("shop", consent.Drop, "bot")
				d.Count("", consent.Drop, "bad write key")
			}
		}()
	}
	// A flush while counting: nothing counted twice or lost.
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Next hour, written by Run when it stops.
	clk.now = clk.now.Add(time.Hour)
	for range 10 {
		d.CountDecision("shop", grantAll)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	clk.now = t0.Add(24 * time.Hour)
	a := newAgg(t, s, clk, nil)
	n := uint64(workers * each)
	tests := []struct {
		name      string
		from, to  time.Duration
		want      Decisions
		decided   uint64
		analytics uint64
		marketing uint64
	}{
		{"both hours", 0, 24 * time.Hour, Decisions{
			Pseudonymous: 2*n + 10, Anonymous: n, Dropped: 2 * n,
			Reasons: []ReasonCount{{"pseudonymous", "explicit grant", 2 * n}, {"anonymous", "gpc denial", n}, {"drop", "bot", n}, {"drop", "no consent signal", n}, {"pseudonymous", "default grant", 10}},
		}, 4*n + 10, 2*n + 10, 10},
		{"the second hour only", 11 * time.Hour, 12 * time.Hour, Decisions{
			Pseudonymous: 10, Reasons: []ReasonCount{{"pseudonymous", "default grant", 10}},
		}, 10, 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second answer comes from the cache
				ov, err := a.Overview(ctx, "shop", t0.Add(tt.from), t0.Add(tt.to), time.Time{}, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(ov.Decisions) != fmt.Sprint(tt.want) {
					t.Errorf("decisions\n got  %+v\n want %+v", ov.Decisions, tt.want)
				}
				c := ov.Consent
				if c.Basis != "decisions" || c.Total != tt.decided {
					t.Fatalf("consent basis %q total %d, want decisions %d", c.Basis, c.Total, tt.decided)
				}
				want := map[string]uint64{"analytics": tt.analytics, "marketing": tt.marketing, "necessary": tt.decided}
				for _, p := range c.Purposes {
					if p.Granted != want[p.Purpose] || p.Rate != float64(p.Granted)/float64(tt.decided) {
						t.Errorf("purpose %+v, want %d granted", p, want[p.Purpose])
					}
					delete(want, p.Purpose)
				}
				for p, n := range want {
					if n > 0 {
						t.Errorf("purpose %s missing", p)
					}
				}
			}
		})
	}
	// Rejections before a site is known are counted under the empty site.
	v, err := s.Rollup(ctx, storage.RollupDecisions, "", uint32(clk.now.Add(-14*time.Hour).Unix()/3600))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := decodeDecisions(v)
	if err != nil || ds.reasons[decisionKey{consent.Drop, "bad write key"}] != n || ds.decided != 0 {
		t.Errorf("empty site's decisions %+v, %v", ds, err)
	}
}

func TestDecisionCounterBounds(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	clk := &clock{now: t0}
	d := newCounter(t, s, clk)
	const distinct = numShards*maxCellsPerShard + 5000
	for i := range distinct {
		d.Count("shop", consent.Drop, fmt.Sprintf("reason %d", i))
	}
	d.Count("shop", consent.Drop, string(make([]byte, 500)))
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := s.Rollup(ctx, storage.RollupDecisions, "shop", uint32(t0.Unix()/3600))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := decodeDecisions(v)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for k, n := range ds.reasons {
		total += n
		if len(k.reason) > maxReasonLen {
			t.Errorf("reason of %d bytes kept", len(k.reason))
		}
	}
	if total != distinct+1 || ds.reasons[decisionKey{consent.Drop, reasonOther}] == 0 || len(ds.reasons) > numShards*maxCellsPerShard+1 {
		t.Errorf("%d reasons, total %d (want %d, some in %q)", len(ds.reasons), total, distinct+1, reasonOther)
	}
	// Counters of hours long past are forgotten once written.
	clk.now = t0.Add(5 * time.Hour)
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range d.shards {
		if n := len(d.shards[i].m); n != 0 {
			t.Fatalf("shard %d keeps %d old counters", i, n)
		}
	}
}

func TestDecisionCounterFlushFailureKeepsCounts(t *testing.T) {
	s := storagetest.Open(t)
	clk := &clock{now: t0}
	d := newCounter(t, s, clk)
	for range 5 {
		d.CountDecision("shop", gpc)
	}
	_ = s.Close()
	if err := d.Flush(context.Background()); err == nil {
		t.Fatal("flush to a closed store succeeded")
	}
	var n uint64
	for i := range d.shards {
		for _, c := range d.shards[i].m {
			n += c.Load()
		}
	}
	if n != 5 {
		t.Errorf("%d counts kept after a failed flush, want 5", n)
	}
}

// BenchmarkDecisionCount is the ingestion path's cost per hit.
func BenchmarkDecisionCount(b *testing.B) {
	s := storagetest.Open(b)
	d, err := NewDecisionCounter(DecisionConfig{Store: s})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if i++; i%4 == 0 {
				d.Count("shop", consent.Drop, "bot")
			} else {
				d.CountDecision("shop", grantAnalytics)
			}
		}
	})
}
