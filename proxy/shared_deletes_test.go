package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// segmentChangesOf counts the published changes of segment "three" of
// subject, entries and exits.
func segmentChangesOf(t *testing.T, js jetstream.JetStream, subject string) (entered, exited int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streams.Segments)
	if err != nil {
		return 0, 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || !strings.Contains(m.Subject, ".three.") {
			continue
		}
		var c vigiev1.SegmentChange
		if proto.Unmarshal(m.Data, &c) != nil || c.GetSubject() != subject {
			continue
		}
		switch {
		case strings.HasSuffix(m.Subject, ".entered"):
			entered++
		case strings.HasSuffix(m.Subject, ".exited"):
			exited++
		}
	}
	return entered, exited
}

// enteredSubject posts ten events of one visitor (who then enters segment
// "three") and returns the subject once its entry is published and its
// profile is in KV, with the profile's KV key.
func enteredSubject(t *testing.T, js jetstream.JetStream, nodes []*proxytest.Instance) (subject, key string) {
	t.Helper()
	postProfiled(t, nodes, 0, 0, 1)
	waitUntil(t, "the visitor to enter segment three", 60*time.Second, func() bool {
		for s := range segmentEntries(t, js) {
			subject = s
		}
		return subject != ""
	})
	key = fmt.Sprintf("%d.demo.%s", streams.Partition("demo", subject, config.DefaultPartitions), streams.KeyToken(subject))
	waitUntil(t, "the profile in KV", 10*time.Second, func() bool { return sharedCopy(t, js, key) })
	return subject, key
}

// sharedCopy reports whether KV VIGIE_PROFILES holds key.
func sharedCopy(t *testing.T, js jetstream.JetStream, key string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, streams.BucketProfiles)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Get(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// leaseHolder returns the node holding partition n's lease ("" if none).
func leaseHolder(t *testing.T, js jetstream.JetStream, n int, nodes []string) string {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, streams.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, fmt.Sprintf("part.%d", n))
	if err != nil {
		return ""
	}
	for _, id := range nodes {
		if strings.Contains(string(e.Value()), `"`+id+`"`) {
			return id
		}
	}
	return ""
}

// TestClusterNonOwnerWithdrawalExitsSegments: a subject enters segment
// "three" on its partition's owner, which then stops; the partition's new
// owner has not read the profile (it reads on first use), so no node
// holds a copy. The subject withdraws consent on the other node: the exit
// is published once on VIGIE_SEGMENTS, the KV copy is gone, and neither
// comes back. Before, only a node holding a copy published exits: none.
func TestClusterNonOwnerWithdrawalExitsSegments(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3, withCountingSegment)
	js := nc.jetStream(t)
	ids := []string{"v1", "v2", "v3"}
	subject, key := enteredSubject(t, js, nodes)
	part := streams.Partition("demo", subject, config.DefaultPartitions)
	owner := leaseHolder(t, js, part, ids)
	if owner == "" {
		t.Fatal("no owner of the subject's partition")
	}
	oi := int(owner[1] - '1')
	nodes[oi].Stop()
	var next string
	waitUntil(t, "another node to take the partition", 60*time.Second, func() bool {
		next = leaseHolder(t, js, part, ids)
		return next != "" && next != owner
	})
	var x *proxytest.Instance
	for i, id := range ids {
		if id != owner && id != next {
			x = nodes[i]
		}
	}
	body := `{"type":"track","event":"Withdraw","anonymousId":"visitor-0","messageId":"withdraw-1","context":{"consent":{"analytics":false,"personalization":false,"marketing":false}}}`
	if code, resp := x.Post("/v1/track", "demo", body); code != 200 {
		t.Fatalf("withdrawal: %d %s", code, resp)
	}
	waitUntil(t, "the exit of the withdrawn subject", 30*time.Second, func() bool {
		_, exited := segmentChangesOf(t, js, subject)
		return exited > 0
	})
	// Every node that applied the withdrawal read the copy and committed
	// the same exit: the stream keeps one. Nothing comes back.
	for range 8 {
		time.Sleep(time.Second)
		entered, exited := segmentChangesOf(t, js, subject)
		if entered != 1 || exited != 1 {
			t.Fatalf("segment three of the subject: %d entries, %d exits; want 1 and 1", entered, exited)
		}
		if sharedCopy(t, js, key) {
			t.Fatal("the withdrawn subject's profile is in KV")
		}
		for _, in := range nodes {
			if in.Server == nil {
				continue
			}
			if _, err := in.Server.Store().Profile(context.Background(), "demo", subject); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("a node holds the withdrawn subject's profile: %v", err)
			}
		}
	}
}

// TestSharedProfileDeleteSurvivesNATSOutage: one node in cluster mode (a
// standalone nats-server) deletes a profile that is in segment "three"
// while NATS is down: the shared copy's delete and exit are kept and land
// once NATS is back; the exit once. Before, the delete failed after 2 s
// and the copy stayed in KV until the bucket's TTL.
func TestSharedProfileDeleteSurvivesNATSOutage(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	in := proxytest.Start(t, withCountingSegment, func(c *config.Config) {
		c.NATS.URL = ns.url()
		c.NATS.Replicas = 1
		c.Cluster.NodeID = "v1"
	})
	connect := func() jetstream.JetStream {
		c, err := nats.Connect(ns.url())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		js, err := jetstream.New(c)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	js := connect()
	subject, key := enteredSubject(t, js, []*proxytest.Instance{in})
	ns.kill()
	if _, err := in.Server.Store().DeleteProfile(context.Background(), "demo", subject, "consent-withdrawn"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	ns.start()
	js = connect()
	waitUntil(t, "the shared copy deleted after NATS came back", 60*time.Second, func() bool { return !sharedCopy(t, js, key) })
	waitUntil(t, "the exit of the deleted profile", 30*time.Second, func() bool {
		_, exited := segmentChangesOf(t, js, subject)
		return exited > 0
	})
	time.Sleep(3 * time.Second)
	if entered, exited := segmentChangesOf(t, js, subject); entered != 1 || exited != 1 {
		t.Fatalf("segment three of the subject: %d entries, %d exits; want 1 and 1", entered, exited)
	}
	if sharedCopy(t, js, key) {
		t.Fatal("the deleted profile came back to KV")
	}
}
