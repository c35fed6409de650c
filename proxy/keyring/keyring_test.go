package keyring

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newMK(t testing.TB) MasterKey {
	t.Helper()
	mk, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func open(t *testing.T, dir string, mk MasterKey) (*Keyring, Opened) {
	t.Helper()
	kr, op, err := Open(dir, mk, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return kr, op
}

// secrets are the keyring's secret values in the encodings a file could
// hold them in.
func secrets(kr *Keyring) [][]byte {
	var raw [][]byte
	for _, k := range kr.Keys {
		raw = append(raw, k.Secret)
	}
	raw = append(raw, kr.VaultKey, kr.BlindIndexKey)
	var out [][]byte
	for _, r := range raw {
		out = append(out, r, []byte(base64.StdEncoding.EncodeToString(r)), []byte(base64.RawURLEncoding.EncodeToString(r)))
	}
	return out
}

// assertNoSecretIn fails if any file of dir holds one of kr's secrets.
func assertNoSecretIn(t *testing.T, dir string, kr *Keyring) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets(kr) {
			if bytes.Contains(b, s) {
				t.Fatalf("%s holds a secret in clear", e.Name())
			}
		}
	}
}

func TestSealedRoundTripAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	mk := newMK(t)
	kr, op := open(t, dir, mk)
	if !op.Created || !strings.HasPrefix(op.AdminToken, "vigie_") || len(kr.BlindIndexKey) != 32 || len(kr.VaultKey) != 32 {
		t.Fatalf("created: %+v", op)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, FileName): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	assertNoSecretIn(t, dir, kr)
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if bytes.Contains(b, []byte(op.AdminToken)) {
		t.Fatal("admin token in clear in the keyring file")
	}
	if st, err := Stat(dir); err != nil || !st.Sealed || st.MasterKeyID != mk.ID() {
		t.Fatalf("Stat = %+v, %v", st, err)
	}

	again, op2 := open(t, dir, mk)
	if op2.Created || op2.AdminToken != "" || op2.BlindIndexAdded {
		t.Fatalf("reopen: %+v", op2)
	}
	if !bytes.Equal(again.Keys[0].Secret, kr.Keys[0].Secret) || !bytes.Equal(again.VaultKey, kr.VaultKey) || !bytes.Equal(again.BlindIndexKey, kr.BlindIndexKey) {
		t.Fatal("reopened keyring differs")
	}
	for tok, want := range map[string]bool{op.AdminToken: true, op.AdminToken + "x": false, "": false, op.AdminToken[:20]: false} {
		if got := again.CheckAdminToken(tok); got != want {
			t.Errorf("CheckAdminToken(%.8q…) = %v", tok, got)
		}
	}
}

// TestOpenNeverStartsOver: a keyring that does not open with the master
// key at hand is an error, and the file stays as it was.
func TestOpenNeverStartsOver(t *testing.T) {
	mk := newMK(t)
	edit := func(f func(e map[string]any)) func(b []byte) []byte {
		return func(b []byte) []byte {
			var e map[string]any
			if err := json.Unmarshal(b, &e); err != nil {
				panic(err)
			}
			f(e)
			out, _ := json.Marshal(e)
			return out
		}
	}
	flip := func(field string) func(e map[string]any) {
		return func(e map[string]any) {
			raw, _ := base64.StdEncoding.DecodeString(e[field].(string))
			raw[len(raw)/2] ^= 1
			e[field] = base64.StdEncoding.EncodeToString(raw)
		}
	}
	cases := []struct {
		name   string
		key    MasterKey
		change func([]byte) []byte
		want   error
	}{
		{"wrong master key", newMK(t), nil, ErrWrongMasterKey},
		{"no master key", MasterKey{}, nil, ErrNoMasterKey},
		{"ciphertext byte flipped", mk, edit(flip("ciphertext")), ErrTampered},
		{"nonce changed", mk, edit(flip("nonce")), ErrTampered},
		{"salt changed", mk, edit(flip("salt")), ErrTampered},
		{"master key id changed", mk, edit(func(e map[string]any) { e["master_key_id"] = "mk-000000000000" }), ErrWrongMasterKey},
		{"unknown version", mk, edit(func(e map[string]any) { e["version"] = 3 }), ErrFormat},
		{"cipher renamed", mk, edit(func(e map[string]any) { e["cipher"] = "none" }), ErrFormat},
		{"truncated", mk, func(b []byte) []byte { return b[:len(b)/2] }, ErrFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			open(t, dir, mk)
			path := filepath.Join(dir, FileName)
			b, _ := os.ReadFile(path)
			if c.change != nil {
				b = c.change(b)
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := Open(dir, c.key, Options{})
			if !errors.Is(err, c.want) {
				t.Fatalf("Open = %v, want %v", err, c.want)
			}
			if _, err := Verify(dir, c.key); !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
			after, _ := os.ReadFile(path)
			ents, _ := os.ReadDir(dir)
			if !bytes.Equal(after, b) || len(ents) != 1 {
				t.Fatalf("failed Open changed the data dir (%d entries)", len(ents))
			}
		})
	}
}

