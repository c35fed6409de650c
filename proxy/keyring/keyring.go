// Package keyring keeps Vigie's secrets in the data directory: the HMAC keys
// that make pseudonyms (with rotation), the key that wraps the identity
// vault's per-subject keys, and the admin API token.
//
// Everything lives in one JSON file, keyring.json, written with mode 0600 and
// replaced atomically. The file is created on first start. Rotation adds a new
// active pseudonym key; older keys stay for lookups until they are retired.
package keyring

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// FileName is the keyring's file name inside the data directory.
const FileName = "keyring.json"

// secretLen is the length of every generated secret, in bytes.
const secretLen = 32

// Key is one pseudonymization key.
type Key struct {
	// ID names the key; it is recorded in every event it pseudonymized.
	ID string `json:"id"`
	// Secret is the HMAC key.
	Secret []byte `json:"secret"`
	// Created is when the key was made.
	Created time.Time `json:"created"`
	// Retired is set when the key may no longer be used, even for lookups.
	Retired *time.Time `json:"retired,omitempty"`
}

// Keyring is the content of the keyring file.
type Keyring struct {
	// Keys are the pseudonymization keys, the active one first.
	Keys []Key `json:"keys"`
	// VaultKey wraps the identity vault's per-subject data keys.
	VaultKey []byte `json:"vault_key"`
	// AdminToken authorizes the admin API.
	AdminToken string `json:"admin_token"`

	path string
}

// ErrNoKeys is returned when a keyring has no usable pseudonymization key.
var ErrNoKeys = errors.New("keyring: no active key")

// ErrUnknownKey is returned by Retire for a key id the keyring lacks.
var ErrUnknownKey = errors.New("keyring: unknown key")

// Open reads the keyring in dir, creating it (and dir) on first use. created
// reports whether it was made now, so the caller can show the admin token
// once.
func Open(dir string) (kr *Keyring, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("keyring: create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		kr, err = generate()
		if err != nil {
			return nil, false, err
		}
		kr.path = path
		if err := kr.Save(); err != nil {
			return nil, false, err
		}
		return kr, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("keyring: read: %w", err)
	}
	kr = &Keyring{path: path}
	if err := json.Unmarshal(b, kr); err != nil {
		return nil, false, fmt.Errorf("keyring: %s is not valid: %w", path, err)
	}
	if len(kr.Active()) == 0 || len(kr.VaultKey) != secretLen || kr.AdminToken == "" {
		return nil, false, fmt.Errorf("keyring: %s is incomplete: %w", path, ErrNoKeys)
	}
	return kr, false, nil
}

func generate() (*Keyring, error) {
	k, err := newKey(1)
	if err != nil {
		return nil, err
	}
	vk, err := random(secretLen)
	if err != nil {
		return nil, err
	}
	tok, err := random(secretLen)
	if err != nil {
		return nil, err
	}
	return &Keyring{
		Keys:       []Key{k},
		VaultKey:   vk,
		AdminToken: "vigie_" + base64.RawURLEncoding.EncodeToString(tok),
	}, nil
}

func newKey(n int) (Key, error) {
	s, err := random(secretLen)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: fmt.Sprintf("k%d", n), Secret: s, Created: time.Now().UTC()}, nil
}

func random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("keyring: random: %w", err)
	}
	return b, nil
}

// Active returns the keys that may be used, the active key first.
func (kr *Keyring) Active() []Key {
	out := make([]Key, 0, len(kr.Keys))
	for _, k := range kr.Keys {
		if k.Retired == nil {
			out = append(out, k)
		}
	}
	return out
}

// Rotate makes a new active key; the previous keys stay for lookups.
func (kr *Keyring) Rotate() (Key, error) {
	k, err := newKey(len(kr.Keys) + 1)
	if err != nil {
		return Key{}, err
	}
	kr.Keys = append([]Key{k}, kr.Keys...)
	return k, kr.Save()
}

// Retire marks key id as retired. The active key cannot be retired: rotate
// first.
func (kr *Keyring) Retire(id string) error {
	for i := range kr.Keys {
		if kr.Keys[i].ID != id {
			continue
		}
		if act := kr.Active(); len(act) > 0 && act[0].ID == id {
			return fmt.Errorf("keyring: %s is the active key, rotate first: %w", id, ErrNoKeys)
		}
		now := time.Now().UTC()
		kr.Keys[i].Retired = &now
		return kr.Save()
	}
	return fmt.Errorf("keyring: %q: %w", id, ErrUnknownKey)
}

// CheckAdminToken reports, in constant time, whether tok is the admin token.
func (kr *Keyring) CheckAdminToken(tok string) bool {
	a := sha256.Sum256([]byte(tok))
	b := sha256.Sum256([]byte(kr.AdminToken))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Save writes the keyring atomically with mode 0600.
func (kr *Keyring) Save() error {
	b, err := json.MarshalIndent(kr, "", "  ")
	if err != nil {
		return fmt.Errorf("keyring: encode: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(kr.path), ".keyring-*")
	if err != nil {
		return fmt.Errorf("keyring: write: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("keyring: chmod: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("keyring: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keyring: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keyring: write: %w", err)
	}
	if err := os.Rename(tmp.Name(), kr.path); err != nil {
		return fmt.Errorf("keyring: replace: %w", err)
	}
	return nil
}
