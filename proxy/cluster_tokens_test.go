package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// tokenSpread is how long a token change made on one node may take to
// apply on the others.
const tokenSpread = 5 * time.Second

// vigieCLI runs the vigie command bin with args on node in's data
// directory and configuration (as an operator on that node's host does),
// and returns its stdout; a failure is returned with its stderr.
func vigieCLI(t *testing.T, bin string, in *proxytest.Instance, args ...string) (string, error) {
	t.Helper()
	c := in.Config
	conf := filepath.Join(t.TempDir(), "vigie.yaml")
	yaml := fmt.Sprintf("listen: %q\ndata_dir: %q\nkeys:\n  secrets_dir: %q\nnats:\n  url: %q\ncluster:\n  node_id: %q\n",
		c.Listen, c.DataDir, c.Keys.SecretsDir, c.NATS.URL, c.Cluster.NodeID)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append(args, "--config", conf)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIGIE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, config.EnvMasterKey+"="+in.MasterKey())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("vigie %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// mustCLI is vigieCLI failing the test on an error.
func mustCLI(t *testing.T, bin string, in *proxytest.Instance, args ...string) string {
	t.Helper()
	out, err := vigieCLI(t, bin, in, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tokenStatus is the status node in answers GET path with bearer tok.
func tokenStatus(in *proxytest.Instance, path, tok string) int {
	code, _ := in.Do(http.MethodGet, path, nil, http.Header{"Authorization": {"Bearer " + tok}})
	return code
}

// waitTokenStatus waits until every node of nodes answers GET path with
// bearer tok by want, for at most tokenSpread; what names the token.
func waitTokenStatus(t *testing.T, nodes []*proxytest.Instance, path, tok string, want int, what string) {
	t.Helper()
	for _, in := range nodes {
		deadline := time.Now().Add(tokenSpread)
		for {
			code := tokenStatus(in, path, tok)
			if code == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s answers %d to %s after %s, want %d", in.Config.Cluster.NodeID, code, what, tokenSpread, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// sha256Sum is the SHA-256 of tok, as the keyring keeps a token.
func sha256Sum(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// tokenID is the id of the token named name in the output of `vigie
// tokens list`.
func tokenID(t *testing.T, list, name string) string {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Split(l, "\t")
		if len(f) == 4 && f[3] == name {
			return f[0]
		}
	}
	t.Fatalf("no token named %s in the list:\n%s", name, list)
	return ""
}

// TestClusterTokensSharedAcrossNodes: a token made with `vigie tokens
// create` on node 1's host opens the admin API of nodes 2 and 3 within
// seconds; one revoked on node 2's host is refused by nodes 1 and 3; an
// admin token reset on node 3's host replaces the admin token on every
// node. The NATS store files hold neither a token nor its hash in clear.
func TestClusterTokensSharedAcrossNodes(t *testing.T) {
	t.Parallel()
	built := buildVigie(t)
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	bin := built()
	const stats = "/admin/v1/stats"

	dpo := strings.TrimSpace(mustCLI(t, bin, nodes[0], "tokens", "create", "--role", "dpo", "--name", "dpo-alice", "--print"))
	waitTokenStatus(t, nodes, stats, dpo, http.StatusOK, "the DPO token created on node 1")

	id := tokenID(t, mustCLI(t, bin, nodes[1], "tokens", "list"), "dpo-alice")
	mustCLI(t, bin, nodes[1], "tokens", "revoke", id)
	waitTokenStatus(t, nodes, stats, dpo, http.StatusUnauthorized, "the DPO token revoked on node 2")

	oldAdmin := nodes[0].AdminToken()
	waitTokenStatus(t, nodes, "/admin/v1/sites", oldAdmin, http.StatusOK, "the first admin token")
	newAdmin := strings.TrimSpace(mustCLI(t, bin, nodes[2], "admin", "token", "reset", "--print"))
	waitTokenStatus(t, nodes, "/admin/v1/sites", newAdmin, http.StatusOK, "the admin token reset on node 3")
	waitTokenStatus(t, nodes, "/admin/v1/sites", oldAdmin, http.StatusUnauthorized, "the admin token replaced on node 3")

	// Neither a token nor its hash is in clear in the NATS store files.
	tokens := []string{dpo, oldAdmin, newAdmin}
	forms := map[string][]byte{}
	for i, tok := range tokens {
		h := sha256Sum(tok)
		forms[fmt.Sprintf("token %d", i)] = []byte(tok)
		forms[fmt.Sprintf("hash of token %d", i)] = h
		forms[fmt.Sprintf("base64 hash of token %d", i)] = []byte(base64.StdEncoding.EncodeToString(h))
		forms[fmt.Sprintf("hex hash of token %d", i)] = []byte(fmt.Sprintf("%x", h))
	}
	scanned := nc.eachStoreFile(t, func(path string, data []byte) {
		for what, b := range forms {
			if bytes.Contains(data, b) {
				t.Errorf("%s holds the %s in clear", path, what)
			}
		}
	})
	if scanned == 0 {
		t.Fatal("no NATS store file scanned")
	}
}

// TestClusterTokenRevokedWhileNodeDown: node 3 is stopped while a token is
// revoked on node 1, and another token is revoked with `vigie tokens
// revoke` on node 3's own (stopped) data directory; restarted, node 3
// refuses both at once, and nodes 1 and 2 refuse the second.
func TestClusterTokenRevokedWhileNodeDown(t *testing.T) {
	t.Parallel()
	built := buildVigie(t)
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 3)
	bin := built()
	const stats = "/admin/v1/stats"

	a := strings.TrimSpace(mustCLI(t, bin, nodes[0], "tokens", "create", "--role", "marketer", "--name", "a", "--print"))
	b := strings.TrimSpace(mustCLI(t, bin, nodes[0], "tokens", "create", "--role", "marketer", "--name", "b", "--print"))
	waitTokenStatus(t, nodes, stats, a, http.StatusOK, "token a")
	waitTokenStatus(t, nodes, stats, b, http.StatusOK, "token b")
	list := mustCLI(t, bin, nodes[0], "tokens", "list")
	idA, idB := tokenID(t, list, "a"), tokenID(t, list, "b")

	nodes[2].Stop()
	mustCLI(t, bin, nodes[0], "tokens", "revoke", idA)
	mustCLI(t, bin, nodes[2], "tokens", "revoke", idB) // node 3 stopped
	waitTokenStatus(t, nodes[:2], stats, a, http.StatusUnauthorized, "token a revoked on node 1")
	waitTokenStatus(t, nodes[:2], stats, b, http.StatusUnauthorized, "token b revoked on stopped node 3's host")

	nodes[2].Restart()
	for _, tok := range []struct{ name, tok string }{{"a", a}, {"b", b}} {
		if code := tokenStatus(nodes[2], stats, tok.tok); code != http.StatusUnauthorized {
			t.Fatalf("node 3, restarted, answers %d to token %s revoked while it was down, want 401", code, tok.name)
		}
	}
}

// TestClusterTokenRevocationWinsOverStaleCreate: a token created from a
// list read before another node revoked a token is not written over the
// revocation: the compare-and-set fails and the creation runs again on
// the new list, so both apply on every node.
func TestClusterTokenRevocationWinsOverStaleCreate(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	const stats = "/admin/v1/stats"

	var victim, victimID string
	if _, err := proxy.ChangeSharedTokens(ctx, nodes[0].Config, log, func(kr *keyring.Keyring) error {
		tok, tk, err := kr.CreateToken(keyring.RoleDPO, "victim")
		victim, victimID = tok, tk.ID
		return err
	}); err != nil {
		t.Fatal(err)
	}
	waitTokenStatus(t, nodes, stats, victim, http.StatusOK, "the token to revoke")

	attempts := 0
	var fresh string
	if _, err := proxy.ChangeSharedTokens(ctx, nodes[0].Config, log, func(kr *keyring.Keyring) error {
		attempts++
		if attempts == 1 { // node 2 revokes while node 1 holds the list it read
			if _, err := proxy.ChangeSharedTokens(ctx, nodes[1].Config, log, func(kr *keyring.Keyring) error {
				return kr.RevokeToken(victimID)
			}); err != nil {
				return err
			}
		}
		tok, _, err := kr.CreateToken(keyring.RoleMarketer, "fresh")
		fresh = tok
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if attempts != 2 {
		t.Fatalf("the creation ran %d times, want 2 (once on the stale list, once on the new one)", attempts)
	}
	waitTokenStatus(t, nodes, stats, fresh, http.StatusOK, "the token created after the revocation")
	waitTokenStatus(t, nodes, stats, victim, http.StatusUnauthorized, "the token revoked during a creation")
}

// TestClusterTokenChangeRefusedWithoutNATS: with the cluster's NATS
// unreachable a token change in cluster mode is refused with
// ErrSharedKeyringUnavailable, and the node's keyring is left as it was.
func TestClusterTokenChangeRefusedWithoutNATS(t *testing.T) {
	t.Parallel()
	mk, err := keyring.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Keys.SecretsDir = filepath.Join(t.TempDir(), "secrets")
	cfg.Keys.MasterKey = config.Secret(mk.Encode())
	cfg.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
	cfg.Cluster.NodeID = "v1"
	if _, _, err := keyring.Open(cfg.DataDir, mk, keyring.Options{AdminToken: "vigie_test_admin_token_0123"}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(cfg.DataDir, keyring.FileName))
	if err != nil {
		t.Fatal(err)
	}
	_, err = proxy.ChangeSharedTokens(context.Background(), cfg, slog.New(slog.DiscardHandler), func(kr *keyring.Keyring) error {
		_, _, err := kr.CreateToken(keyring.RoleAdmin, "")
		return err
	})
	if !errors.Is(err, proxy.ErrSharedKeyringUnavailable) {
		t.Fatalf("token created with NATS away: %v, want ErrSharedKeyringUnavailable", err)
	}
	after, err := os.ReadFile(filepath.Join(cfg.DataDir, keyring.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the node's keyring changed although the token change was refused")
	}
}

// TestClusterTokensUpgrade: a cluster made by an earlier version, whose
// shared keyring holds only the first node's tokens at its first start and
// whose nodes made tokens of their own since, gets on upgrade the tokens
// of the first node started; the next node adopts them.
func TestClusterTokensUpgrade(t *testing.T) {
	t.Parallel()
	nc := startNATSCluster(t)
	nodes := startVigieNodes(t, nc, 2)
	ctx := context.Background()
	for _, in := range nodes {
		in.Stop()
	}
	old := nodeKeyring(t, nodes[0])
	old.TokensShared = false // as an earlier version shared it
	sealed, err := old.Sealed()
	if err != nil {
		t.Fatal(err)
	}
	kv, err := nc.jetStream(t).KeyValue(ctx, streams.BucketKeyring)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "keyring", sealed); err != nil {
		t.Fatal(err)
	}
	own := make([]string, len(nodes)) // a token each node made alone
	for i, in := range nodes {
		mk, err := keyring.ParseMasterKey(in.MasterKey())
		if err != nil {
			t.Fatal(err)
		}
		kr, _, err := keyring.Open(in.Config.DataDir, mk, keyring.Options{MustExist: true})
		if err != nil {
			t.Fatal(err)
		}
		if own[i], _, err = kr.CreateToken(keyring.RoleDPO, fmt.Sprintf("own%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	nodes[0].Restart()
	nodes[1].Restart()
	const stats = "/admin/v1/stats"
	waitTokenStatus(t, nodes, stats, own[0], http.StatusOK, "the token of the first node started")
	waitTokenStatus(t, nodes, stats, own[1], http.StatusUnauthorized, "the token the second node made alone")
	waitTokenStatus(t, nodes, stats, nodes[0].AdminToken(), http.StatusOK, "the admin token")
}
