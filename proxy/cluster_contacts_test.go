package proxy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// crmFile is the file node in's crm plugin records its sync items in.
func crmFile(in *proxytest.Instance) string {
	for _, p := range in.Config.Plugins {
		if p.Name == "crm" {
			return p.Config["file"].(string)
		}
	}
	return ""
}

// syncPerson sends a person (sendPerson) to node in and waits until its crm
// was given their e-mail.
func syncPerson(t *testing.T, in *proxytest.Instance, node, user, anon, email, phone string) {
	t.Helper()
	sendPerson(t, in, user, anon, email, phone)
	waitFor(t, node+"'s crm given "+user+"'s e-mail", 45*time.Second, func() bool {
		f, _ := os.ReadFile(crmFile(in))
		return strings.Contains(string(f), email)
	})
}

// refusePrivacy sets whether node in's crm plugin fails every privacy
// item (so that another node's crm handles it), for its next start.
func refusePrivacy(in *proxytest.Instance, refuse bool) {
	for _, p := range in.Config.Plugins {
		if p.Name == "crm" {
			p.Config["refuse_privacy"] = refuse
		}
	}
}

// erasureSynced reports whether the crm file holds the erasure item of
// request id (its own event, or a member's: <id>.<node>) and whether that
// item carries the e-mail address.
func erasureSynced(file, id, email string) (seen, withContact bool) {
	b, _ := os.ReadFile(file)
	for _, e := range recordEntries(string(b))["sync"] {
		if strings.Contains(e, "PRIVACY_ACTION_ERASURE") && strings.Contains(e, id) {
			seen = true
			withContact = withContact || strings.Contains(e, email)
		}
	}
	return seen, withContact
}

// requestKeys lists the keys of VIGIE_REQUESTS about request id (those of
// its members' own events, <id>.<node>, included) with their values.
func requestKeys(t *testing.T, nc *natsCluster, id string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := nc.jetStream(t).KeyValue(ctx, streams.BucketRequests)
	if err != nil {
		t.Fatal(err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for k := range lister.Keys() {
		_, rest, _ := strings.Cut(k, ".")
		tok, _, _ := strings.Cut(rest, ".")
		if v, ok := streams.TokenValue(tok); ok && (v == id || strings.HasPrefix(v, id+".")) {
			e, err := kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // deleted since it was listed (a purge running)
			}
			if err != nil {
				t.Fatal(err)
			}
			out[k] = e.Value()
		}
	}
	return out
}

// TestClusterErasureContactOnAnotherNode: the crm syncer's consumers are
// shared, so the erasure event is handled by whichever node pulls it. A
// person whose contact node 1 gave its crm, erased on node 1, and a person
// known only on node 2 (whose crm had the contact), erased on node 1 by
// e-mail (node 2 publishes that erasure event itself, <id>.v2), are both
// handled by node 3's crm (the others refuse privacy items): it is given
// each person's contact. The contacts crossed the cluster sealed only (no
// canary in the NATS servers' store files) and are emptied once each
// request is done. On the code before, node 3's crm was told no contact.
func TestClusterErasureContactOnAnotherNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3, func(c *config.Config) {
		c.Plugins = []config.Plugin{{Name: "crm", Config: map[string]any{"file": filepath.Join(t.TempDir(), "crm.txt")}}}
		c.PluginRuntime.Backoff = []config.Duration{config.Duration(200 * time.Millisecond)}
		c.PluginRuntime.MaxDeliver = 1000
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	const (
		email1, phone1 = canarytest.Email, "+33612345678"
		email2, phone2 = "lou.contact.canary@example.org", "+33699887766"
	)
	// Each person's identify synced by the crm of the node that stores
	// them (the sync history an erasure captures from is that node's).
	b.Stop()
	c.Stop()
	refusePrivacy(a, true)
	a.Restart()
	syncPerson(t, a, "node 1", "u-ec-one", "anon-ec-one", email1, phone1)
	a.Stop()
	refusePrivacy(b, true)
	b.Restart()
	syncPerson(t, b, "node 2", "u-ec-two", "anon-ec-two", email2, phone2)
	a.Restart()
	c.Restart()

	one := privacyRequest(t, a, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u-ec-one"}}`)
	two := privacyRequest(t, a, `{"type":"erase","site":"demo","identifier":{"kind":"email","value":"`+email2+`"}}`)
	// Done: the crm acknowledged (node 1's plugin step for the first, node
	// 2's for its own event of the second).
	for _, r := range []struct{ id, email, step string }{{one, email1, "plugin:crm"}, {two, email2, "node:v2"}} {
		if v := waitRequest(t, a, r.id); v.Status != "done" || stepStatus(v, r.step) != "done" {
			t.Fatalf("erasure %s: %s %+v", r.id, v.Status, v.Steps)
		}
		seen, withContact := erasureSynced(crmFile(c), r.id, r.email)
		if !seen {
			t.Fatalf("node 3's crm did not handle erasure %s", r.id)
		}
		if !withContact {
			t.Errorf("node 3's crm handled erasure %s without the person's contact", r.id)
		}
		for _, in := range []*proxytest.Instance{a, b} {
			if seen, _ := erasureSynced(crmFile(in), r.id, r.email); seen {
				t.Fatalf("erasure %s handled by a crm refusing privacy items", r.id)
			}
		}
	}
	for _, in := range nodes {
		waitOutboxEmpty(t, in)
	}
	for _, id := range []string{one, two} {
		for k, v := range requestKeys(t, nc, id) {
			if strings.HasPrefix(k, "contact.") && len(v) > 0 {
				t.Errorf("%s still holds the contacts once request %s is done", k, id)
			}
		}
	}
	for _, in := range nodes {
		in.Stop()
	}
	nc.stop()
	extra := []string{email2, phone1, phone2, strings.TrimPrefix(phone1, "+33"), strings.TrimPrefix(phone2, "+33")}
	nc.scanStores(t, extra...)
}

// TestClusterRequestEntriesPurgedAfterRetention: a person known only on
// node 2 is erased on node 1 by e-mail (so VIGIE_REQUESTS holds node 1's
// announcement and view, node 2's step and the entries of node 2's own
// erasure event). Once the request's retention (2s here) has passed, node
// 2's purge at its start removes every entry of the request from the
// bucket. On the code before, they were kept for ever.
func TestClusterRequestEntriesPurgedAfterRetention(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2, func(c *config.Config) {
		if c.Retention == nil {
			c.Retention = map[string]config.Duration{}
		}
		c.Retention[config.RetentionRequests] = config.Duration(2 * time.Second)
	})
	a, b := nodes[0], nodes[1]
	const email = "purge.me@example.org"
	sendPerson(t, b, "u-purge", "anon-purge", email, "+33611220000")
	other := privacyRequest(t, a, `{"type":"access","site":"demo","identifier":{"kind":"user_id","value":"u-nobody"}}`)
	id := privacyRequest(t, a, `{"type":"erase","site":"demo","identifier":{"kind":"email","value":"`+email+`"}}`)
	for _, r := range []string{other, id} {
		if v := waitRequest(t, a, r); v.Status != "done" {
			t.Fatalf("request %s: %s %+v", r, v.Status, v.Steps)
		}
	}
	for _, in := range nodes {
		waitOutboxEmpty(t, in)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range requestKeys(t, nc, id) {
			if !yield(k) {
				return
			}
		}
	})
	t.Logf("VIGIE_REQUESTS keys of request %s: %v", id, keys)
	for _, want := range []string{"req.", "view.", "step."} {
		if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, want) }) {
			t.Fatalf("no %s entry of request %s in VIGIE_REQUESTS: %v", want, id, keys)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	b.Restart() // its purge runs at start
	waitFor(t, "the request's entries purged from VIGIE_REQUESTS", 30*time.Second, func() bool {
		return len(requestKeys(t, nc, id)) == 0 && len(requestKeys(t, nc, other)) == 0
	})
}

