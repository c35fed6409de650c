package proxy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// startBareNodes starts n Vigie nodes in cluster mode on nc with the same
// master key and admin token but no keyring: each finds (or makes and
// shares) the cluster's keyring itself.
// With concurrent, they start at the same time (racing to share their
// keyring).
func startBareNodes(t *testing.T, nc *natsCluster, n int, concurrent bool, opts ...proxytest.Option) []*proxytest.Instance {
	t.Helper()
	mk, err := keyring.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*proxytest.Instance, n)
	var wg sync.WaitGroup
	for i := range n {
		start := func() {
			nodes[i] = proxytest.Start(t, append([]proxytest.Option{clusterNode(nc, fmt.Sprintf("v%d", i+1), mk)}, opts...)...)
		}
		if !concurrent {
			start()
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); start() }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return nodes
}

// clusterNode configures node id on nc with master key mk.
func clusterNode(nc *natsCluster, id string, mk keyring.MasterKey) proxytest.Option {
	return func(c *config.Config) {
		c.NATS.URL = nc.urls()
		c.Cluster.NodeID = id
		c.Keys.MasterKey = config.Secret(mk.Encode())
		c.Keys.AdminToken = "vigie_test_shared_admin_token"
	}
}

// nodeKeyring opens in's keyring file with its master key.
func nodeKeyring(t *testing.T, in *proxytest.Instance) *keyring.Keyring {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(in.Config.DataDir, keyring.FileName))
	if err != nil {
		t.Fatal(err)
	}
	mk, err := keyring.ParseMasterKey(in.MasterKey())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.OpenSealed(b, mk)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// TestClusterSharesKeyring: three nodes started with no keyring end up
// with the cluster's one keyring (KV VIGIE_KEYRING), so the same user id
// has the same pseudonym on every node and a withdrawal on one node is
// enforced on another; the JetStream store holds the keyring sealed only.
func TestClusterSharesKeyring(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startBareNodes(t, nc, 3, false)
	first := nodeKeyring(t, nodes[0])
	for i, in := range nodes[1:] {
		if rel := first.CompareKeys(nodeKeyring(t, in)); rel != keyring.SameKeys {
			t.Fatalf("node %d's keyring is not node 1's (relation %d)", i+2, rel)
		}
	}

	// The same user id, sent to each node with consent, has one pseudonym.
	pseudonyms := map[string]bool{}
	for i, in := range nodes {
		body := fmt.Sprintf(`{"event":"Seen%d","userId":"u5","context":{"consent":{"analytics":true,"personalization":true,"marketing":true}}}`, i)
		if code, resp := in.Post("/v1/track", "demo", body); code != 200 {
			t.Fatalf("node %d: %d %s", i+1, code, resp)
		}
		evs := adminEvents(t, in, "site=demo")
		if len(evs) != 1 {
			t.Fatalf("node %d holds %d events, want 1", i+1, len(evs))
		}
		subj, _ := evs[0]["user_id"].(string)
		if subj == "" {
			t.Fatalf("node %d: event without a pseudonymous user id: %v", i+1, evs[0])
		}
		pseudonyms[subj] = true
	}
	if len(pseudonyms) != 1 {
		t.Fatalf("user u5 has %d pseudonyms across 3 nodes, want 1: %v", len(pseudonyms), pseudonyms)
	}

	// A withdrawal on node 1 is enforced on node 2's next event.
	a, b := nodes[0], nodes[1]
	if code, resp := a.Post("/v1/track", "demo", `{"event":"Withdraw","userId":"u5","context":{"consent":{"analytics":false,"personalization":false,"marketing":false}}}`); code != 200 {
		t.Fatalf("withdraw: %d %s", code, resp)
	}
	withdrawn := time.Now()
	time.Sleep(time.Second)
	if code, resp := b.Post("/v1/track", "demo", `{"event":"After","userId":"u5"}`); code != 200 {
		t.Fatalf("after: %d %s", code, resp)
	}
	for _, e := range adminEvents(t, b, "site=demo") {
		if e["name"] == "After" && e["mode"] != "anonymous" {
			// Say which leg was late: node 1's outbox, or node 2's
			// watch of VIGIE_LEDGER.
			subj := ""
			for p := range pseudonyms {
				subj = p
			}
			eventually(10*time.Second, func() bool {
				c, err := b.Server.Store().Consent(context.Background(), "demo", subj)
				return err == nil && len(c.Granted) == 0
			})
			late := time.Now()
			t.Fatalf("node 2 stored an event (mode %v) of a subject who withdrew on node 1 a second earlier "+
				"(node 1's outbox now holds %d messages; node 2's ledger had the withdrawal %s after it was sent)",
				e["mode"], a.Server.Store().OutboxLen(), late.Sub(withdrawn).Round(time.Millisecond))
		}
	}

	// The JetStream store holds the sealed keyring, never a key in clear.
	var secrets [][]byte
	for _, k := range first.Keys {
		secrets = append(secrets, k.Secret)
	}
	secrets = append(secrets, first.VaultKey, first.BlindIndexKey)
	sealedSeen := false
	nc.eachStoreFile(t, func(path string, data []byte) {
		if bytes.Contains(data, []byte(`"vigie-keyring"`)) {
			sealedSeen = true
		}
		for _, sec := range secrets {
			for _, form := range [][]byte{sec, []byte(base64.StdEncoding.EncodeToString(sec)), []byte(base64.RawURLEncoding.EncodeToString(sec))} {
				if bytes.Contains(data, form) {
					t.Errorf("%s holds a key of the keyring in clear", path)
				}
			}
		}
	})
	if !sealedSeen {
		t.Fatal("no JetStream store file holds the sealed keyring: the scan looked in the wrong place")
	}
}

