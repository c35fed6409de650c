// Package keyring keeps Vigie's secrets: the HMAC keys that make pseudonyms
// (with rotation), the key that wraps the identity vault's per-subject keys,
// the blind-index key, and the hashes of the API tokens.
//
// They live in keyring.json in the data directory, sealed under a master
// key that lives elsewhere (Source: VIGIE_MASTER_KEY, a file outside the
// data directory, or a command such as a KMS client): a copy of the data
// directory alone opens nothing. The file is an envelope, version 2:
//
//	{"format": "vigie-keyring", "version": 2, "master_key_id": "mk-…",
//	 "kdf": "hkdf-sha256", "salt": …, "cipher": "aes-256-gcm",
//	 "nonce": …, "ciphertext": …}
//
// The AES-256-GCM key is HKDF-SHA256(master key, salt, "vigie keyring v2"),
// with a fresh salt and nonce at every write; the additional data names the
// format, version, algorithms and master key id, so none of them can be
// changed unnoticed. The plaintext is the JSON of Keyring. API tokens are
// stored as SHA-256 hashes only, inside the envelope.
//
// A keyring that does not open with the master key at hand is an error,
// never a reason to make new keys. The plaintext keyring.json of earlier
// versions is sealed at the first Open with a master key, and the plaintext
// overwritten and removed. The file is written with mode 0600 and replaced
// atomically.
package keyring

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// FileName is the keyring's file name inside the data directory.
const FileName = "keyring.json"

// legacyName is a second name (hard link) of a plaintext keyring being
// migrated, kept until it is wiped.
const legacyName = ".keyring-plaintext.json"

// secretLen is the length of every generated secret, in bytes.
const secretLen = 32

// The roles of API tokens (see proxy/access for what each may do).
const (
	// RoleAdmin may do everything.
	RoleAdmin = "admin"
	// RoleMarketer sees aggregates, segments, campaigns and destinations,
	// never a person's data.
	RoleMarketer = "marketer"
	// RoleDPO handles privacy requests and sees the register, the audit
	// trail and the consent statistics.
	RoleDPO = "dpo"
)

// Roles lists every role, RoleAdmin first.
func Roles() []string { return []string{RoleAdmin, RoleMarketer, RoleDPO} }

// maxTokenName bounds a token's name.
const maxTokenName = 64

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

// Token is an API token, kept as a hash: the token itself is shown once,
// when it is made, and never stored.
type Token struct {
	// ID names the token (t1, t2…), e.g. to revoke it.
	ID string `json:"id"`
	// Role is what the token may do (RoleAdmin, RoleMarketer, RoleDPO).
	Role string `json:"role"`
	// Name says whose token it is (optional, at most 64 printable
	// characters); it is shown by `vigie tokens list` and the audit trail
	// never uses it.
	Name string `json:"name,omitempty"`
	// Hash is SHA-256 of the token. Generated tokens carry 256 random
	// bits, chosen ones at least 16 characters, and the hash sits inside
	// the sealed envelope: a slow hash would buy nothing.
	Hash []byte `json:"hash"`
	// Created is when the token was made.
	Created time.Time `json:"created"`
}

// Keyring is the sealed content of the keyring file.
type Keyring struct {
	// Keys are the pseudonymization keys, the active one first.
	Keys []Key `json:"keys"`
	// VaultKey wraps the identity vault's per-subject data keys.
	VaultKey []byte `json:"vault_key"`
	// BlindIndexKey keys the blind index of e-mails and user ids that lets
	// a privacy request find a person.
	BlindIndexKey []byte `json:"blind_index_key"`
	// Tokens are the API tokens' hashes.
	Tokens []Token `json:"tokens"`
	// TokensShared is set in the cluster's shared keyring (KV
	// VIGIE_KEYRING) once its Tokens are the cluster's API tokens, which
	// every node applies. A keyring shared by an earlier version lacks it:
	// its Tokens are then the first node's at its first start.
	TokensShared bool `json:"tokens_shared,omitempty"`

	path string
	mk   MasterKey
}

// Options tunes Open.
type Options struct {
	// AdminToken, when set, is the admin token of a keyring created now
	// (VIGIE_ADMIN_TOKEN, keys.admin_token_file): 16 to 256 visible ASCII
	// characters. Empty: a random token is made and returned once in
	// Opened.AdminToken. It is ignored for an existing keyring.
	AdminToken string
	// MustExist refuses to create a keyring (ErrNoKeyring): the caller
	// knows one existed (it vanished since) or that the data directory
	// holds data sealed under one.
	MustExist bool
}

