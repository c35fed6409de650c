package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strconv"
)

// Envelope format, version and algorithms (see the package doc).
const (
	formatName    = "vigie-keyring"
	formatVersion = 2
	kdfName       = "hkdf-sha256"
	cipherName    = "aes-256-gcm"
	kdfInfo       = "vigie keyring v2"
	saltLen       = 32
)

// envelope is keyring.json: the sealed keyring and what is needed to open
// it, given the master key.
type envelope struct {
	Format      string `json:"format"`
	Version     int    `json:"version"`
	MasterKeyID string `json:"master_key_id"`
	KDF         string `json:"kdf"`
	Salt        []byte `json:"salt"`
	Cipher      string `json:"cipher"`
	Nonce       []byte `json:"nonce"`
	Ciphertext  []byte `json:"ciphertext"`
}

// aad binds the header to the ciphertext.
func (e *envelope) aad() []byte {
	return []byte(e.Format + "|" + strconv.Itoa(e.Version) + "|" + e.KDF + "|" + e.Cipher + "|" + e.MasterKeyID)
}

func aead(mk MasterKey, salt []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, mk.k[:], salt, kdfInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("keyring: derive: %w", err)
	}
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("keyring: cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

func seal(plain []byte, mk MasterKey) (*envelope, error) {
	if mk.IsZero() {
		return nil, ErrNoMasterKey
	}
	e := &envelope{
		Format: formatName, Version: formatVersion, MasterKeyID: mk.ID(),
		KDF: kdfName, Cipher: cipherName,
		Salt: make([]byte, saltLen), Nonce: make([]byte, 12),
	}
	if _, err := rand.Read(e.Salt); err != nil {
		return nil, fmt.Errorf("keyring: random: %w", err)
	}
	if _, err := rand.Read(e.Nonce); err != nil {
		return nil, fmt.Errorf("keyring: random: %w", err)
	}
	g, err := aead(mk, e.Salt)
	if err != nil {
		return nil, err
	}
	e.Ciphertext = g.Seal(nil, e.Nonce, plain, e.aad())
	return e, nil
}

func (e *envelope) open(mk MasterKey) ([]byte, error) {
	if e.Version != formatVersion || e.KDF != kdfName || e.Cipher != cipherName {
		return nil, fmt.Errorf("%w: %s version %d (%s, %s); this Vigie reads version %d", ErrFormat, FileName, e.Version, e.KDF, e.Cipher, formatVersion)
	}
	if mk.IsZero() {
		return nil, fmt.Errorf("%w: the keyring is sealed under %s", ErrNoMasterKey, e.MasterKeyID)
	}
	if e.MasterKeyID != mk.ID() {
		return nil, fmt.Errorf("%w: the keyring is sealed under %s, the master key at hand is %s", ErrWrongMasterKey, e.MasterKeyID, mk.ID())
	}
	if len(e.Salt) != saltLen || len(e.Nonce) != 12 {
		return nil, fmt.Errorf("%w: bad salt or nonce", ErrTampered)
	}
	g, err := aead(mk, e.Salt)
	if err != nil {
		return nil, err
	}
	plain, err := g.Open(nil, e.Nonce, e.Ciphertext, e.aad())
	if err != nil {
		return nil, fmt.Errorf("%w: %s names %s, the key at hand, but its authentication fails", ErrTampered, FileName, e.MasterKeyID)
	}
	return plain, nil
}
