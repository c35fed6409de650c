package proxy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// vaultPlugins gives a node the segments plugin (a segment everyone
// enters: the subjects get profiles, whose consent a rectification's
// contact resolution reads) and the crm test plugin.
func vaultPlugins(t *testing.T) proxytest.Option {
	return func(c *config.Config) {
		c.Plugins = []config.Plugin{
			{Name: "segments", Config: map[string]any{"segments": []any{map[string]any{"name": "everyone", "when": "true"}}}},
			{Name: "crm", Config: map[string]any{"file": filepath.Join(t.TempDir(), "crm.txt")}},
		}
		c.PluginRuntime.Backoff = []config.Duration{config.Duration(200 * time.Millisecond)}
		c.PluginRuntime.MaxDeliver = 1000
	}
}

// vaultNodes starts n nodes with vaultPlugins.
func vaultNodes(t *testing.T, n int) (*natsCluster, []*proxytest.Instance) {
	t.Helper()
	nc := startNATSCluster(t)
	return nc, startVigieNodes(t, nc, n, vaultPlugins(t))
}

// refuseSync sets whether node in's crm plugin fails every sync item (so
// that another node's crm handles it) and restarts the node.
func refuseSync(in *proxytest.Instance, refuse bool) {
	for _, p := range in.Config.Plugins {
		if p.Name == "crm" {
			p.Config["refuse_sync"] = refuse
		}
	}
	in.Restart()
}

// syncItems are the sync items of kind (identify, privacy…) in nodes' crm
// files that name subject and hold has.
func syncItems(nodes []*proxytest.Instance, subject, kind, has string) []string {
	var out []string
	for _, in := range nodes {
		b, _ := os.ReadFile(crmFile(in))
		for _, e := range recordEntries(string(b))["sync"] {
			if strings.HasPrefix(e, "sync "+kind) && strings.Contains(e, subject) && strings.Contains(e, has) {
				out = append(out, e)
			}
		}
	}
	return out
}

// identifyElsewhere sends a person to node 1 (whose crm refuses every sync
// item) and waits for another node's crm to handle the identify; it
// returns the person's user pseudonym and that item.
func identifyElsewhere(t *testing.T, nodes []*proxytest.Instance, user, email, phone string) (string, string) {
	t.Helper()
	a := nodes[0]
	refuseSync(a, true)
	sendPerson(t, a, user, "anon-"+user, email, phone)
	subj, _ := personSubjects(t, a)
	var items []string
	waitFor(t, "another node's crm to handle "+user+"'s identify", 45*time.Second, func() bool {
		items = syncItems(nodes[1:], subj, "identify", "")
		return len(items) > 0
	})
	if got := syncItems(nodes[:1], subj, "identify", ""); len(got) > 0 {
		t.Fatal("node 1's crm, refusing sync items, recorded the identify")
	}
	return subj, items[0]
}

// vaultMessages are the messages of KV_VIGIE_VAULT on subject's key (a raw
// scan of the stream: every message it keeps, delete markers included).
func vaultMessages(t *testing.T, nc *natsCluster, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := t.Context()
	st, err := nc.jetStream(t).Stream(ctx, streams.KVStream(streams.BucketVault))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := streams.KVSubject(streams.BucketVault, cluster.VaultKey("demo", subject))
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		if m, err := st.GetMsg(ctx, seq); err == nil && m.Subject == key {
			out = append(out, m)
		}
	}
	return out
}

// TestClusterVaultContactOnAnotherNode: the crm syncer's consumers are
// shared, so an identify ingested on node 1 (whose crm refuses every sync
// item) is handled by node 2's or node 3's crm, whose own vault has no
// trace of the person: it is given the e-mail all the same (from KV
// VIGIE_VAULT, where node 1's outbox put the sealed entry, never the clear
// e-mail). On the code before, it was told no contact.
func TestClusterVaultContactOnAnotherNode(t *testing.T) {
	t.Parallel()
	nc, nodes := vaultNodes(t, 3)
	const email, phone = canarytest.Email, "+33612345678"
	subj, item := identifyElsewhere(t, nodes, "u-vault-one", email, phone)
	if !strings.Contains(item, email) {
		t.Fatalf("the crm of the node handling the identify was not given the e-mail: %s", item)
	}
	msgs := vaultMessages(t, nc, subj)
	if len(msgs) != 1 || len(msgs[0].Data) == 0 {
		t.Fatalf("VIGIE_VAULT holds %d message(s) for the person, want its one entry", len(msgs))
	}
	if bytes.Contains(msgs[0].Data, []byte(email)) || bytes.Contains(msgs[0].Data, []byte(phone)) {
		t.Fatal("VIGIE_VAULT holds the person's traits in clear")
	}
}