// Opened tells what Open did.
type Opened struct {
	// Created: there was no keyring; it was made now.
	Created bool
	// AdminToken is the admin token generated now, to be shown once ("" if
	// none was generated).
	AdminToken string
	// Migrated: a plaintext keyring of an earlier version was sealed now.
	Migrated bool
	// Wiped: with Migrated, the plaintext was overwritten before it was
	// removed (false: it was only removed).
	Wiped bool
	// BlindIndexAdded: the keyring had no blind-index key; one was added.
	BlindIndexAdded bool
}

// State is what a data directory holds, read without any key.
type State struct {
	// Exists: there is a keyring.
	Exists bool
	// Sealed: it is sealed; MasterKeyID names the key it needs. An
	// existing keyring that is not sealed is the plaintext one of an
	// earlier version.
	Sealed bool
	// MasterKeyID is the id of the master key that sealed it.
	MasterKeyID string
}

// Stat says whether dir holds a keyring and which master key it needs.
func Stat(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, legacyName)); err == nil {
			return State{Exists: true}, nil
		}
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("keyring: read: %w", err)
	}
	var env envelope
	if json.Unmarshal(b, &env) == nil && env.Format == formatName {
		return State{Exists: true, Sealed: true, MasterKeyID: env.MasterKeyID}, nil
	}
	return State{Exists: true}, nil
}

// Open opens the keyring in dir with mk, creating it (and dir, 0700) on
// first use, sealing a plaintext keyring of an earlier version, and adding
// what an older keyring lacks (the blind-index key). A keyring sealed under
// another key is ErrWrongMasterKey, one that does not decrypt ErrTampered:
// nothing is ever created beside an existing keyring.
func Open(dir string, mk MasterKey, opt Options) (*Keyring, Opened, error) {
	if mk.IsZero() {
		return nil, Opened{}, ErrNoMasterKey
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, Opened{}, fmt.Errorf("keyring: create data dir: %w", err)
	}
	path, legacy := filepath.Join(dir, FileName), filepath.Join(dir, legacyName)
	// A migration interrupted before the sealed file replaced the
	// plaintext one left only the second name.
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(legacy, path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, Opened{}, fmt.Errorf("keyring: recover: %w", err)
		}
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && opt.MustExist:
		return nil, Opened{}, fmt.Errorf("%w: %s is missing", ErrNoKeyring, FileName)
	case errors.Is(err, fs.ErrNotExist):
		return create(path, mk, opt)
	case err != nil:
		return nil, Opened{}, fmt.Errorf("keyring: read: %w", err)
	}
	kr, sealed, err := decode(b, mk)
	if err != nil {
		return nil, Opened{}, err
	}
	kr.path, kr.mk = path, mk
	if !sealed {
		return kr.migrate(legacy)
	}
	var op Opened
	// A sealed file replaced the plaintext one; the second name was not
	// wiped yet.
	if st, err := os.Stat(legacy); err == nil {
		if cur, err := os.Stat(path); err == nil && !os.SameFile(st, cur) {
			op.Wiped = wipe(legacy) == nil
		}
	}
	if len(kr.BlindIndexKey) == 0 {
		if kr.BlindIndexKey, err = random(secretLen); err != nil {
			return nil, Opened{}, err
		}
		if err := kr.Save(); err != nil {
			return nil, Opened{}, err
		}
		op.BlindIndexAdded = true
	}
	return kr, op, nil
}

// Verify opens the keyring in dir with mk without writing anything (for
// `vigie check`). A missing keyring is State{} and no error.
func Verify(dir string, mk MasterKey) (State, error) {
	st, err := Stat(dir)
	if err != nil || !st.Exists {
		return st, err
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = os.ReadFile(filepath.Join(dir, legacyName))
	}
	if err != nil {
		return st, fmt.Errorf("keyring: read: %w", err)
	}
	_, _, err = decode(b, mk)
	return st, err
}

// decode reads keyring.json: a sealed envelope (opened with mk) or the
// plaintext keyring of an earlier version (sealed false).
func decode(b []byte, mk MasterKey) (kr *Keyring, sealed bool, err error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, false, fmt.Errorf("%w: %s is not JSON: %v", ErrFormat, FileName, err)
	}
	if env.Format != formatName {
		kr, err := decodeLegacy(b)
		return kr, false, err
	}
	plain, err := env.open(mk)
	if err != nil {
		return nil, true, err
	}
	defer clear(plain)
	kr = &Keyring{}
	if err := json.Unmarshal(plain, kr); err != nil {
		return nil, true, fmt.Errorf("%w: sealed content is not valid: %v", ErrTampered, err)
	}
	if len(kr.Active()) == 0 || len(kr.VaultKey) != secretLen {
		return nil, true, fmt.Errorf("keyring: %s is incomplete: %w", FileName, ErrNoKeys)
	}
	return kr, true, nil
}

// legacyKeyring is keyring.json before it was sealed (Vigie 0.1).
type legacyKeyring struct {
	Keys       []Key  `json:"keys"`
	VaultKey   []byte `json:"vault_key"`
	AdminToken string `json:"admin_token"`
}

