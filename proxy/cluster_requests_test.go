package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// personOnEveryNode stores events of user through every node (a grant on
// the first, then tracks on each until it stores them with the person's
// pseudonym) and returns withSubject, which counts a node's events stored
// with a pseudonym.
func personOnEveryNode(t *testing.T, nodes []*proxytest.Instance, user string) func(in *proxytest.Instance) int {
	t.Helper()
	track := func(in *proxytest.Instance, event, consentJSON string) {
		t.Helper()
		body := fmt.Sprintf(`{"event":%q,"userId":%q`, event, user)
		if consentJSON != "" {
			body += `,"context":{"consent":` + consentJSON + `}`
		}
		if code, resp := in.Post("/v1/track", "demo", body+"}"); code != 200 {
			t.Fatalf("%s: %d %s", event, code, resp)
		}
	}
	withSubject := func(in *proxytest.Instance) int {
		n := 0
		for _, e := range adminEvents(t, in, "site=demo") {
			if e["mode"] != "anonymous" {
				n++
			}
		}
		return n
	}
	track(nodes[0], "Grant", `{"analytics":true,"personalization":true,"marketing":true}`)
	for i, in := range nodes[1:] {
		j := 0
		waitUntil(t, fmt.Sprintf("node %d to store the person's events", i+2), 10*time.Second, func() bool {
			j++
			track(in, fmt.Sprintf("Seen%d", j), "")
			return withSubject(in) > 0
		})
	}
	return withSubject
}

// waitStep waits until step name of request id, read on in, has status.
func waitStep(t *testing.T, in *proxytest.Instance, id, name, status string) requestView {
	t.Helper()
	var v requestView
	waitFor(t, "step "+name+" "+status, 30*time.Second, func() bool {
		v = getRequest(t, in, id)
		return stepStatus(v, name) == status
	})
	return v
}

// TestClusterErasureWaitsForEveryNode: an erasure requested on node 1
// while node 3 is stopped is not done, node 3's step pending; node 3
// restarted on its data dir catches the request up, erases its events and
// reports: the request is then done, on every node's answer, and no node
// holds the person's events.
func TestClusterErasureWaitsForEveryNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	withSubject := personOnEveryNode(t, nodes, "u5")
	c.Stop()
	id := privacyRequest(t, a, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u5"}}`)
	waitStep(t, a, id, "node:v2", "done")
	waitStep(t, a, id, "verify", "done")
	time.Sleep(2 * time.Second) // a poll or two of the runner
	v := getRequest(t, a, id)
	if v.Status == "done" || stepStatus(v, "node:v3") != "pending" {
		t.Fatalf("with node 3 down the erasure is %s, node 3's step %q: %+v", v.Status, stepStatus(v, "node:v3"), v.Steps)
	}
	if v.DaysLeft < 28 {
		t.Errorf("days left %d: the deadline moved", v.DaysLeft)
	}
	c.Restart()
	if v := waitRequest(t, a, id); v.Status != "done" || stepStatus(v, "node:v3") != "done" {
		t.Fatalf("after node 3's return: %s %+v", v.Status, v.Steps)
	}
	for i, in := range nodes {
		if n := withSubject(in); n != 0 {
			t.Errorf("node %d still holds %d events of the person", i+1, n)
		}
	}
	// Any node answers the request's status.
	waitFor(t, "node 2 to answer the request done", 10*time.Second, func() bool {
		return getRequest(t, b, id).Status == "done"
	})
}

