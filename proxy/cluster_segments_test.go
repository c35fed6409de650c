package proxy_test

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// withWindowSegments runs the segments plugin with two segments: "three"
// (from a subject's third track event on) and "window" (its third to
// fifth: entered, then exited).
func withWindowSegments(c *config.Config) {
	withCountingSegment(c)
	c.Plugins = []config.Plugin{{Name: "segments", Config: map[string]any{"segments": []any{
		map[string]any{"name": "three", "when": `profile.count("track", "*", "7d") >= 3`},
		map[string]any{"name": "window", "when": `profile.count("track", "*", "7d") >= 3 && profile.count("track", "*", "7d") < 6`},
	}}}}
}

// segmentsAnswer is what GET /admin/v1/segments gives: sizes by segment
// and the recent changes as sent.
type segmentsAnswer struct {
	sizes  map[string]int64
	recent []string
}

// adminSegments reads GET /admin/v1/segments of node in.
func adminSegments(t *testing.T, in *proxytest.Instance) segmentsAnswer {
	t.Helper()
	code, b := in.Admin("/admin/v1/segments?site=demo&limit=1000")
	if code != 200 {
		t.Fatalf("segments: %d %s", code, b)
	}
	var v struct {
		Segments []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"segments"`
		Recent []json.RawMessage `json:"recent_changes"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	a := segmentsAnswer{sizes: map[string]int64{}}
	for _, s := range v.Segments {
		a.sizes[s.Name] = s.Size
	}
	for _, r := range v.Recent {
		a.recent = append(a.recent, string(r))
	}
	return a
}

// TestClusterSegmentSizesSameOnEveryNode: three nodes, the load spread
// over them so that every node applies segment changes of its
// partitions. GET /admin/v1/segments answers the true sizes and the same
// recent changes on every node; then node 3 is stopped, its partitions
// move, the subjects it had entered in "window" exit it on the other
// nodes, and the sizes stay true (nothing lost, nothing counted twice),
// on node 3 too once restarted; a node added after the stream lost its
// first changes starts from another node's sizes. Before, each node
// counted the changes it had applied itself.
func TestClusterSegmentSizesSameOnEveryNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3, withWindowSegments)
	js := nc.jetStream(t)
	if owned := ownedBy(t, js, "v3"); owned < 4 {
		t.Fatalf("node 3 owns %d partitions, want its share", owned)
	}
	const visitors = 24
	var wg sync.WaitGroup
	post := func(nodes []*proxytest.Instance, from, to int) {
		for b := from; b < to; b++ {
			wg.Go(func() { postProfiled(t, nodes, b, b, visitors) })
			time.Sleep(20 * time.Millisecond)
		}
		wg.Wait()
	}
	// check waits until every running node answers the sizes the
	// enriched events make (each subject's count: "three" from 3,
	// "window" from 3 to 5) and the same recent changes, entries + exits
	// of them.
	check := func(phase string, running []*proxytest.Instance, events, changes int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			sent := sentBySubject(t, js)
			want := map[string]int64{"three": 0, "window": 0}
			total := 0
			for _, n := range sent {
				total += n
				if n >= 3 {
					want["three"]++
				}
				if n >= 3 && n < 6 {
					want["window"]++
				}
			}
			var answers []segmentsAnswer
			ok := total == events
			for _, in := range running {
				a := adminSegments(t, in)
				answers = append(answers, a)
				ok = ok && a.sizes["three"] == want["three"] && a.sizes["window"] == want["window"] &&
					len(a.recent) == changes && slices.Equal(a.recent, answers[0].recent)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				for i, a := range answers {
					t.Errorf("%s: node %s answers sizes %v and %d recent changes (same as the first node's: %v); want %v and %d",
						phase, running[i].Config.Cluster.NodeID, a.sizes, len(a.recent), slices.Equal(a.recent, answers[0].recent), want, changes)
				}
				t.Fatalf("%s: %d events enriched, want %d", phase, total, events)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// 5 events each: every subject in both segments.
	post(nodes, 0, 12)
	check("spread over 3 nodes", nodes, 120, 2*visitors)
	nodes[2].Stop()
	// 5 more each, through nodes 1 and 2: every subject leaves "window",
	// on the node that owns its partition now.
	post(nodes[:2], 12, 24)
	check("node 3 stopped", nodes[:2], 240, 3*visitors)
	nodes[2].Restart()
	check("node 3 restarted", nodes, 240, 3*visitors)

	// A node added once the stream no longer holds the first changes
	// (purged here; MaxAge in production) starts from the sizes another
	// node shared in KV VIGIE_SEGMENT_SIZES.
	ctx := context.Background()
	st, err := js.Stream(ctx, streams.Segments)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, streams.BucketSegmentSizes)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var snap struct{ Seq uint64 }
		if e, err := kv.Get(ctx, "v1"); err == nil && json.Unmarshal(e.Value(), &snap) == nil && snap.Seq >= info.State.LastSeq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 never shared sizes counting up to %d", info.State.LastSeq)
		}
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	fourth := startExtraNode(t, nc, nodes[0], "v4", withWindowSegments)
	want := adminSegments(t, nodes[0]).sizes
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got := adminSegments(t, fourth).sizes
		if maps.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 4, added after the purge, answers sizes %v, want %v", got, want)
		}
	}
}

// startExtraNode starts one more cluster node id on nc with the keys of
// first (as startVigieNodes does).
func startExtraNode(t *testing.T, nc *natsCluster, first *proxytest.Instance, id string, opts ...proxytest.Option) *proxytest.Instance {
	t.Helper()
	kr, err := os.ReadFile(filepath.Join(first.Config.DataDir, keyring.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return proxytest.Start(t, append([]proxytest.Option{func(c *config.Config) {
		c.NATS.URL = nc.urls()
		c.Cluster.NodeID = id
		c.Keys.MasterKey = first.Config.Keys.MasterKey
		c.Keys.AdminToken = first.Config.Keys.AdminToken
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.DataDir, keyring.FileName), kr, 0o600); err != nil {
			t.Fatal(err)
		}
	}}, opts...)...)
}
