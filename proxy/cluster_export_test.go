package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// fixedJetStream is a cluster.JetStreamer of one JetStream context.
type fixedJetStream struct{ js jetstream.JetStream }

func (f fixedJetStream) JetStream() jetstream.JetStream { return f.js }

// TestClusterExportServedByEveryNode: a person known on each of three
// nodes (identified on each by the same e-mail) asks for an access
// request made on node 1; once it is done, nodes 2 and 3 serve the very
// same export (JSON and page) as node 1, holding every node's events and
// vaulted traits, and so do they again later; after an erasure, each
// serves the same emptied export. The parts crossed the
// cluster sealed: the e-mail is in no bucket, NATS store file or log.
// Once the request's entries are purged (retention.requests), no node
// serves it any more.
func TestClusterExportServedByEveryNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	const email = "ines.export-canary@example.org"
	for i, in := range nodes {
		sendPerson(t, in, "u-ines", fmt.Sprintf("anon-ines-%d", i+1), email, "+33698765432")
	}
	id := privacyRequest(t, nodes[0], `{"type":"access","site":"demo","identifier":{"kind":"email","value":"`+email+`"}}`)
	if v := waitRequest(t, nodes[0], id); v.Status != "done" || stepStatus(v, "node:v2") != "done" || stepStatus(v, "node:v3") != "done" {
		t.Fatalf("access: %s %+v", v.Status, v.Steps)
	}
	export := func(in *proxytest.Instance, query string) (int, []byte) {
		return in.Admin("/admin/v1/privacy/requests/" + id + "/export" + query)
	}
	var want, wantHTML []byte
	waitFor(t, "node 1 to serve the export", 10*time.Second, func() bool {
		code, body := export(nodes[0], "")
		want = body
		return code == http.StatusOK
	})
	var doc exportDoc
	if err := json.Unmarshal(want, &doc); err != nil {
		t.Fatal(err)
	}
	// The user's pseudonym, the same on every node, and each node's
	// anonymous id; five events stored on each node.
	if len(doc.Subjects) != 4 || len(doc.Events) != 15 || len(doc.VaultTraits) != 1 {
		t.Errorf("node 1's export lacks the other nodes' parts: %d subjects, %d events, %d vaulted trait sets",
			len(doc.Subjects), len(doc.Events), len(doc.VaultTraits))
	}
	if !bytes.Contains(want, []byte(email)) {
		t.Error("the export lacks the vaulted e-mail")
	}
	code, wantHTML := export(nodes[0], "?format=html")
	if code != http.StatusOK {
		t.Fatalf("node 1's page: %d %.300s", code, wantHTML)
	}
	for round := range 2 {
		for i, in := range nodes {
			code, got := export(in, "")
			if code != http.StatusOK || !bytes.Equal(got, want) {
				t.Errorf("round %d: node %d's export (%d) differs from node 1's:\n got %.400s\nwant %.400s", round+1, i+1, code, got, want)
			}
			code, page := export(in, "?format=html")
			if code != http.StatusOK || !bytes.Equal(page, wantHTML) {
				t.Errorf("round %d: node %d's page (%d) differs from node 1's", round+1, i+1, code)
			}
		}
		time.Sleep(1100 * time.Millisecond) // a generation time taken at download would move
	}
	// The console's request page links to the download on every node.
	for i, in := range nodes {
		if v := getRequest(t, in, id); v.Raw["links"] == nil {
			t.Errorf("node %d's view of the request has no export link: %v", i+1, v.Raw)
		}
	}

	// Erased (requested on node 1): each node, node 1 included, empties
	// its part of the export, which every node then serves alike.
	eid := privacyRequest(t, nodes[0], `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u-ines"}}`)
	if v := waitRequest(t, nodes[0], eid); v.Status != "done" {
		t.Fatalf("erase: %s %+v", v.Status, v.Steps)
	}
	for i, in := range nodes {
		var body []byte
		waitFor(t, fmt.Sprintf("node %d to serve the emptied export", i+1), 10*time.Second, func() bool {
			var code int
			code, body = export(in, "")
			var doc exportDoc
			return code == http.StatusOK && json.Unmarshal(body, &doc) == nil && len(doc.Events) == 0 && len(doc.VaultTraits) == 0
		})
		if i == 0 {
			want = body
		} else if !bytes.Equal(body, want) {
			t.Errorf("node %d's emptied export differs from node 1's:\n got %.400s\nwant %.400s", i+1, body, want)
		}
	}

	assertBucketHolds(t, nc, "KV_VIGIE_REQUESTS", email, false)
	for i, in := range nodes {
		waitOutboxEmpty(t, in)
		canarytest.FindExtra(t, fmt.Sprintf("node %d logs", i+1), []byte(in.Logs()), email)
	}

	// The purge of the request's entries (retention.requests) takes the
	// receiving node's part with the others: no node serves the export
	// (node 1, which still holds the request until its own purge: gone).
	js := nc.jetStream(t)
	req := &cluster.Requests{JS: fixedJetStream{js}, Self: "test"}
	if n, err := req.Purge(t.Context(), func(rid string, _ []byte) bool { return rid == id }); err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
	kv, err := js.KeyValue(t.Context(), streams.BucketRequests)
	if err != nil {
		t.Fatal(err)
	}
	if lister, err := kv.ListKeys(t.Context()); err == nil {
		for k := range lister.Keys() {
			if strings.Contains(k, streams.KeyToken(id)) {
				t.Errorf("key %s of the purged request left", k)
			}
		}
	}
	for i, in := range nodes {
		if code, body := export(in, ""); code != http.StatusNotFound && (i != 0 || code != http.StatusGone) {
			t.Errorf("node %d's export after the purge: %d %.200s", i+1, code, body)
		}
	}

	for _, in := range nodes {
		in.Stop()
	}
	nc.stop()
	for _, s := range nc.servers {
		if canarytest.ScanDir(t, s.storeDir(), email) == 0 {
			t.Errorf("no store file for %s", s.name)
		}
		canarytest.FindExtra(t, s.name+" log", []byte(s.log.String()), email)
	}
}