// TestClusterVaultErasureOnAnotherNode: a person ingested on node 1 (and
// synced by another node's crm from KV VIGIE_VAULT) is erased on node 2:
// the bucket then keeps no entry of theirs, only a delete marker (a raw
// scan of its stream; the entry's bytes are not in the NATS servers'
// files either: secure delete), and a later identify without traits,
// handled by node 2 or 3, is given no contact. The clear e-mail was never
// in the NATS servers' store files.
func TestClusterVaultErasureOnAnotherNode(t *testing.T) {
	t.Parallel()
	nc, nodes := vaultNodes(t, 3)
	a, b := nodes[0], nodes[1]
	const email, phone = canarytest.Email, "+33612345678"
	subj, item := identifyElsewhere(t, nodes, "u-vault-erased", email, phone)
	if !strings.Contains(item, email) {
		t.Fatalf("the identify was handled without the e-mail: %s", item)
	}
	before := vaultMessages(t, nc, subj)
	if len(before) != 1 || len(before[0].Data) == 0 {
		t.Fatalf("VIGIE_VAULT holds %d message(s) for the person before the erasure, want 1", len(before))
	}
	id := privacyRequest(t, b, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u-vault-erased"}}`)
	if v := waitRequest(t, b, id); v.Status != "done" || stepStatus(v, "node:v1") != "done" {
		t.Fatalf("erasure: %s %+v", v.Status, v.Steps)
	}
	for _, in := range nodes {
		waitOutboxEmpty(t, in)
	}
	waitFor(t, "the person's VIGIE_VAULT entry deleted", 10*time.Second, func() bool {
		for _, m := range vaultMessages(t, nc, subj) {
			if len(m.Data) > 0 || m.Header.Get(streams.KVOperationHeader) == "" {
				return false
			}
		}
		return true
	})
	assertBucketHolds(t, nc, streams.KVStream(streams.BucketVault), string(before[0].Data), false)

	n := len(syncItems(nodes[1:], subj, "identify", ""))
	body := `{"userId":"u-vault-erased","traits":{"plan":"team"},"context":{"consent":` + rtConsent + `}}`
	if code, resp := a.Post("/v1/identify", "demo", body); code != 200 {
		t.Fatalf("identify on node 1: %d %s", code, resp)
	}
	var items []string
	waitFor(t, "the later identify handled by node 2 or 3", 45*time.Second, func() bool {
		items = syncItems(nodes[1:], subj, "identify", "")
		return len(items) > n
	})
	for _, e := range items {
		if strings.Contains(e, "team") && strings.Contains(e, email) {
			t.Fatalf("the identify after the erasure was given the erased e-mail: %s", e)
		}
	}
	for _, in := range nodes {
		in.Stop()
	}
	nc.stop()
	// The clear traits were never at rest in NATS; the sealed entry (which
	// a keyring holder could open) was erased from the block files, not
	// only marked removed.
	nc.scanStores(t, phone, strings.TrimPrefix(phone, "+33"))
	nc.eachStoreFile(t, func(path string, data []byte) {
		if bytes.Contains(data, before[0].Data) {
			t.Errorf("the erased person's sealed entry is still in %s", path)
		}
	})
}

// TestClusterVaultRectificationOnAnotherNode: a person ingested on node 1
// is rectified on node 2 (each node then replaces the traits it has), and
// node 3 joins the cluster once the rectification is done: its own vault
// has no trace of the person, and its crm, the only one accepting sync
// items, handles the rectification events and is given the new e-mail,
// read from KV VIGIE_VAULT. On the code before, it was given no contact.
func TestClusterVaultRectificationOnAnotherNode(t *testing.T) {
	t.Parallel()
	nc, nodes := vaultNodes(t, 2)
	b := nodes[1]
	const email, phone, newEmail = "ren.vault@example.org", "+33611223344", "ren.rectified@example.org"
	subj, _ := identifyElsewhere(t, nodes, "u-vault-rect", email, phone)
	refuseSync(b, true)
	rid := privacyRequest(t, b, `{"type":"rectify","site":"demo","identifier":{"kind":"user_id","value":"u-vault-rect"},"traits":{"email":"`+newEmail+`"}}`)
	if v := waitRequest(t, b, rid); v.Status != "done" || stepStatus(v, "node:v1") != "done" {
		t.Fatalf("rectify: %s %+v", v.Status, v.Steps)
	}
	c := startExtraNode(t, nc, nodes[0], "v3", vaultPlugins(t))
	nodes = append(nodes, c)
	var items []string
	waitFor(t, "node 3's crm to handle the rectification", 60*time.Second, func() bool {
		items = syncItems(nodes[2:], subj, "privacy", "PRIVACY_ACTION_RECTIFY")
		return len(items) > 0
	})
	for _, e := range items {
		if !strings.Contains(e, newEmail) {
			t.Errorf("node 3's crm was not given the rectified e-mail: %s", e)
		}
	}
	if got := syncItems(nodes[:2], subj, "privacy", "PRIVACY_ACTION_RECTIFY"); len(got) > 0 {
		t.Fatal("a crm refusing sync items recorded the rectification")
	}
	if _, err := c.Server.Store().VaultTraits(subj, "demo"); err == nil {
		t.Fatal("node 3's own vault holds the person: the test proves nothing")
	}
	for _, m := range vaultMessages(t, nc, subj) {
		if bytes.Contains(m.Data, []byte(newEmail)) {
			t.Fatal("VIGIE_VAULT holds the rectified e-mail in clear")
		}
	}
}