func decodeLegacy(b []byte) (*Keyring, error) {
	var old legacyKeyring
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, FileName, err)
	}
	kr := &Keyring{Keys: old.Keys, VaultKey: old.VaultKey}
	if len(kr.Active()) == 0 || len(kr.VaultKey) != secretLen || old.AdminToken == "" {
		return nil, fmt.Errorf("keyring: %s is incomplete: %w", FileName, ErrNoKeys)
	}
	kr.Tokens = []Token{{ID: "t1", Role: RoleAdmin, Hash: hashToken(old.AdminToken), Created: time.Now().UTC()}}
	return kr, nil
}

// migrate seals a plaintext keyring in place: the plaintext file gets a
// second name, the sealed file atomically replaces the first, then the
// second is overwritten with random bytes, synced and removed. A crash at
// any point leaves a keyring that opens (plaintext or sealed) and the next
// Open finishes the job.
func (kr *Keyring) migrate(legacy string) (*Keyring, Opened, error) {
	var err error
	op := Opened{Migrated: true, BlindIndexAdded: len(kr.BlindIndexKey) == 0}
	if op.BlindIndexAdded {
		if kr.BlindIndexKey, err = random(secretLen); err != nil {
			return nil, Opened{}, err
		}
	}
	if err := os.Remove(legacy); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, Opened{}, fmt.Errorf("keyring: migrate: %w", err)
	}
	linked := os.Link(kr.path, legacy) == nil
	if err := kr.Save(); err != nil {
		if linked {
			os.Remove(legacy)
		}
		return nil, Opened{}, err
	}
	op.Wiped = linked && wipe(legacy) == nil
	return kr, op, nil
}