// TestClusterAccessAndRectifyReachAnotherNode: a person known only on
// node 2 (identified there by e-mail, so only node 2's blind index knows
// it) is found by an access request made on node 1, whose export holds
// node 2's events and vaulted traits; a rectification made on node 1
// replaces the traits in node 2's vault.
func TestClusterAccessAndRectifyReachAnotherNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	a, b := nodes[0], nodes[1]
	const email = "kim.cluster@example.org"
	sendPerson(t, b, "u-kim", "anon-kim", email, "+33612345678")
	user, _ := personSubjects(t, b)
	id := privacyRequest(t, a, `{"type":"access","site":"demo","identifier":{"kind":"email","value":"`+email+`"}}`)
	if v := waitRequest(t, a, id); v.Status != "done" || stepStatus(v, "node:v2") != "done" {
		t.Fatalf("access: %s %+v", v.Status, v.Steps)
	}
	code, body := a.Admin("/admin/v1/privacy/requests/" + id + "/export")
	if code != 200 {
		t.Fatalf("export: %d %s", code, body)
	}
	var doc exportDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(doc.Subjects, user) {
		t.Errorf("export subjects %v lack node 2's %s", doc.Subjects, user)
	}
	if !bytes.Contains(body, []byte("Signed Up")) || !bytes.Contains(body, []byte("Ordered")) || len(doc.Events) < 4 {
		t.Errorf("the export lacks node 2's events: %d events", len(doc.Events))
	}
	if !bytes.Contains(body, []byte(email)) {
		t.Error("the export lacks node 2's vaulted e-mail")
	}
	// The parts crossed the cluster sealed: no e-mail in clear in the bucket.
	assertBucketHolds(t, nc, "KV_VIGIE_REQUESTS", email, false)

	rid := privacyRequest(t, a, `{"type":"rectify","site":"demo","identifier":{"kind":"email","value":"`+email+`"},"traits":{"email":"kim.new@example.org"}}`)
	if v := waitRequest(t, a, rid); v.Status != "done" || stepStatus(v, "node:v2") != "done" {
		t.Fatalf("rectify: %s %+v", v.Status, v.Steps)
	}
	traits, err := b.Server.Store().VaultTraits(user, "demo")
	if err != nil || !bytes.Contains(traits, []byte("kim.new@example.org")) {
		t.Fatalf("node 2's vault after the rectification on node 1: %s, %v", traits, err)
	}
	assertBucketHolds(t, nc, "KV_VIGIE_REQUESTS", "kim.new", false)

	// Erased (requested on node 1 by user id): node 2 erases the person and
	// empties its sealed part of the earlier export.
	eid := privacyRequest(t, a, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u-kim"}}`)
	if v := waitRequest(t, a, eid); v.Status != "done" || stepStatus(v, "node:v2") != "done" {
		t.Fatalf("erase: %s %+v", v.Status, v.Steps)
	}
	if _, err := b.Server.Store().VaultTraits(user, "demo"); err == nil {
		t.Error("node 2's vault still holds the person's traits")
	}
	waitFor(t, "node 2's part of the export to be emptied", 10*time.Second, func() bool {
		code, body := a.Admin("/admin/v1/privacy/requests/" + id + "/export")
		var doc exportDoc
		return code == 200 && json.Unmarshal(body, &doc) == nil && len(doc.Events) == 0 && len(doc.VaultTraits) == 0
	})
}

// assertBucketHolds checks whether any message of stream holds s.
func assertBucketHolds(t *testing.T, nc *natsCluster, stream, s string, want bool) {
	t.Helper()
	js := nc.jetStream(t)
	ctx := t.Context()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if strings.Contains(string(m.Data), s) {
			found = true
		}
	}
	if found != want {
		t.Errorf("%s holds %q: %v, want %v", stream, s, found, want)
	}
}