func TestWrongKeyErrorNamesBothKeys(t *testing.T) {
	dir, mk, other := t.TempDir(), newMK(t), newMK(t)
	open(t, dir, mk)
	_, _, err := Open(dir, other, Options{})
	if err == nil || !strings.Contains(err.Error(), mk.ID()) || !strings.Contains(err.Error(), other.ID()) {
		t.Fatalf("error %v should name %s and %s", err, mk.ID(), other.ID())
	}
}

func writeLegacy(t *testing.T, path string) legacyKeyring {
	t.Helper()
	old := legacyKeyring{
		Keys:       []Key{{ID: "k1", Secret: bytes.Repeat([]byte{7}, 32), Created: time.Now().UTC()}},
		VaultKey:   bytes.Repeat([]byte{9}, 32),
		AdminToken: "vigie_legacy-token-0123456789",
	}
	b, _ := json.MarshalIndent(old, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return old
}

func TestMigratePlaintextKeyring(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) legacyKeyring
	}{
		{"plaintext keyring", func(t *testing.T, dir string) legacyKeyring {
			return writeLegacy(t, filepath.Join(dir, FileName))
		}},
		{"crash after the second name was made", func(t *testing.T, dir string) legacyKeyring {
			old := writeLegacy(t, filepath.Join(dir, FileName))
			if err := os.Link(filepath.Join(dir, FileName), filepath.Join(dir, legacyName)); err != nil {
				t.Fatal(err)
			}
			return old
		}},
		{"crash with only the second name left", func(t *testing.T, dir string) legacyKeyring {
			return writeLegacy(t, filepath.Join(dir, legacyName))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, mk := t.TempDir(), newMK(t)
			old := c.setup(t, dir)
			if st, _ := Stat(dir); !st.Exists || st.Sealed {
				t.Fatalf("Stat before = %+v", st)
			}
			if _, err := Verify(dir, mk); err != nil {
				t.Fatalf("Verify plaintext: %v", err)
			}
			kr, op := open(t, dir, mk)
			if !op.Migrated || !op.Wiped || !op.BlindIndexAdded || op.Created || op.AdminToken != "" {
				t.Fatalf("opened %+v", op)
			}
			if !bytes.Equal(kr.Keys[0].Secret, old.Keys[0].Secret) || !bytes.Equal(kr.VaultKey, old.VaultKey) || len(kr.BlindIndexKey) != 32 {
				t.Fatal("migrated keys differ")
			}
			if !kr.CheckAdminToken(old.AdminToken) {
				t.Fatal("old admin token no longer works")
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 || ents[0].Name() != FileName {
				t.Fatalf("data dir after migration: %v", ents)
			}
			assertNoSecretIn(t, dir, kr)
			b, _ := os.ReadFile(filepath.Join(dir, FileName))
			if bytes.Contains(b, []byte(old.AdminToken)) {
				t.Fatal("admin token left in clear")
			}
			if _, err := Verify(dir, newMK(t)); !errors.Is(err, ErrWrongMasterKey) {
				t.Fatalf("another key opens the migrated keyring: %v", err)
			}
			re, op := open(t, dir, mk)
			if op.Migrated || !bytes.Equal(re.BlindIndexKey, kr.BlindIndexKey) {
				t.Fatalf("reopen after migration: %+v", op)
			}
		})
	}
}

