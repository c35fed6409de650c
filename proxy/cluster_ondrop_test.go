package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/storage"
)

// TestClusterWithdrawalDeletesProfileOnEveryNode: a subject with a profile
// on node 2 withdraws every profile purpose on node 1; node 2's watch
// applies the withdrawal and deletes the profile at once, as a withdrawal
// recorded on node 2 itself would, without waiting for its next event.
func TestClusterWithdrawalDeletesProfileOnEveryNode(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	track := func(in *proxytest.Instance, event, consentJSON string) {
		t.Helper()
		body := fmt.Sprintf(`{"event":%q,"userId":"u3"`, event)
		if consentJSON != "" {
			body += `,"context":{"consent":` + consentJSON + `}`
		}
		if code, resp := in.Post("/v1/track", "demo", body+"}"); code != 200 {
			t.Fatalf("%s: %d %s", event, code, resp)
		}
	}
	track(a, "Grant", `{"analytics":true,"personalization":true,"marketing":true}`)
	subject := ""
	i := 0
	waitUntil(t, "node 2 to apply the grant made on node 1", 10*time.Second, func() bool {
		i++
		track(b, fmt.Sprintf("Seen%d", i), "")
		for _, e := range adminEvents(t, b, "site=demo") {
			if e["name"] == fmt.Sprintf("Seen%d", i) && e["mode"] != "anonymous" {
				subject, _ = e["user_id"].(string)
			}
		}
		return subject != ""
	})
	// The subject's profile on node 2 (as its segment stage makes one).
	res, err := b.Server.Store().ApplySegments(ctx, []storage.SegmentOutcome{{Plugin: "test", Site: "demo", Subject: subject,
		EventID: "e1", Attributes: []byte(`{"plan":"pro"}`), CreatePurposes: []string{"personalization", "marketing"}}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("profile on node 2: %v %v", err, res)
	}
	if _, err := b.Server.Store().Profile(ctx, "demo", subject); err != nil {
		t.Fatalf("node 2 has no profile to delete: %v", err)
	}
	track(a, "Withdraw", `{"analytics":false,"personalization":false,"marketing":false}`)
	waitUntil(t, "node 2 to delete the profile of the subject who withdrew on node 1", 5*time.Second, func() bool {
		_, err := b.Server.Store().Profile(ctx, "demo", subject)
		return errors.Is(err, storage.ErrNotFound)
	})
}
