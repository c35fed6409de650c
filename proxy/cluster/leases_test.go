package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
)

// startLeaseJS runs an embedded JetStream with the partition buckets.
func startLeaseJS(t *testing.T) fixedJS {
	t.Helper()
	js := startBareJS(t)
	if err := streams.NewDeclarer(streams.Settings{}).WithBuckets(PartitionBuckets()...).Ensure(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	return fixedJS{js}
}

// liveSet is a Live func over a mutable set of nodes.
type liveSet struct{ nodes []string }

func (s *liveSet) live(context.Context) ([]string, error) { return slices.Clone(s.nodes), nil }

func TestLeases(t *testing.T) {
	ctx := context.Background()
	js := startLeaseJS(t)
	clock := time.Now()
	now := func() time.Time { return clock }
	set := &liveSet{nodes: []string{"a"}}
	mk := func(node string) *Leases {
		return &Leases{JS: js, Node: node, Partitions: 8, Live: set.live, Now: now, Drain: time.Millisecond}
	}
	a, b := mk("a"), mk("b")
	step := func(l *Leases) {
		t.Helper()
		if err := l.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	holders := func() map[int]string {
		t.Helper()
		h, err := a.Holders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	// Take: alone, a takes every partition. Every listener is woken
	// (each segmenter runs its own partition consumers), and a listener
	// from after the change waits for the next one.
	before1, before2 := a.Changed(), a.Changed()
	step(a)
	if got := a.Owned(); len(got) != 8 {
		t.Fatalf("a alone owns %v, want all 8", got)
	}
	for i, ch := range []<-chan struct{}{before1, before2} {
		select {
		case <-ch:
		default:
			t.Fatalf("listener %d not woken after taking", i+1)
		}
	}
	after := a.Changed()
	step(a) // renews only
	select {
	case <-after:
		t.Fatal("woken without a change")
	default:
	}
	// b sees them held and takes none.
	set.nodes = []string{"a", "b"}
	step(b)
	if got := b.Owned(); len(got) != 0 {
		t.Fatalf("b took held leases %v", got)
	}
	// Rebalance: a gives up down to ceil(8/2) = 4, b takes them.
	step(a)
	step(b)
	if len(a.Owned()) != 4 || len(b.Owned()) != 4 {
		t.Fatalf("after rebalance a %v, b %v; want 4 each", a.Owned(), b.Owned())
	}
	for n, node := range holders() {
		if want := map[bool]string{true: "a", false: "b"}[slices.Contains(a.Owned(), n)]; node != want {
			t.Fatalf("partition %d held by %s in KV, %s in memory", n, node, want)
		}
	}
	// Renew: time passes 8 s, both renew, nothing expires.
	clock = clock.Add(8 * time.Second)
	step(a)
	step(b)
	clock = clock.Add(8 * time.Second)
	if h := holders(); len(h) != 8 {
		t.Fatalf("renewed leases expired: %v", h)
	}
	// Expiry: b stops renewing (killed); past the TTL a takes its share.
	set.nodes = []string{"a"}
	clock = clock.Add(3 * time.Second)
	step(a)
	if got := a.Owned(); len(got) != 8 {
		t.Fatalf("a owns %v after b's leases expired, want all 8", got)
	}
	// b, back, cannot renew what a took: it drops them at once.
	set.nodes = []string{"a", "b"}
	step(b)
	if got := b.Owned(); len(got) != 0 {
		t.Fatalf("b still owns %v after losing its leases", got)
	}
	step(a)
	step(b)
	if len(a.Owned()) != 4 || len(b.Owned()) != 4 {
		t.Fatalf("after b came back a %v, b %v; want 4 each", a.Owned(), b.Owned())
	}
	// Release on stop: b's leases are deleted, a takes them at once.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.Run(rctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if got := b.Owned(); len(got) != 0 {
		t.Fatalf("b owns %v after Run returned", got)
	}
	if h := holders(); len(h) != 4 {
		t.Fatalf("b's leases not released: %v", h)
	}
	// b's heartbeat is still fresh, but it left: a takes its share now.
	step(a)
	if got := a.Owned(); len(got) != 8 {
		t.Fatalf("a owns %v after b stopped, want all 8", got)
	}
	// b back: it counts again, and gets its share back.
	b2 := mk("b")
	step(b2)
	step(a)
	step(b2)
	if len(a.Owned()) != 4 || len(b2.Owned()) != 4 {
		t.Fatalf("after b restarted a %v, b %v; want 4 each", a.Owned(), b2.Owned())
	}
}

// TestLeasesSayWhenConsumersOutlastTheSettle: a node giving up partitions
// waits for their consumers (SetQuiesce) at most half a TTL, then
// releases the leases all the same and says so; a wait that ends in time
// says nothing.
func TestLeasesSayWhenConsumersOutlastTheSettle(t *testing.T) {
	ctx := context.Background()
	js := startLeaseJS(t)
	for _, tc := range []struct {
		name  string
		stuck bool
	}{{"consumers stopped", false}, {"consumers still running", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			set := &liveSet{nodes: []string{"a"}}
			a := &Leases{JS: js, Node: "a", Partitions: 4, Live: set.live, TTL: 200 * time.Millisecond, Renew: time.Hour,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			a.SetQuiesce(func(qctx context.Context, _ []int) {
				if tc.stuck {
					<-qctx.Done()
				}
			})
			if err := a.Step(ctx); err != nil || len(a.Owned()) != 4 {
				t.Fatalf("alone: %v, owns %v", err, a.Owned())
			}
			set.nodes = []string{"a", "b"}
			if err := a.Step(ctx); err != nil || len(a.Owned()) != 2 {
				t.Fatalf("with b: %v, owns %v", err, a.Owned())
			}
			said := strings.Contains(logs.String(), "partitions released before their consumers stopped")
			if said != tc.stuck {
				t.Fatalf("warned %v, want %v:\n%s", said, tc.stuck, logs.String())
			}
			a.ReleaseAll(ctx)
		})
	}
}