func TestCrashBeforeWipeIsFinishedAtNextOpen(t *testing.T) {
	dir, mk := t.TempDir(), newMK(t)
	old := writeLegacy(t, filepath.Join(dir, legacyName))
	// The sealed file is in place, the plaintext second name not wiped yet.
	kr, err := decodeLegacy(mustRead(t, filepath.Join(dir, legacyName)))
	if err != nil {
		t.Fatal(err)
	}
	kr.path, kr.mk, kr.BlindIndexKey = filepath.Join(dir, FileName), mk, bytes.Repeat([]byte{1}, 32)
	if err := kr.Save(); err != nil {
		t.Fatal(err)
	}
	re, op := open(t, dir, mk)
	if !op.Wiped || !re.CheckAdminToken(old.AdminToken) {
		t.Fatalf("opened %+v", op)
	}
	if _, err := os.Stat(filepath.Join(dir, legacyName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("plaintext left: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRewrap(t *testing.T) {
	dir, mk, next := t.TempDir(), newMK(t), newMK(t)
	kr, _ := open(t, dir, mk)
	if err := kr.Rewrap(next); err != nil {
		t.Fatal(err)
	}
	if kr.MasterKeyID() != next.ID() {
		t.Fatal("MasterKeyID not updated")
	}
	if _, _, err := Open(dir, mk, Options{}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("old key after rewrap: %v", err)
	}
	re, _ := open(t, dir, next)
	if !bytes.Equal(re.Keys[0].Secret, kr.Keys[0].Secret) || !bytes.Equal(re.VaultKey, kr.VaultKey) || !bytes.Equal(re.BlindIndexKey, kr.BlindIndexKey) {
		t.Fatal("rewrap changed the keys")
	}
	if err := kr.Rewrap(MasterKey{}); !errors.Is(err, ErrNoMasterKey) {
		t.Fatalf("rewrap to no key: %v", err)
	}
}

func TestChosenAdminToken(t *testing.T) {
	mk := newMK(t)
	for _, bad := range []string{"short", "has a space in it!!", strings.Repeat("x", 257), "tab\tinside-0123456789"} {
		dir := t.TempDir()
		if _, _, err := Open(dir, mk, Options{AdminToken: bad}); !errors.Is(err, ErrWeakToken) {
			t.Errorf("token %q: %v", bad, err)
		}
		if st, _ := Stat(dir); st.Exists {
			t.Errorf("token %q: a keyring was made", bad)
		}
	}
	dir, tok := t.TempDir(), "chosen-token-0123456789"
	kr, op, err := Open(dir, mk, Options{AdminToken: tok})
	if err != nil || op.AdminToken != "" || !kr.CheckAdminToken(tok) {
		t.Fatalf("Open with chosen token: %v %+v", err, op)
	}
	// Ignored for an existing keyring.
	kr, _, err = Open(dir, mk, Options{AdminToken: "another-token-0123456789"})
	if err != nil || !kr.CheckAdminToken(tok) || kr.CheckAdminToken("another-token-0123456789") {
		t.Fatalf("reopen with another chosen token: %v", err)
	}
}

func TestResetAdminTokenKeepsOtherRoles(t *testing.T) {
	dir, mk := t.TempDir(), newMK(t)
	kr, op := open(t, dir, mk)
	kr.Tokens = append(kr.Tokens, Token{ID: "t2", Role: "dpo", Hash: hashToken("dpo-token-0123456789"), Created: time.Now()})
	tok, err := kr.ResetAdminToken()
	if err != nil {
		t.Fatal(err)
	}
	re, _ := open(t, dir, mk)
	if re.CheckAdminToken(op.AdminToken) || !re.CheckAdminToken(tok) {
		t.Fatal("reset: old token still works or new one does not")
	}
	if got, ok := re.CheckToken("dpo-token-0123456789"); !ok || got.Role != "dpo" || re.CheckAdminToken("dpo-token-0123456789") {
		t.Fatalf("dpo token: %+v %v", got, ok)
	}
	if len(re.Tokens) != 2 || re.Tokens[1].ID != "t3" {
		t.Fatalf("tokens after reset: %+v", re.Tokens)
	}
}

func TestRotateRetire(t *testing.T) {
	dir, mk := t.TempDir(), newMK(t)
	kr, _ := open(t, dir, mk)
	old := kr.Keys[0].ID
	k, err := kr.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if k.ID == old || kr.Active()[0].ID != k.ID || len(kr.Active()) != 2 {
		t.Fatalf("rotate: active %v", kr.Active())
	}
	if err := kr.Retire(k.ID); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("retiring active key: %v", err)
	}
	if err := kr.Retire("nope"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retire unknown: %v", err)
	}
	if err := kr.Retire(old); err != nil {
		t.Fatal(err)
	}
	re, _ := open(t, dir, mk)
	if act := re.Active(); len(act) != 1 || act[0].ID != k.ID {
		t.Fatalf("after reopen active = %v", act)
	}
}

func TestMustExist(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Open(dir, newMK(t), Options{MustExist: true}); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("Open MustExist on an empty dir: %v", err)
	}
	if st, _ := Stat(dir); st.Exists {
		t.Fatal("a keyring was made")
	}
}

func TestOpenRejectsIncompletePlaintext(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(dir, newMK(t), Options{}); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Open incomplete keyring: %v", err)
	}
}

