package keyring

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Sealed returns the keyring sealed under its master key, a fresh envelope
// as keyring.json holds it: what cluster mode shares between nodes (KV
// VIGIE_KEYRING), ciphertext only.
func (kr *Keyring) Sealed() ([]byte, error) {
	plain, err := json.Marshal(kr)
	if err != nil {
		return nil, fmt.Errorf("keyring: encode: %w", err)
	}
	env, err := seal(plain, kr.mk)
	clear(plain)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keyring: encode: %w", err)
	}
	return b, nil
}

// OpenSealed opens sealed keyring bytes (Sealed's, or a keyring.json) with
// mk. The keyring is detached: it belongs to no file, and its Save, Rotate
// and Retire change it in memory only.
func OpenSealed(b []byte, mk MasterKey) (*Keyring, error) {
	if mk.IsZero() {
		return nil, ErrNoMasterKey
	}
	kr, sealed, err := decode(b, mk)
	if err != nil {
		return nil, err
	}
	if !sealed {
		return nil, fmt.Errorf("%w: the keyring is not sealed", ErrFormat)
	}
	kr.mk = mk
	return kr, nil
}

// OpenSealed opens sealed keyring bytes with kr's master key (the
// package function OpenSealed).
func (kr *Keyring) OpenSealed(b []byte) (*Keyring, error) { return OpenSealed(b, kr.mk) }

// Detached returns a copy of kr that belongs to no file: its Save, Rotate
// and Retire change the copy in memory only (to be published before it is
// adopted with AdoptKeys).
func (kr *Keyring) Detached() *Keyring {
	c := *kr
	c.Keys = slices.Clone(kr.Keys)
	c.Tokens = slices.Clone(kr.Tokens)
	c.path = ""
	return &c
}

// Install writes sealed, which must open with mk (OpenSealed), as the
// keyring of dir, which must have none (ErrKeyringExists).
func Install(dir string, sealed []byte, mk MasterKey) error {
	if _, err := OpenSealed(sealed, mk); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keyring: create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%w: %s", ErrKeyringExists, FileName)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keyring: read: %w", err)
	}
	return writeFile(path, sealed)
}

// Relation is how a keyring's keys compare with another's (CompareKeys).
type Relation int

const (
	// SameKeys: the same pseudonymization keys (ids, secrets, retirement),
	// vault key and blind-index key. Tokens are not compared.
	SameKeys Relation = iota
	// OtherIsNewer: the same vault and blind-index keys, and the other
	// keyring holds every key of this one (same secret, retired here only
	// if retired there) and more keys or more retirements: it was rotated
	// or retired since, and adopting it pseudonymizes as it does.
	OtherIsNewer
	// Diverged: anything else; the two pseudonymize differently.
	Diverged
)

// CompareKeys says how o's keys compare with kr's.
func (kr *Keyring) CompareKeys(o *Keyring) Relation {
	if !bytes.Equal(kr.VaultKey, o.VaultKey) || !bytes.Equal(kr.BlindIndexKey, o.BlindIndexKey) {
		return Diverged
	}
	theirs := make(map[string]Key, len(o.Keys))
	for _, k := range o.Keys {
		theirs[k.ID] = k
	}
	same := len(kr.Keys) == len(o.Keys)
	for _, k := range kr.Keys {
		t, ok := theirs[k.ID]
		if !ok || !bytes.Equal(k.Secret, t.Secret) || (k.Retired != nil && t.Retired == nil) {
			return Diverged
		}
		if (k.Retired == nil) != (t.Retired == nil) {
			same = false
		}
	}
	if act, oact := kr.Active(), o.Active(); same && len(act) > 0 && len(oact) > 0 && act[0].ID != oact[0].ID {
		return Diverged
	}
	if same {
		return SameKeys
	}
	return OtherIsNewer
}

// AdoptKeys replaces kr's pseudonymization, vault and blind-index keys with
// o's, keeps kr's tokens, and saves kr.
func (kr *Keyring) AdoptKeys(o *Keyring) error {
	prevKeys, prevVault, prevBlind := kr.Keys, kr.VaultKey, kr.BlindIndexKey
	kr.Keys, kr.VaultKey, kr.BlindIndexKey = slices.Clone(o.Keys), slices.Clone(o.VaultKey), slices.Clone(o.BlindIndexKey)
	if err := kr.Save(); err != nil {
		kr.Keys, kr.VaultKey, kr.BlindIndexKey = prevKeys, prevVault, prevBlind
		return err
	}
	return nil
}

// AdoptTokens replaces kr's API tokens with a copy of tokens (the
// cluster's, in cluster mode) and saves kr. It is the only change made to
// a running server's keyring, by one goroutine.
func (kr *Keyring) AdoptTokens(tokens []Token) error {
	prev := kr.Tokens
	kr.Tokens = slices.Clone(tokens)
	if err := kr.Save(); err != nil {
		kr.Tokens = prev
		return err
	}
	return nil
}

// SameTokens reports whether a and b list the same tokens (ids, roles,
// names, hashes, creation times) in the same order.
func SameTokens(a, b []Token) bool {
	return slices.EqualFunc(a, b, func(x, y Token) bool {
		return x.ID == y.ID && x.Role == y.Role && x.Name == y.Name && bytes.Equal(x.Hash, y.Hash) && x.Created.Equal(y.Created)
	})
}
