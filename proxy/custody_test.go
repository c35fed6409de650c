package proxy_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/preflight"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

// keyTrials is what an attacker holding a data dir can test a candidate
// key against.
type keyTrials struct {
	site, userID, pseudonym string // the stored pseudonym of a guessed userId
	vaultSubject            string
	wrappedDataKey          []byte // v/k/<subject>: AES-GCM(vault key, data key)
	secrets                 map[[32]byte]string
}

// pseudonymOf is the documented pseudonym (pseudonymize.Pseudonymizer.ID):
// base64url of the first 16 bytes of HMAC-SHA256(key, kind 0 site 0 value).
func pseudonymOf(key []byte, site, value string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte{byte(pseudonymize.UserID), 0})
	h.Write([]byte(site + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

func (k *keyTrials) opensVault(key []byte) bool {
	block, err := aes.NewCipher(key)
	if err != nil {
		return false
	}
	g, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return false
	}
	_, err = g.Open(nil, nil, k.wrappedDataKey, []byte(k.vaultSubject))
	return err == nil
}

// hits tries one 32-byte candidate; it returns what the candidate gives
// away.
func (k *keyTrials) hits(cand []byte) []string {
	var out []string
	if name, ok := k.secrets[[32]byte(cand)]; ok {
		out = append(out, "is the "+name)
	}
	if pseudonymOf(cand, k.site, k.userID) == k.pseudonym {
		out = append(out, "confirms the pseudonym of "+k.userID)
	}
	if k.opensVault(cand) {
		out = append(out, "opens the vault")
	}
	return out
}

var (
	base64Run = regexp.MustCompile(`[A-Za-z0-9+/_-]{43,}`)
	hexRun    = regexp.MustCompile(`[0-9a-fA-F]{64,}`)
)

// decodings are the byte strings a file could hold keys in: the raw bytes,
// and the decoding of every run of base64 (standard or URL alphabet, from
// each of the 4 alignments) or of hex digits (both alignments) long enough
// to hold 32 bytes.
func decodings(b []byte) [][]byte {
	out := [][]byte{b}
	for _, run := range base64Run.FindAll(b, -1) {
		for off := 0; off < 4; off++ {
			s := run[off:]
			if len(s)%4 == 1 {
				s = s[:len(s)-1]
			}
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				if d, err := enc.DecodeString(string(s)); err == nil && len(d) >= 32 {
					out = append(out, d)
				}
			}
		}
	}
	for _, run := range hexRun.FindAll(b, -1) {
		for off := 0; off < 2; off++ {
			s := run[off:]
			if d, err := hex.DecodeString(string(s[:len(s)/2*2])); err == nil {
				out = append(out, d)
			}
		}
	}
	return out
}