// BenchmarkCheckToken measures CheckToken with the match first, last or
// absent among 8 tokens: every hash is compared, so the three should cost
// the same.
func BenchmarkCheckToken(b *testing.B) {
	kr := &Keyring{}
	for i := range 8 {
		kr.Tokens = append(kr.Tokens, Token{ID: "t", Role: RoleAdmin, Hash: hashToken(strings.Repeat(string(rune('a'+i)), 20))})
	}
	for name, tok := range map[string]string{"first": strings.Repeat("a", 20), "last": strings.Repeat("h", 20), "none": strings.Repeat("z", 20)} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				kr.CheckToken(tok)
			}
		})
	}
}

func TestCreateListRevokeTokens(t *testing.T) {
	dir, mk := t.TempDir(), newMK(t)
	kr, op := open(t, dir, mk)
	// A second handle, as a running server holds while a CLI changes the file.
	server, _ := open(t, dir, mk)

	mtok, mt, err := kr.CreateToken(RoleMarketer, "Marketing team")
	if err != nil {
		t.Fatal(err)
	}
	dtok, dt, err := kr.CreateToken(RoleDPO, "")
	if err != nil {
		t.Fatal(err)
	}
	if mt.ID != "t2" || dt.ID != "t3" || mt.Name != "Marketing team" || !strings.HasPrefix(mtok, "vigie_") || mtok == dtok {
		t.Fatalf("created %+v %+v", mt, dt)
	}
	tokens, err := server.ReadTokens()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := MatchToken(tokens, mtok); !ok || got.Role != RoleMarketer {
		t.Fatalf("the file does not hold the new token: %+v %v", got, ok)
	}
	if _, ok := server.CheckToken(mtok); ok {
		t.Fatal("ReadTokens changed the keyring it was called on")
	}
	if err := kr.RevokeToken(mt.ID); err != nil {
		t.Fatal(err)
	}
	tokens, _ = server.ReadTokens()
	if _, ok := MatchToken(tokens, mtok); ok {
		t.Fatal("revoked token still in the file")
	}
	if _, ok := MatchToken(tokens, dtok); !ok {
		t.Fatal("revoking one token removed another")
	}
	assertNoSecretIn(t, dir, kr)
	for _, tc := range []struct {
		name string
		err  error
		do   func() error
	}{
		{"unknown role", ErrUnknownRole, func() error { _, _, err := kr.CreateToken("root", ""); return err }},
		{"name with a newline", ErrBadTokenName, func() error { _, _, err := kr.CreateToken(RoleDPO, "a\nb"); return err }},
		{"name too long", ErrBadTokenName, func() error { _, _, err := kr.CreateToken(RoleDPO, strings.Repeat("x", 65)); return err }},
		{"unknown id", ErrUnknownToken, func() error { return kr.RevokeToken("t99") }},
		{"last admin", ErrLastAdmin, func() error { return kr.RevokeToken("t1") }},
	} {
		if err := tc.do(); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	if !kr.CheckAdminToken(op.AdminToken) {
		t.Fatal("the admin token stopped working")
	}
	// With a second admin token, the first can go.
	if _, _, err := kr.CreateToken(RoleAdmin, "ops"); err != nil {
		t.Fatal(err)
	}
	if err := kr.RevokeToken("t1"); err != nil {
		t.Fatal(err)
	}
	re, _ := open(t, dir, mk)
	if re.CheckAdminToken(op.AdminToken) || len(re.Tokens) != 2 {
		t.Fatalf("after revoking t1: %+v", re.Tokens)
	}
}