// wipe overwrites the file at path with random bytes, syncs it and removes
// it. (On copy-on-write file systems and SSDs the old blocks may survive:
// see README, "Key custody".)
func wipe(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil {
		junk := make([]byte, st.Size())
		_, _ = rand.Read(junk)
		_, err = f.WriteAt(junk, 0)
	}
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if rmErr := os.Remove(path); err == nil {
		err = rmErr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	return err
}

func create(path string, mk MasterKey, opt Options) (*Keyring, Opened, error) {
	op := Opened{Created: true}
	tok := opt.AdminToken
	if tok != "" {
		if err := checkChosenToken(tok); err != nil {
			return nil, Opened{}, err
		}
	} else {
		var err error
		if tok, err = newToken(); err != nil {
			return nil, Opened{}, err
		}
		op.AdminToken = tok
	}
	k, err := newKey(1)
	if err != nil {
		return nil, Opened{}, err
	}
	vk, err := random(secretLen)
	if err != nil {
		return nil, Opened{}, err
	}
	bk, err := random(secretLen)
	if err != nil {
		return nil, Opened{}, err
	}
	kr := &Keyring{
		Keys: []Key{k}, VaultKey: vk, BlindIndexKey: bk,
		Tokens: []Token{{ID: "t1", Role: RoleAdmin, Hash: hashToken(tok), Created: time.Now().UTC()}},
		path:   path, mk: mk,
	}
	if err := kr.Save(); err != nil {
		return nil, Opened{}, err
	}
	return kr, op, nil
}

func checkChosenToken(tok string) error {
	if len(tok) < 16 || len(tok) > 256 {
		return ErrWeakToken
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < 0x21 || tok[i] > 0x7e {
			return ErrWeakToken
		}
	}
	return nil
}

func newToken() (string, error) {
	b, err := random(secretLen)
	if err != nil {
		return "", err
	}
	return "vigie_" + base64.RawURLEncoding.EncodeToString(b), nil
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
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

// MasterKeyID is the id of the master key the keyring is sealed under.
func (kr *Keyring) MasterKeyID() string { return kr.mk.ID() }

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

// CheckToken returns the token whose hash matches tok (MatchToken over
// kr.Tokens).
func (kr *Keyring) CheckToken(tok string) (Token, bool) { return MatchToken(kr.Tokens, tok) }

// MatchToken returns the token of tokens whose hash matches tok. Every hash
// is compared, in constant time, whatever matches.
func MatchToken(tokens []Token, tok string) (Token, bool) {
	if tok == "" {
		return Token{}, false
	}
	h := hashToken(tok)
	found := -1
	for i := range tokens {
		if subtle.ConstantTimeCompare(h, tokens[i].Hash) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Token{}, false
	}
	return tokens[found], true
}

// ValidRole reports whether role is one of Roles.
func ValidRole(role string) bool { return slices.Contains(Roles(), role) }

// nextTokenID is the id after the highest tN of kr.Tokens.
func (kr *Keyring) nextTokenID() string {
	next := 0
	for _, t := range kr.Tokens {
		if n, err := strconv.Atoi(strings.TrimPrefix(t.ID, "t")); err == nil && n > next {
			next = n
		}
	}
	return "t" + strconv.Itoa(next+1)
}

// CreateToken makes a new random token with role and an optional name,
// saves the keyring and returns the token (to be shown once) and its entry.
// A running server picks it up within seconds (it watches the file).
func (kr *Keyring) CreateToken(role, name string) (string, Token, error) {
	if !ValidRole(role) {
		return "", Token{}, fmt.Errorf("%w: %q (roles: %s)", ErrUnknownRole, role, strings.Join(Roles(), ", "))
	}
	if len(name) > maxTokenName || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return "", Token{}, fmt.Errorf("%w: at most %d printable characters", ErrBadTokenName, maxTokenName)
	}
	tok, err := newToken()
	if err != nil {
		return "", Token{}, err
	}
	t := Token{ID: kr.nextTokenID(), Role: role, Name: name, Hash: hashToken(tok), Created: time.Now().UTC()}
	old := kr.Tokens
	kr.Tokens = append(slices.Clip(kr.Tokens), t)
	if err := kr.Save(); err != nil {
		kr.Tokens = old
		return "", Token{}, err
	}
	return tok, t, nil
}

// RevokeToken removes token id and saves the keyring; a running server
// stops accepting it (and ends its console sessions) within seconds. The
// last admin token cannot be revoked (ErrLastAdmin): `vigie admin token
// reset` replaces it.
func (kr *Keyring) RevokeToken(id string) error {
	i := slices.IndexFunc(kr.Tokens, func(t Token) bool { return t.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrUnknownToken, id)
	}
	if kr.Tokens[i].Role == RoleAdmin {
		admins := 0
		for _, t := range kr.Tokens {
			if t.Role == RoleAdmin {
				admins++
			}
		}
		if admins == 1 {
			return fmt.Errorf("%w: %s", ErrLastAdmin, id)
		}
	}
	old := kr.Tokens
	kr.Tokens = slices.Delete(slices.Clone(kr.Tokens), i, i+1)
	if err := kr.Save(); err != nil {
		kr.Tokens = old
		return err
	}
	return nil
}

// ReadTokens reads the token list of the keyring file as it is now on disk
// (a CLI may have changed it since Open), with the master key kr was
// opened with. kr itself is not changed, so it is safe to call while other
// goroutines use kr.
func (kr *Keyring) ReadTokens() ([]Token, error) {
	b, err := os.ReadFile(kr.path)
	if err != nil {
		return nil, fmt.Errorf("keyring: read: %w", err)
	}
	cur, sealed, err := decode(b, kr.mk)
	if err != nil {
		return nil, err
	}
	if !sealed {
		return nil, fmt.Errorf("%w: %s is not sealed", ErrFormat, FileName)
	}
	return cur.Tokens, nil
}

// Path is the keyring file's path.
func (kr *Keyring) Path() string { return kr.path }

// CheckAdminToken reports, in constant time, whether tok is an admin token.
func (kr *Keyring) CheckAdminToken(tok string) bool {
	t, ok := kr.CheckToken(tok)
	return ok && t.Role == RoleAdmin
}

// ResetAdminToken replaces every admin token with a new random one, saves
// the keyring and returns the new token (to be shown once).
func (kr *Keyring) ResetAdminToken() (string, error) {
	tok, err := newToken()
	if err != nil {
		return "", err
	}
	id := kr.nextTokenID()
	kept := kr.Tokens[:0:0]
	for _, t := range kr.Tokens {
		if t.Role != RoleAdmin {
			kept = append(kept, t)
		}
	}
	old := kr.Tokens
	kr.Tokens = append(kept, Token{ID: id, Role: RoleAdmin, Hash: hashToken(tok), Created: time.Now().UTC()})
	if err := kr.Save(); err != nil {
		kr.Tokens = old
		return "", err
	}
	return tok, nil
}

// Rewrap seals the keyring under a new master key and saves it. Nothing
// else changes: the pseudonymization, vault and blind-index keys are the
// same, so no data is re-encrypted. The old master key no longer opens the
// file.
func (kr *Keyring) Rewrap(next MasterKey) error {
	if next.IsZero() {
		return ErrNoMasterKey
	}
	prev := kr.mk
	kr.mk = next
	if err := kr.Save(); err != nil {
		kr.mk = prev
		return err
	}
	return nil
}

// Save seals the keyring and writes it atomically with mode 0600; a
// detached keyring (Detached, OpenSealed) is not written.
func (kr *Keyring) Save() error {
	b, err := kr.Sealed()
	if err != nil || kr.path == "" {
		return err
	}
	return writeFile(kr.path, b)
}

func writeFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keyring-*")
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
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("keyring: replace: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename or a new file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keyring: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keyring: sync dir: %w", err)
	}
	return nil
}