// TestClusterKeyringRotationAndDivergence: two nodes racing at their first
// start end up with one keyring; a rotation in cluster mode replaces the
// shared keyring and another node adopts it at its restart; a node whose
// own keyring holds other keys refuses to start.
func TestClusterKeyringRotationAndDivergence(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startBareNodes(t, nc, 2, true)
	if rel := nodeKeyring(t, nodes[0]).CompareKeys(nodeKeyring(t, nodes[1])); rel != keyring.SameKeys {
		t.Fatalf("two nodes started together have different keyrings (relation %d)", rel)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var made string
	if _, err := proxy.ChangeSharedKeys(context.Background(), nodes[0].Config, log, func(kr *keyring.Keyring) error {
		k, err := kr.Rotate()
		made = k.ID
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if act := nodeKeyring(t, nodes[0]).Active()[0].ID; act != made {
		t.Fatalf("node 1's active key is %s after the rotation, want %s", act, made)
	}
	if act := nodeKeyring(t, nodes[1]).Active()[0].ID; act == made {
		t.Fatal("node 2 had the rotated key before its restart: the test proves nothing")
	}
	nodes[1].Restart()
	if rel := nodeKeyring(t, nodes[0]).CompareKeys(nodeKeyring(t, nodes[1])); rel != keyring.SameKeys {
		t.Fatalf("after its restart node 2 did not adopt the rotated keyring (relation %d)", rel)
	}

	// A node with a keyring of its own (same master key) refuses.
	mk, err := keyring.ParseMasterKey(nodes[0].MasterKey())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	clusterNode(nc, "v3", mk)(&cfg)
	if _, _, err := keyring.Open(cfg.DataDir, mk, keyring.Options{AdminToken: cfg.Keys.AdminToken.Reveal()}); err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); !errors.Is(err, proxy.ErrKeyringDiverged) {
		if err == nil {
			_ = srv.Shutdown(context.Background())
		}
		t.Fatalf("a node with its own keyring started: %v, want ErrKeyringDiverged", err)
	}
}
