package keyring

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

// TestCompareKeys: the relation of a keyring to a copy changed in each
// way; a rotated or retired copy is newer, a keyring made apart diverges.
func TestCompareKeys(t *testing.T) {
	mk := newMK(t)
	base, _ := open(t, filepath.Join(t.TempDir(), "a"), mk)
	apart, _ := open(t, filepath.Join(t.TempDir(), "b"), mk)
	rotated := base.Detached()
	if _, err := rotated.Rotate(); err != nil {
		t.Fatal(err)
	}
	retired := rotated.Detached()
	if err := retired.Retire("k1"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		kr, other *Keyring
		want      Relation
	}{
		{"same", base, base.Detached(), SameKeys},
		{"rotated since", base, rotated, OtherIsNewer},
		{"retired since", rotated, retired, OtherIsNewer},
		{"older", rotated, base, Diverged},
		{"made apart", base, apart, Diverged},
	} {
		if got := c.kr.CompareKeys(c.other); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// TestInstallAndAdopt: sealed bytes install only where no keyring is and
// only with their master key; AdoptKeys keeps the node's tokens.
func TestInstallAndAdopt(t *testing.T) {
	mk := newMK(t)
	src, _ := open(t, filepath.Join(t.TempDir(), "src"), mk)
	sealed, err := src.Sealed()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "dst")
	if err := Install(dir, sealed, newMK(t)); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("install under another master key: %v", err)
	}
	if err := Install(dir, sealed, mk); err != nil {
		t.Fatal(err)
	}
	if err := Install(dir, sealed, mk); !errors.Is(err, ErrKeyringExists) {
		t.Fatalf("second install: %v", err)
	}
	got, _ := open(t, dir, mk)
	if got.CompareKeys(src) != SameKeys {
		t.Fatal("installed keyring has other keys")
	}
	other, _ := open(t, filepath.Join(t.TempDir(), "other"), mk)
	tokens := other.Tokens
	if err := other.AdoptKeys(src); err != nil {
		t.Fatal(err)
	}
	reread, _ := open(t, filepath.Dir(other.Path()), mk)
	if reread.CompareKeys(src) != SameKeys || len(reread.Tokens) != len(tokens) || string(reread.Tokens[0].Hash) != string(tokens[0].Hash) {
		t.Fatal("AdoptKeys did not save the adopted keys with the node's own tokens")
	}
}

// TestAdoptTokens: AdoptTokens saves another keyring's token list in place
// of the node's, keys unchanged; SameTokens tells any difference.
func TestAdoptTokens(t *testing.T) {
	mk := newMK(t)
	node, _ := open(t, filepath.Join(t.TempDir(), "node"), mk)
	shared := node.Detached()
	tok, _, err := shared.CreateToken(RoleDPO, "dpo")
	if err != nil {
		t.Fatal(err)
	}
	if err := node.AdoptTokens(shared.Tokens); err != nil {
		t.Fatal(err)
	}
	reread, _ := open(t, filepath.Dir(node.Path()), mk)
	if _, ok := reread.CheckToken(tok); !ok || !SameTokens(reread.Tokens, shared.Tokens) || reread.CompareKeys(shared) != SameKeys {
		t.Fatal("AdoptTokens did not save the adopted tokens with the node's keys")
	}

	base := shared.Tokens
	change := func(f func(*Token)) []Token {
		c := slices.Clone(base)
		f(&c[len(c)-1])
		return c
	}
	for _, c := range []struct {
		name  string
		other []Token
		want  bool
	}{
		{"same", slices.Clone(base), true},
		{"one fewer", base[:1], false},
		{"other role", change(func(t *Token) { t.Role = RoleMarketer }), false},
		{"other name", change(func(t *Token) { t.Name = "x" }), false},
		{"other hash", change(func(t *Token) { t.Hash = hashToken("other") }), false},
		{"other id", change(func(t *Token) { t.ID = "t9" }), false},
	} {
		if got := SameTokens(base, c.other); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
