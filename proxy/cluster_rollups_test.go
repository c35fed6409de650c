package proxy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
)

// TestClusterOverviewSameOnEveryNode: page views spread over three nodes
// are counted by every node's rollups (each node's own durable over the
// whole enriched stream), so GET /admin/v1/overview answers the same page
// view and event counts on every node; its decision counters (counted
// where a hit arrives) are summed over the nodes (KV VIGIE_DECISIONS).
func TestClusterOverviewSameOnEveryNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startBareNodes(t, nc, 3, false, func(c *config.Config) { c.Plugins = []config.Plugin{} })
	const views = 30
	for i := range views {
		body := fmt.Sprintf(`{"anonymousId":"a%d","context":{"page":{"path":"/p%d","url":"https://shop.example/p%d"}}}`, i%5, i%3, i%3)
		if code, resp := nodes[i%3].Post("/v1/page", "demo", body); code != 200 {
			t.Fatalf("page %d on node %d: %d %s", i, i%3+1, code, resp)
		}
	}
	// Bots are dropped where they arrive: 1 on node 1, 2 on node 2, 3 on
	// node 3.
	for i, in := range nodes {
		for range i + 1 {
			if code, resp := in.Post("/v1/page", "demo", `{"anonymousId":"b","context":{"userAgent":"curl/8.5.0","page":{"path":"/"}}}`); code != 200 {
				t.Fatalf("bot on node %d: %d %s", i+1, code, resp)
			}
		}
	}
	for i, in := range nodes {
		deadline := time.Now().Add(20 * time.Second)
		for overview(t, in).Totals.PageViews < views {
			if time.Now().After(deadline) {
				t.Fatalf("node %d's overview counts %d page views, want %d (each node sees only part of the stream)", i+1, overview(t, in).Totals.PageViews, views)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The decision counters, flushed every 10 s, are summed over the
	// nodes.
	for i, in := range nodes {
		deadline := time.Now().Add(40 * time.Second)
		for d := overview(t, in).Decisions; d.Dropped < 6 || d.Anonymous < views; d = overview(t, in).Decisions {
			if time.Now().After(deadline) {
				t.Fatalf("node %d's overview counts %d dropped and %d anonymous hits, want 6 and %d (the decision counters are each node's own)", i+1, d.Dropped, d.Anonymous, views)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(time.Second) // a late double count would show
	want := overview(t, nodes[0]).Totals
	for i, in := range nodes {
		got := overview(t, in).Totals
		if got.PageViews != views || got.Events != views {
			t.Errorf("node %d counts %d page views and %d events, want %d", i+1, got.PageViews, got.Events, views)
		}
		if got != want {
			t.Errorf("node %d's totals %+v differ from node 1's %+v", i+1, got, want)
		}
		if d := overview(t, in).Decisions; d.Dropped != 6 || d.Anonymous != views {
			t.Errorf("node %d counts %d dropped and %d anonymous hits, want 6 and %d", i+1, d.Dropped, d.Anonymous, views)
		}
	}
}