// TestClusterRemovedNodeNoLongerHoldsRequests: an erasure waits for a
// stopped node until an operator removes it from the membership (refused
// while it is live); then it is done, the node's step saying why.
func TestClusterRemovedNodeNoLongerHoldsRequests(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	personOnEveryNode(t, nodes[:2], "u6")
	c.Stop()
	id := privacyRequest(t, a, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u6"}}`)
	waitStep(t, a, id, "node:v2", "done")
	admin := http.Header{"Authorization": {"Bearer " + a.AdminToken()}}
	if code, body := a.Do("DELETE", "/admin/v1/cluster/nodes/v2", nil, admin); code != http.StatusConflict {
		t.Fatalf("removing a live node: %d %s, want 409", code, body)
	}
	if code, body := a.Do("DELETE", "/admin/v1/cluster/nodes/nope", nil, admin); code != http.StatusNotFound {
		t.Fatalf("removing an unknown node: %d %s, want 404", code, body)
	}
	waitFor(t, "node 3 to be no longer live", 20*time.Second, func() bool {
		code, body := a.Admin("/admin/v1/cluster/nodes")
		if code != 200 {
			t.Fatalf("nodes: %d %s", code, body)
		}
		var l struct {
			Nodes []struct {
				Node string
				Live bool
			}
		}
		_ = json.Unmarshal(body, &l)
		for _, n := range l.Nodes {
			if n.Node == "v3" {
				return !n.Live
			}
		}
		t.Fatalf("v3 not listed: %s", body)
		return false
	})
	if v := getRequest(t, a, id); v.Status == "done" {
		t.Fatalf("the erasure is done before node 3 reported or was removed: %+v", v.Steps)
	}
	if code, body := a.Do("DELETE", "/admin/v1/cluster/nodes/v3", nil, admin); code != 200 {
		t.Fatalf("removing node 3: %d %s", code, body)
	}
	v := waitRequest(t, a, id)
	if v.Status != "done" || stepStatus(v, "node:v3") != "skipped" {
		t.Fatalf("after node 3's removal: %s %+v", v.Status, v.Steps)
	}
	for _, st := range v.Steps {
		if st.Name == "node:v3" && !strings.Contains(st.Detail, "removed from the cluster") {
			t.Errorf("node 3's step does not say it was removed: %q", st.Detail)
		}
	}
	_ = b
}

// TestClusterPluginAckOnAnotherNode: the nodes' plugins share their
// durable consumers, so another node's plugin may handle an erasure
// requested on node 1 (of people stored on node 1 and another node); its
// acknowledgement reaches node 1's plugin step, and every erasure ends
// done.
func TestClusterPluginAckOnAnotherNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := rightsCluster(t, nc)
	first := nodes[0]
	var ids []string
	for i := range 4 {
		user := fmt.Sprintf("u-ack-%d", i)
		for _, in := range []*proxytest.Instance{first, nodes[i%3]} {
			if code, resp := in.Post("/v1/track", "demo", `{"event":"Grant","userId":"`+user+`","context":{"consent":`+rtConsent+`}}`); code != 200 {
				t.Fatalf("track: %d %s", code, resp)
			}
		}
		ids = append(ids, privacyRequest(t, first, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"`+user+`"}}`))
	}
	for _, id := range ids {
		if v := waitRequest(t, first, id); v.Status != "done" || stepStatus(v, "plugin:recorder") != "done" {
			t.Fatalf("erasure %s: %s %+v", id, v.Status, v.Steps)
		}
	}
}

// rightsCluster starts 3 Vigie nodes in cluster mode on nc, each with
// rightsServer's plugins, sharing the first node's keyring and keys.
func rightsCluster(t *testing.T, nc *natsCluster) []*proxytest.Instance {
	t.Helper()
	clusterMode := func(id string) proxytest.Option {
		return func(c *config.Config) {
			c.NATS.URL = nc.urls()
			c.Cluster.NodeID = id
		}
	}
	first, _ := rightsServer(t, nil, clusterMode("v1"))
	kr, err := os.ReadFile(filepath.Join(first.Config.DataDir, keyring.FileName))
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*proxytest.Instance{first}
	for i := 2; i <= 3; i++ {
		in, _ := rightsServer(t, nil, clusterMode(fmt.Sprintf("v%d", i)), func(c *config.Config) {
			c.Keys.MasterKey = first.Config.Keys.MasterKey
			c.Keys.AdminToken = first.Config.Keys.AdminToken
			if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(c.DataDir, keyring.FileName), kr, 0o600); err != nil {
				t.Fatal(err)
			}
		})
		nodes = append(nodes, in)
	}
	return nodes
}

// TestClusterErasureOfAnotherNodesPersonReachesPlugins: a person known
// only on node 2 (identified there by e-mail) is erased by a request made
// on node 1 by that e-mail, which node 1 finds no subject for: node 2
// publishes the erasure event naming its subjects to the privacy stream,
// the plugins acknowledge it (counted in node 2's step), VIGIE_EVENTS
// keeps none of the person's messages, and the request is done only then.
func TestClusterErasureOfAnotherNodesPersonReachesPlugins(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := rightsCluster(t, nc)
	a, b := nodes[0], nodes[1]
	const email = "lou.cluster@example.org"
	sendPerson(t, b, "u-lou", "anon-lou", email, "+33611223344")
	user, anon := personSubjects(t, b)
	js := nc.jetStream(t)
	aboutPerson := func() int {
		st, err := js.Stream(t.Context(), streams.Events)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(t.Context(), seq)
			if err != nil {
				continue
			}
			ev := &vigiev1.Event{}
			if proto.Unmarshal(m.Data, ev) == nil && slices.ContainsFunc([]string{ev.GetSubject(), ev.GetUserId(), ev.GetAnonymousId()},
				func(x string) bool { return x == user || x == anon }) {
				n++
			}
		}
		return n
	}
	waitFor(t, "node 2's events of the person in VIGIE_EVENTS", 20*time.Second, func() bool { return aboutPerson() >= 5 })

	// The privacy stream's erasure events, as they are published.
	conn, err := nats.Connect(nc.urls())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	erasures := make(chan *vigiev1.PrivacyEvent, 16)
	sub, err := conn.Subscribe(streams.PrivacyPrefix+">", func(m *nats.Msg) {
		pe := &vigiev1.PrivacyEvent{}
		if proto.Unmarshal(m.Data, pe) == nil && pe.GetAction() == vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE {
			erasures <- pe
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}

	id := privacyRequest(t, a, `{"type":"erase","site":"demo","identifier":{"kind":"email","value":"`+email+`"}}`)
	v := waitRequest(t, a, id)
	if v.Status != "done" || stepStatus(v, "node:v2") != "done" || stepStatus(v, "publish") != "skipped" {
		t.Fatalf("erasure: %s %+v", v.Status, v.Steps)
	}
	// Done: the event had been published, acknowledged by every plugin, and
	// the stream cleaned.
	var named []string
	for len(erasures) > 0 {
		pe := <-erasures
		if strings.HasPrefix(pe.GetRequestId(), id) {
			named = append(named, pe.GetSubjects()...)
		}
	}
	if !slices.Contains(named, user) || !slices.Contains(named, anon) {
		t.Errorf("the erasure events of request %s name %v, want node 2's subjects %s and %s", id, named, user, anon)
	}
	for _, st := range v.Steps {
		if st.Name == "node:v2" && !strings.Contains(st.Detail, "plugin_acks 3") {
			t.Errorf("node 2's step does not count the 3 plugins' acknowledgements: %q", st.Detail)
		}
	}
	if n := aboutPerson(); n != 0 {
		t.Errorf("VIGIE_EVENTS still holds %d messages of the person once the erasure is done", n)
	}
	assertBucketHolds(t, nc, "KV_VIGIE_REQUESTS", email, false)
}