// scan tries every 32-byte window of every decoding of every file under
// dir, and returns what gave something away.
func (k *keyTrials) scan(t *testing.T, dir string) (found []string, windows int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, dec := range decodings(b) {
			for i := 0; i+32 <= len(dec); i++ {
				w := dec[i : i+32]
				if bytes.Count(w, w[:1]) == 32 { // zero-filled pages
					continue
				}
				windows++
				for _, h := range k.hits(w) {
					found = append(found, fmt.Sprintf("%s: bytes at %d %s", rel, i, h))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, windows
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// TestDataDirCopyAloneOpensNothing is the audit's claim turned into a
// test: a copy of the data dir alone (without the master key) can neither
// be opened by Vigie, nor decrypt the vault, nor confirm a guessed userId's
// pseudonym, and holds the admin token nowhere.
func TestDataDirCopyAloneOpensNothing(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) {
		c.Keys.AdminToken = "" // generated, as in production
		c.Plugins = []config.Plugin{}
	})
	adminToken := in.AdminToken()
	if !strings.HasPrefix(adminToken, "vigie_") {
		t.Fatalf("no generated admin token: %q", adminToken)
	}
	const user = "user-42"
	code, body := in.Post("/v1/identify", "demo", `{"userId":"`+user+`","traits":{"email":"ada@example.org","plan":"pro"},
		"context":{"consent":{"analytics":true,"personalization":true,"marketing":true}}}`)
	if code != 200 {
		t.Fatalf("identify: %d %s", code, body)
	}
	evs := adminEvents(t, in, "site=demo")
	if len(evs) != 1 {
		t.Fatalf("events: %v", evs)
	}
	// Others too, so that the data dir holds more than one of each thing.
	for i := range 30 {
		if code, body := in.Post("/v1/track", "demo", fmt.Sprintf(`{"event":"Viewed","userId":"other-%d","properties":{"n":%d},
			"context":{"consent":{"analytics":true,"marketing":true}}}`, i, i)); code != 200 {
			t.Fatalf("track: %d %s", code, body)
		}
	}
	waitOutboxEmpty(t, in)
	trials := &keyTrials{site: "demo", userID: user, pseudonym: evs[0]["user_id"].(string), secrets: map[[32]byte]string{}}
	err := in.Server.Store().ScanAllVersions(func(k, v []byte) error {
		if rest, ok := bytes.CutPrefix(k, []byte("v/k/")); ok {
			trials.vaultSubject, trials.wrappedDataKey = string(bytes.TrimSuffix(rest, []byte{0})), bytes.Clone(v)
		}
		return nil
	})
	if err != nil || trials.wrappedDataKey == nil {
		t.Fatalf("no vault data key stored: %v", err)
	}
	in.Stop()

	// The real secrets, opened with the master key the test holds.
	mk, err := keyring.ParseMasterKey(in.MasterKey())
	if err != nil {
		t.Fatal(err)
	}
	kr, _, err := keyring.Open(in.Config.DataDir, mk, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range kr.Keys {
		trials.secrets[[32]byte(k.Secret)] = fmt.Sprintf("pseudonym key %d", i)
	}
	trials.secrets[[32]byte(kr.VaultKey)] = "vault key"
	trials.secrets[[32]byte(kr.BlindIndexKey)] = "blind-index key"
	mkText := mk.Encode()[len(keyring.MasterKeyPrefix):]
	mkRaw, _ := base64.RawURLEncoding.DecodeString(mkText)
	trials.secrets[[32]byte(mkRaw)] = "master key"
	trials.secrets[[32]byte([]byte(mkText)[:32])] = "master key text"

	// The trials work: the real keys give everything away...
	if got := trials.hits(kr.Keys[0].Secret); len(got) != 2 {
		t.Fatalf("the pseudonym key gives away %v, want its identity and the pseudonym", got)
	}
	if got := trials.hits(kr.VaultKey); len(got) != 2 {
		t.Fatalf("the vault key gives away %v, want its identity and the vault", got)
	}
	// ...and the scan finds them in the plaintext keyring Vigie 0.1 wrote,
	// and in the other encodings, at any alignment.
	legacy := t.TempDir()
	old, _ := json.MarshalIndent(map[string]any{"keys": kr.Keys, "vault_key": kr.VaultKey, "admin_token": adminToken}, "", "  ")
	planted := append([]byte("x\x01"), kr.VaultKey...)
	planted = append(planted, " abc"+base64.RawURLEncoding.EncodeToString(kr.Keys[0].Secret)+"\n7"+hex.EncodeToString(kr.VaultKey)...)
	os.WriteFile(filepath.Join(legacy, "keyring.json"), old, 0o600)
	os.WriteFile(filepath.Join(legacy, "planted"), planted, 0o600)
	found, _ := trials.scan(t, legacy)
	for _, want := range []string{"keyring.json: bytes at 0 is the pseudonym key 0", "keyring.json: bytes at 0 confirms the pseudonym", "keyring.json: bytes at 0 opens the vault",
		"planted: bytes at 2 opens the vault", "planted: bytes at 0 confirms the pseudonym", "planted: bytes at 0 is the vault key"} {
		if !strings.Contains(strings.Join(found, "\n"), want) {
			t.Fatalf("the scan misses %q; found:\n%s", want, strings.Join(found, "\n"))
		}
	}

	// The copy, without the secrets.
	stolen := filepath.Join(t.TempDir(), "stolen")
	copyDir(t, in.Config.DataDir, stolen)
	keyringBefore, err := os.ReadFile(filepath.Join(stolen, keyring.FileName))
	if err != nil {
		t.Fatal(err)
	}

	// (a) Vigie refuses to start on it without the master key, and makes
	// no new keys beside the old data.
	emptySecrets := filepath.Join(t.TempDir(), "vigie-secrets")
	other, _ := keyring.NewMasterKey()
	for _, c := range []struct {
		name string
		set  func(*config.Config)
		want error
	}{
		{"no master key", func(c *config.Config) {}, keyring.ErrNoMasterKey},
		{"another master key", func(c *config.Config) { c.Keys.MasterKey = config.Secret(other.Encode()) }, keyring.ErrWrongMasterKey},
		{"no master key, production", func(c *config.Config) { c.Production = true }, preflight.ErrFailed},
	} {
		cfg := config.Default()
		cfg.Listen, cfg.DataDir, cfg.Plugins = "127.0.0.1:0", stolen, []config.Plugin{}
		cfg.Keys.SecretsDir = emptySecrets
		c.set(&cfg)
		srv, err := proxy.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = srv.Start(context.Background())
		if !errors.Is(err, c.want) {
			srv.Shutdown(context.Background())
			t.Fatalf("%s: Start = %v, want %v", c.name, err, c.want)
		}
		if c.want == keyring.ErrNoMasterKey && !strings.Contains(err.Error(), "never makes new keys") {
			t.Errorf("%s: unclear error: %v", c.name, err)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(stolen, keyring.FileName)); !bytes.Equal(after, keyringBefore) {
		t.Fatal("a refused start changed the keyring")
	}
	if _, err := os.Stat(emptySecrets); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused start made a trial key: %v", err)
	}
	// Nor on data whose keyring is gone, even with a master key at hand.
	noKeyring := filepath.Join(t.TempDir(), "no-keyring")
	copyDir(t, in.Config.DataDir, noKeyring)
	os.Remove(filepath.Join(noKeyring, keyring.FileName))
	cfg := config.Default()
	cfg.Listen, cfg.DataDir, cfg.Plugins, cfg.Keys.SecretsDir = "127.0.0.1:0", noKeyring, []config.Plugin{}, emptySecrets
	cfg.Keys.MasterKey = config.Secret(other.Encode())
	srv, _ := proxy.New(cfg, nil)
	if err := srv.Start(context.Background()); !errors.Is(err, keyring.ErrNoKeyring) {
		srv.Shutdown(context.Background())
		t.Fatalf("start on data without a keyring: %v", err)
	}
	if st, _ := keyring.Stat(noKeyring); st.Exists {
		t.Fatal("a keyring was made beside existing data")
	}
	if rep := proxy.Check(context.Background(), cfg); rep.Err() == nil || !strings.Contains(rep.Err().Error(), "keyring: ") {
		t.Fatalf("check on data without a keyring: %v", rep.Err())
	}

	// (b) No key material in any file of the copy, in any encoding.
	found, windows := trials.scan(t, stolen)
	if len(found) > 0 {
		t.Fatalf("the data dir alone gives away:\n%s", strings.Join(found, "\n"))
	}
	t.Logf("tried %d candidate keys from the data dir", windows)

	// (c) The admin token, in clear or encoded, is nowhere in the copy or
	// the logs.
	forms := []string{adminToken, base64.StdEncoding.EncodeToString([]byte(adminToken)), hex.EncodeToString([]byte(adminToken))}
	filepath.WalkDir(stolen, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, f := range forms {
			if bytes.Contains(b, []byte(f)) {
				t.Errorf("%s holds the admin token", p)
			}
		}
		return nil
	})
	if strings.Contains(in.Logs(), adminToken) {
		t.Error("the logs hold the admin token")
	}
}

// TestUpgradeSealsPlaintextKeyring: a data dir written by Vigie 0.1 (a
// plaintext keyring.json) keeps its pseudonyms and admin token, and the
// plaintext is gone from it.
func TestUpgradeSealsPlaintextKeyring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(dir, 0o700)
	secret := bytes.Repeat([]byte{0x42}, 32)
	old, _ := json.Marshal(map[string]any{
		"keys":      []map[string]any{{"id": "k1", "secret": secret, "created": "2025-01-01T00:00:00Z"}},
		"vault_key": bytes.Repeat([]byte{0x17}, 32), "admin_token": "vigie_old-token-from-0.1-abcdef",
	})
	os.WriteFile(filepath.Join(dir, keyring.FileName), old, 0o600)
	in := proxytest.Start(t, func(c *config.Config) {
		c.DataDir = dir
		c.Keys.AdminToken = "vigie_old-token-from-0.1-abcdef" // the operator's token keeps working
		c.Plugins = []config.Plugin{}
	})
	if code, body := in.Post("/v1/identify", "demo", `{"userId":"u1","context":{"consent":{"analytics":true}}}`); code != 200 {
		t.Fatalf("identify: %d %s", code, body)
	}
	evs := adminEvents(t, in, "site=demo")
	if len(evs) != 1 || evs[0]["user_id"] != pseudonymOf(secret, "demo", "u1") {
		t.Fatalf("pseudonym changed by the upgrade: %v", evs)
	}
	if !strings.Contains(in.Logs(), "sealed the plaintext keyring") {
		t.Fatalf("upgrade not logged:\n%s", in.Logs())
	}
	in.Stop()
	for name, b := range in.DataFiles() {
		if bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(secret))) || bytes.Contains(b, []byte("old-token-from")) {
			t.Fatalf("%s still holds the plaintext keyring", name)
		}
	}
	if st, err := keyring.Stat(dir); err != nil || !st.Sealed {
		t.Fatalf("keyring not sealed: %+v %v", st, err)
	}
}
