package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// withCountingSegment runs the built-in segments plugin with a segment
// every subject enters at its third track event.
func withCountingSegment(c *config.Config) {
	c.PluginRuntime = config.PluginRuntime{
		MaxDeliver: 50, Backoff: []config.Duration{config.Duration(50 * time.Millisecond)},
		CallTimeout: config.Duration(2 * time.Second), BatchSize: 50, MaxRestarts: 1000,
		RestartBackoff: config.Duration(20 * time.Millisecond), MaxRestartBackoff: config.Duration(200 * time.Millisecond),
		ProfilePurposes: []consent.Purpose{"personalization"}, ProfileTTL: config.Duration(30 * 24 * time.Hour),
	}
	c.Plugins = []config.Plugin{{Name: "segments", Config: map[string]any{"segments": []any{map[string]any{
		"name": "three", "when": `profile.count("track", "*", "7d") >= 3`,
	}}}}}
}

// countingSegmentYAML is withCountingSegment for a vigie process.
const countingSegmentYAML = `plugin_runtime:
  max_deliver: 50
  backoff: [50ms]
  call_timeout: 2s
  batch_size: 50
  max_restarts: 1000
  restart_backoff: 20ms
  max_restart_backoff: 200ms
  profile_purposes: [personalization]
  profile_ttl: 720h
plugins:
  - name: segments
    config:
      segments:
        - name: three
          when: 'profile.count("track", "*", "7d") >= 3'
`

// profiledBatch is batch b: 10 events, event j of visitor j % visitors.
func profiledBatch(b, visitors int) string {
	var s strings.Builder
	s.WriteString(`{"batch":[`)
	for j := b * 10; j < b*10+10; j++ {
		if j > b*10 {
			s.WriteString(",")
		}
		fmt.Fprintf(&s, `{"type":"track","event":"n%d","anonymousId":"visitor-%d","messageId":"pm-%d","context":{"consent":{"analytics":true,"personalization":true}}}`, j, j%visitors, j)
	}
	s.WriteString(`]}`)
	return s.String()
}

// postProfiled posts batch b to the nodes from first on until one accepts.
func postProfiled(t *testing.T, nodes []*proxytest.Instance, first, b, visitors int) {
	var urls []string
	for _, in := range nodes {
		urls = append(urls, in.URL)
	}
	postProfiledAt(t, urls, first, b, visitors)
}

// postProfiledAt posts batch b to the nodes at urls from first on, as a
// load balancer with retries does, until one accepts.
func postProfiledAt(t *testing.T, urls []string, first, b, visitors int) {
	deadline := time.Now().Add(40 * time.Second)
	for i := first; ; i++ {
		req, _ := http.NewRequest("POST", urls[i%len(urls)]+"/v1/batch", strings.NewReader(profiledBatch(b, visitors)))
		req.SetBasicAuth("demo", "")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("batch %d never accepted", b)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sentBySubject counts the enriched events of each subject.
func sentBySubject(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streams.Enriched)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	seen := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var ev vigiev1.Event
		if proto.Unmarshal(m.Data, &ev) != nil || ev.GetSubject() == "" || seen[ev.GetId()] {
			continue
		}
		seen[ev.GetId()] = true
		out[ev.GetSubject()]++
	}
	return out
}

// profileCounts returns, for each subject, the event counts of the copies
// of its profile in the nodes' stores (the owner's, cached while it holds
// the partition; none once dropped) and the count of its copy in KV.
func profileCounts(t *testing.T, js jetstream.JetStream, nodes []*proxytest.Instance, subjects map[string]int, partitions int) (local map[string][]int, shared map[string]int) {
	t.Helper()
	ctx := context.Background()
	local, shared = map[string][]int{}, map[string]int{}
	kv, _ := js.KeyValue(ctx, streams.BucketProfiles)
	for subj := range subjects {
		for _, in := range nodes {
			if in.Server == nil {
				continue
			}
			if p, err := in.Server.Store().Profile(ctx, "demo", subj); err == nil {
				local[subj] = append(local[subj], int(p.Count("track", "*", 7*24*time.Hour, time.Now().UnixMilli())))
			}
		}
		if kv == nil {
			continue
		}
		key := fmt.Sprintf("%d.demo.%s", streams.Partition("demo", subj, partitions), streams.KeyToken(subj))
		if e, err := kv.Get(ctx, key); err == nil {
			if p, err := storage.DecodeProfileValue(e.Value(), "demo", subj); err == nil {
				shared[subj] = int(p.Count("track", "*", 7*24*time.Hour, time.Now().UnixMilli()))
			}
		}
	}
	return local, shared
}

// segmentEntries counts the published entries of segment "three", by subject.
func segmentEntries(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]int{}
	st, err := js.Stream(ctx, streams.Segments)
	if err != nil {
		return out
	}
	info, err := st.Info(ctx)
	if err != nil {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || !strings.HasSuffix(m.Subject, ".three.entered") {
			continue
		}
		var c vigiev1.SegmentChange
		if proto.Unmarshal(m.Data, &c) == nil {
			out[c.GetSubject()]++
		}
	}
	return out
}