// TestClusterErasureContactSyncedOnAnotherNode: node 1 stores a person's
// identify and its crm syncs it (the sync history and the vault are node
// 1's); the person then comes back through node 2, so node 2 finds the
// subject too and its own erasure event names it. The erasure is sent to
// node 2 and handled by node 3's crm (the others refuse privacy items):
// node 3's crm is given the contact node 1 synced, node 1 having
// contributed it before its vault copy was shredded. The contact crossed
// the cluster sealed only and is emptied once the request is done. On the
// code before, node 2 captured from its own sync history only, and node
// 3's crm was told no contact.
func TestClusterErasureContactSyncedOnAnotherNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3, func(c *config.Config) {
		c.Plugins = []config.Plugin{{Name: "crm", Config: map[string]any{"file": filepath.Join(t.TempDir(), "crm.txt")}}}
		c.PluginRuntime.Backoff = []config.Duration{config.Duration(200 * time.Millisecond)}
		c.PluginRuntime.MaxDeliver = 1000
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	const email, phone = canarytest.Email, "+33612345678"
	b.Stop()
	c.Stop()
	syncPerson(t, a, "node 1", "u-sync-one", "anon-sync-one", email, phone)
	user, _ := personSubjects(t, a)
	for _, in := range []*proxytest.Instance{a, b} {
		refusePrivacy(in, true)
	}
	a.Restart()
	b.Restart()
	c.Restart()
	body := `{"userId":"u-sync-one","event":"Came Back","context":{"consent":` + rtConsent + `}}`
	if code, resp := b.Post("/v1/track", "demo", body); code != 200 {
		t.Fatalf("track on node 2: %d %s", code, resp)
	}
	if has, err := b.Server.Store().HasSubject(context.Background(), "demo", user); err != nil || !has {
		t.Fatalf("node 2 does not hold the person: %v %v", has, err)
	}

	id := privacyRequest(t, b, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u-sync-one"}}`)
	v := waitRequest(t, b, id)
	if v.Status != "done" || stepStatus(v, "plugin:crm") != "done" || stepStatus(v, "node:v1") != "done" {
		t.Fatalf("erasure %s: %s %+v", id, v.Status, v.Steps)
	}
	seen, withContact := erasureSynced(crmFile(c), id, email)
	if !seen {
		t.Fatalf("node 3's crm did not handle erasure %s", id)
	}
	if !withContact {
		t.Errorf("node 3's crm handled erasure %s without the contact node 1's crm was given", id)
	}
	for _, in := range []*proxytest.Instance{a, b} {
		if seen, _ := erasureSynced(crmFile(in), id, email); seen {
			t.Fatalf("erasure %s handled by a crm refusing privacy items", id)
		}
	}
	for _, in := range nodes {
		waitOutboxEmpty(t, in)
	}
	waitFor(t, "the request's contacts emptied in VIGIE_REQUESTS", 10*time.Second, func() bool {
		for k, v := range requestKeys(t, nc, id) {
			if strings.HasPrefix(k, "contact.") && len(v) > 0 {
				return false
			}
		}
		return true
	})
	for _, in := range nodes {
		in.Stop()
	}
	nc.stop()
	nc.scanStores(t, phone, strings.TrimPrefix(phone, "+33"))
}
