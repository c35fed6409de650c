package rollup

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// TestPeerDecisionsSummed: a node's flushed counters reach Publish (a
// failed publication is retried at the next flush, even one with nothing
// new), and another node's Aggregator with them as Peers sums them with
// its own; a later cumulative set replaces the earlier one.
func TestPeerDecisionsSummed(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: t0.Add(10*time.Hour + 30*time.Minute)}
	peers := NewPeerDecisions()
	fail := true
	publish := func(_ context.Context, site string, hour uint32, v []byte) error {
		if fail {
			fail = false
			return errors.New("kv down")
		}
		return peers.Put(site, hour, "n1", v)
	}
	n1, err := NewDecisionCounter(DecisionConfig{Store: storagetest.Open(t), Now: clk.Now, Publish: publish})
	if err != nil {
		t.Fatal(err)
	}
	s2 := storagetest.Open(t)
	n2 := newCounter(t, s2, clk)
	agg := newAgg(t, s2, clk, func(c *Config) { c.Peers = peers })
	dropped := func() uint64 {
		ov, err := agg.Overview(ctx, "shop", t0, t0.Add(24*time.Hour), time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return ov.Decisions.Dropped
	}
	for range 3 {
		n1.Count("shop", consent.Drop, "bot")
	}
	n2.Count("shop", consent.Drop, "bot")
	for _, d := range []*DecisionCounter{n1, n2} {
		if err := d.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		step func()
		want uint64
	}{
		{"publication failed", func() {}, 1},
		{"retried at the next flush", func() { _ = n1.Flush(ctx) }, 4},
		{"a later set replaces the earlier", func() { n1.Count("shop", consent.Drop, "bot"); _ = n1.Flush(ctx) }, 5},
	} {
		c.step()
		if got := dropped(); got != c.want {
			t.Errorf("%s: %d dropped, want %d", c.name, got, c.want)
		}
	}
}
