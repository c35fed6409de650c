package proxy_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/internal/streams"
)

// dedupKey is the shape of a VIGIE_DEDUP key: the site, then a hex MAC.
var dedupKey = regexp.MustCompile(`^demo\.[0-9a-f]{32,}$`)

// TestClusterCanariesNeverAtRest sends the canary sweep (every class, every
// encoding, every field, each consent state) through two Vigie nodes on a
// three-server NATS cluster, each payload on one node and again on the
// other (the dedup bucket's work), then erases one person. No canary may be
// found in any stream or KV bucket (decoded), in the servers' store files,
// in either node's Badger (every version, decoded, then raw) or logs; the
// dedup keys are the site and a hex MAC, and the tombstone names no
// identifier.
func TestClusterCanariesNeverAtRest(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2)
	payloads := append(canaryPayloads(), variantPayloads()...)
	for i, p := range payloads {
		path := "/v1/" + strings.SplitN(strings.SplitN(p, `"type":"`, 2)[1], `"`, 2)[0]
		for k := range 2 {
			in := nodes[(i+k)%2]
			deadline := time.Now().Add(15 * time.Second)
			for { // a 503 while the cluster settles is retried, as a client does
				code, body := in.Post(path, "demo", p)
				if code == 200 {
					break
				}
				if code != 503 || time.Now().After(deadline) {
					t.Fatalf("%s on node %d: %d %s", path, (i+k)%2+1, code, body)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	// An erasure by user id: its tombstone must not name the person.
	erased := canarytest.User + "-granted"
	id := privacyRequest(t, nodes[0], `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"`+erased+`"}}`)
	if v := waitRequest(t, nodes[0], id); v.Status != "done" {
		t.Fatalf("erasure: %+v", v.Raw)
	}
	for _, in := range nodes {
		waitOutboxEmpty(t, in)
	}
	js := nc.jetStream(t)
	if n := canarytest.ScanStreams(t, js, "cluster"); n < len(payloads) {
		t.Fatalf("scanned %d stream messages, want at least %d", n, len(payloads))
	}
	// Dedup keys: MACs, not messageIds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, streams.BucketDedup)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for k := range keys.Keys() {
		n++
		if !dedupKey.MatchString(k) {
			t.Errorf("dedup key %q is not the site and a hex MAC", k)
		}
	}
	if n == 0 {
		t.Error("no dedup key in VIGIE_DEDUP")
	}
	for i, in := range nodes {
		err := in.Server.Store().ScanAllVersions(func(k, v []byte) error {
			canarytest.Find(t, "node badger key", k)
			canarytest.Find(t, "node badger value of "+string(bytes.ToValidUTF8(k[:min(len(k), 24)], nil)), v)
			return nil
		})
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		canarytest.Find(t, "node logs", []byte(in.Logs()))
	}
	for _, in := range nodes {
		in.Stop()
		canarytest.ScanDir(t, in.Config.DataDir)
	}
	nc.stop()
	for _, s := range nc.servers {
		if canarytest.ScanDir(t, s.storeDir()) == 0 {
			t.Errorf("no store file for %s", s.name)
		}
		canarytest.Find(t, s.name+" log", []byte(s.log.String()))
	}
}