// TestClusterPartitionedProfiles: three Vigie nodes with the segments
// plugin, load spread over all of them; node 3 stopped under load and
// restarted. Every subject's profile counts exactly its events (in KV and
// in any node's cached copy: split profiles, on several nodes, each count
// part of them), each subject enters its segment once, and node 3 gets
// its share of the partitions back.
func TestClusterPartitionedProfiles(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3, withCountingSegment)
	js := nc.jetStream(t)
	const visitors = 24
	var wg sync.WaitGroup
	post := func(from, to int) {
		for b := from; b < to; b++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				postProfiled(t, nodes, b, b, visitors)
			}()
			time.Sleep(20 * time.Millisecond)
		}
	}
	post(0, 40)
	wg.Wait()
	nodes[2].Stop() // under load: batches keep coming to the others
	post(40, 80)
	wg.Wait()
	nodes[2].Restart()
	post(80, 120)
	wg.Wait()

	checkPartitionedProfiles(t, js, nodes, visitors, 1200, 90*time.Second)
	if owned := ownedBy(t, js, "v3"); owned < 4 {
		t.Fatalf("restarted node 3 owns %d partitions, want its share back (5 or 6)", owned)
	}
}

// checkPartitionedProfiles waits until visitors subjects have total
// enriched events, every subject's profile in KV (and any copy cached on
// the in-process nodes) counts exactly its events, and each subject entered
// segment "three" once; it fails the test after wait.
func checkPartitionedProfiles(t *testing.T, js jetstream.JetStream, nodes []*proxytest.Instance, visitors, want int, wait time.Duration) {
	t.Helper()
	const partitions = config.DefaultPartitions
	var sent, shared, entered map[string]int
	var local map[string][]int
	copiesAre := func(cs []int, n int) bool {
		for _, c := range cs {
			if c != n {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(wait)
	for {
		sent = sentBySubject(t, js)
		local, shared = profileCounts(t, js, nodes, sent, partitions)
		entered = segmentEntries(t, js)
		total := 0
		ok := len(sent) == visitors
		for s, n := range sent {
			total += n
			ok = ok && copiesAre(local[s], n) && shared[s] == n && entered[s] == 1
		}
		ok = ok && total == want
		if ok {
			break
		}
		if time.Now().After(deadline) {
			for s, n := range sent {
				if !copiesAre(local[s], n) || shared[s] != n || entered[s] != 1 {
					t.Errorf("subject %s…: %d events sent, profile counts %v on the nodes, %d in KV; entered %d times", s[:8], n, local[s], shared[s], entered[s])
				}
			}
			t.Fatalf("%d subjects, %d events enriched (want %d, %d)", len(sent), total, visitors, want)
		}
		time.Sleep(time.Second)
	}
}

// TestClusterPartitionsSurviveVigieNodeKill: node 3, a real vigie process
// with the segments plugin, is killed with SIGKILL under load (its leases
// expire, its unacknowledged events come back to the new owners) and
// restarted on its data dir: no profile counts an event twice or misses
// one, each subject enters its segment once, and node 3 gets its share of
// the partitions back.
func TestClusterPartitionsSurviveVigieNodeKill(t *testing.T) {
	t.Parallel()
	built := buildVigie(t)
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2, withCountingSegment)
	js := nc.jetStream(t)
	p := startVigieProcess(t, built(), nc.urls(), "v3", 256, nodes[0], countingSegmentYAML)
	urls := []string{nodes[0].URL, nodes[1].URL, p.url}
	const visitors = 24
	var wg sync.WaitGroup
	post := func(from, to int) {
		for b := from; b < to; b++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				postProfiledAt(t, urls, b, b, visitors)
			}()
			time.Sleep(20 * time.Millisecond)
		}
	}
	post(0, 40)
	wg.Wait()
	post(40, 60)
	p.kill() // under load: its in-flight segment batches are never acknowledged
	post(60, 80)
	wg.Wait()
	p.start()
	post(80, 120)
	wg.Wait()
	// Unacknowledged messages come back after the consumers' AckWait
	// (plugin_runtime.ack_wait, 10 s).
	checkPartitionedProfiles(t, js, nodes, visitors, 1200, 120*time.Second)
	if owned := ownedBy(t, js, "v3"); owned < 4 {
		t.Fatalf("restarted node 3 owns %d partitions, want its share back (5 or 6)", owned)
	}
}

// ownedBy waits up to 30 s for node to hold at least 4 leases and returns
// how many it holds.
func ownedBy(t *testing.T, js jetstream.JetStream, node string) int {
	t.Helper()
	return ownedAtLeast(t, js, node, 4)
}

// waitBalanced waits up to 30 s for each of nodes to hold its even share
// of the partitions (none moves after, while they all run).
func waitBalanced(t *testing.T, js jetstream.JetStream, nodes ...string) {
	t.Helper()
	share := config.DefaultPartitions / len(nodes)
	waitFor(t, "the partitions balanced", 30*time.Second, func() bool {
		for _, n := range nodes {
			if ownedAtLeast(t, js, n, 0) != share {
				return false
			}
		}
		return true
	})
}

// ownedAtLeast is ownedBy waiting for min partitions.
func ownedAtLeast(t *testing.T, js jetstream.JetStream, node string, min int) int {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, streams.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		owned := 0
		for n := range config.DefaultPartitions {
			if e, err := kv.Get(ctx, fmt.Sprintf("part.%d", n)); err == nil && strings.Contains(string(e.Value()), `"`+node+`"`) {
				owned++
			}
		}
		if owned >= min || time.Now().After(deadline) {
			return owned
		}
		time.Sleep(500 * time.Millisecond)
	}
}
