package email

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Key is one token-signing key, usually taken from the keyring. The secret
// is never used directly: NewSigner derives an e-mail-token key from it, so
// the same keyring secret can serve other purposes without cross-use.
type Key struct {
	// ID names the key inside tokens: 1 to 32 characters of [A-Za-z0-9_-].
	ID string
	// Secret is the key material, at least 16 bytes.
	Secret []byte
}

// Token is what an open-pixel or click URL carries, signed.
type Token struct {
	// Site is the site's id from the configuration.
	Site string
	// Campaign is the campaign id given when the e-mail was prepared.
	Campaign string
	// Recipient is the recipient's pseudonym, or empty in merge-tag mode
	// (the recipient then travels unsigned in the r query parameter).
	Recipient string
	// Link is the destination of a click token (absolute http or https);
	// empty for the open pixel and the honeypot link.
	Link string
	// Honeypot marks the hidden link that no human clicks.
	Honeypot bool
	// SentAt is when the e-mail was sent (zero = unknown); second precision.
	SentAt time.Time
	// Expires is when the token stops counting hits (zero = never); second
	// precision.
	Expires time.Time
}

// Signer signs and verifies tokens and recipient values. It is safe for
// concurrent use.
type Signer struct {
	active string
	keys   map[string][]byte
	macs   map[string]*sync.Pool // campaign tokens
	rmacs  map[string]*sync.Pool // recipient values (recipient.go)
	pkeys  map[string][]byte     // preference tokens (preference.go)
	form   []byte                // preference form nonces, active key only
}

const (
	tokenVersion = 1
	macLen       = 16 // bytes of HMAC-SHA256 kept: 128 bits
	maxTokenLen  = 8192
	maxLinkLen   = 4096
	maxFieldLen  = 1024

	flagHoneypot = 1 << 0
)

// derivationLabel separates e-mail token keys from any other use of the
// same keyring secret.
const derivationLabel = "vigie/email-token/v1"

var b64 = base64.RawURLEncoding

// NewSigner returns a Signer that signs with the key named active and
// verifies with any of keys (rotation: keep old keys until their e-mails no
// longer matter; a key left out — retired — verifies nothing, neither a
// campaign token nor a recipient value).
func NewSigner(keys []Key, active string) (*Signer, error) {
	s := &Signer{active: active, keys: make(map[string][]byte, len(keys)),
		macs: make(map[string]*sync.Pool, len(keys)), rmacs: make(map[string]*sync.Pool, len(keys)),
		pkeys: make(map[string][]byte, len(keys))}
	for _, k := range keys {
		if !validKeyID(k.ID) {
			return nil, fmt.Errorf("%w: key id %q must be 1-32 characters of [A-Za-z0-9_-]", ErrConfig, k.ID)
		}
		if len(k.Secret) < 16 {
			return nil, fmt.Errorf("%w: key %q: secret shorter than 16 bytes", ErrConfig, k.ID)
		}
		if _, dup := s.keys[k.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate key id %q", ErrConfig, k.ID)
		}
		derived, rderived := derive(k.Secret, derivationLabel), derive(k.Secret, recipientLabel)
		s.keys[k.ID] = derived
		s.macs[k.ID] = &sync.Pool{New: func() any { return hmac.New(sha256.New, derived) }}
		s.rmacs[k.ID] = &sync.Pool{New: func() any { return newMACState(rderived) }}
		s.pkeys[k.ID] = derive(k.Secret, preferenceLabel)
		if k.ID == active {
			s.form = derive(k.Secret, formLabel)
		}
	}
	if _, ok := s.keys[active]; !ok {
		return nil, fmt.Errorf("%w: active key %q not among the keys", ErrConfig, active)
	}
	return s, nil
}

// derive returns HMAC-SHA256(secret, label): one key per use of a secret.
func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Sign returns the compact, URL-safe form of t:
// base64url(payload) "." keyID "." base64url(HMAC-SHA256(payload "." keyID)[:16]).
// The payload is binary (version, flags, times, length-prefixed strings).
// A non-empty Link must be a safe absolute http(s) URL (ErrUnsafeLink).
func (s *Signer) Sign(t Token) (string, error) {
	if t.Link != "" && !SafeLink(t.Link) {
		return "", ErrUnsafeLink
	}
	if len(t.Site) > maxFieldLen || len(t.Campaign) > maxFieldLen || len(t.Recipient) > maxFieldLen {
		return "", fmt.Errorf("%w: token field longer than %d bytes", ErrConfig, maxFieldLen)
	}
	var buf [256]byte
	p := appendPayload(buf[:0], &t)
	n := b64.EncodedLen(len(p))
	out := make([]byte, 0, n+1+len(s.active)+1+b64.EncodedLen(macLen))
	out = b64.AppendEncode(out, p)
	out = append(out, '.')
	out = append(out, s.active...)
	var sum [sha256.Size]byte
	s.mac(s.active, out, sum[:0])
	out = append(out, '.')
	out = b64.AppendEncode(out, sum[:macLen])
	return string(out), nil
}

// mac computes HMAC over signed (payload "." keyID) with key id into dst.
func (s *Signer) mac(id string, signed []byte, dst []byte) []byte {
	pool := s.macs[id]
	m := pool.Get().(hash.Hash)
	m.Reset()
	m.Write(signed)
	dst = m.Sum(dst)
	pool.Put(m)
	return dst
}

// Verify checks s and returns its token. A malformed token, an unknown key
// or a wrong signature gives ErrBadToken. A valid token past its expiry is
// returned with ErrExpired.
func (s *Signer) Verify(tok string, now time.Time) (Token, error) {
	if len(tok) > maxTokenLen || len(tok) < 3 {
		return Token{}, ErrBadToken
	}
	d1 := strings.IndexByte(tok, '.')
	if d1 <= 0 {
		return Token{}, ErrBadToken
	}
	rest := tok[d1+1:]
	d2 := strings.IndexByte(rest, '.')
	if d2 <= 0 {
		return Token{}, ErrBadToken
	}
	keyID, sig := rest[:d2], rest[d2+1:]
	if _, ok := s.keys[keyID]; !ok || len(sig) != b64.EncodedLen(macLen) {
		return Token{}, ErrBadToken
	}
	var got [macLen]byte
	if n, err := b64.Decode(got[:], []byte(sig)); err != nil || n != macLen {
		return Token{}, ErrBadToken
	}
	var sum [sha256.Size]byte
	signed := tok[:d1+1+d2]
	if !hmac.Equal(s.macString(keyID, signed, sum[:0])[:macLen], got[:]) {
		return Token{}, ErrBadToken
	}
	var pbuf [512]byte
	p := pbuf[:0]
	p, err := b64.AppendDecode(p, []byte(tok[:d1]))
	if err != nil {
		return Token{}, ErrBadToken
	}
	t, ok := parsePayload(p)
	if !ok || (t.Link != "" && !SafeLink(t.Link)) {
		return Token{}, ErrBadToken
	}
	if !t.Expires.IsZero() && now.After(t.Expires) {
		return t, ErrExpired
	}
	return t, nil
}

func (s *Signer) macString(id, signed string, dst []byte) []byte {
	pool := s.macs[id]
	m := pool.Get().(hash.Hash)
	m.Reset()
	// io.WriteString would allocate through the interface; hash.Hash from
	// crypto/hmac does not implement io.StringWriter.
	var chunk [256]byte
	for len(signed) > 0 {
		n := copy(chunk[:], signed)
		m.Write(chunk[:n])
		signed = signed[n:]
	}
	dst = m.Sum(dst)
	pool.Put(m)
	return dst
}

func appendPayload(b []byte, t *Token) []byte {
	var flags byte
	if t.Honeypot {
		flags |= flagHoneypot
	}
	b = append(b, tokenVersion, flags)
	b = binary.AppendUvarint(b, unixOrZero(t.SentAt))
	b = binary.AppendUvarint(b, unixOrZero(t.Expires))
	for _, f := range [...]string{t.Site, t.Campaign, t.Recipient, t.Link} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func unixOrZero(t time.Time) uint64 {
	if t.IsZero() || t.Unix() <= 0 {
		return 0
	}
	return uint64(t.Unix())
}

func timeOrZero(u uint64) time.Time {
	if u == 0 {
		return time.Time{}
	}
	return time.Unix(int64(u), 0).UTC()
}

// maxUnix bounds decoded times (year 9999) so time arithmetic stays sane.
const maxUnix = 253402300799

func parsePayload(p []byte) (Token, bool) {
	var t Token
	if len(p) < 2 || p[0] != tokenVersion || p[1]&^flagHoneypot != 0 {
		return t, false
	}
	t.Honeypot = p[1]&flagHoneypot != 0
	p = p[2:]
	var times [2]uint64
	for i := range times {
		v, n := binary.Uvarint(p)
		if n <= 0 || v > maxUnix {
			return t, false
		}
		times[i] = v
		p = p[n:]
	}
	t.SentAt, t.Expires = timeOrZero(times[0]), timeOrZero(times[1])
	var fields [4]string
	for i := range fields {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return t, false
		}
		fields[i] = string(p[n : n+int(l)])
		p = p[n+int(l):]
	}
	if len(p) != 0 {
		return t, false
	}
	t.Site, t.Campaign, t.Recipient, t.Link = fields[0], fields[1], fields[2], fields[3]
	return t, true
}

// SafeLink reports whether link may be signed and redirected to: an
// absolute http or https URL with a host, no user info, and no whitespace,
// control characters, non-ASCII bytes or backslashes anywhere (the usual open-redirect and
// header-injection tricks all need one of those or another scheme).
func SafeLink(link string) bool {
	if link == "" || len(link) > maxLinkLen {
		return false
	}
	for i := 0; i < len(link); i++ {
		c := link[i]
		if c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(link)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	// The scheme must be written exactly "http://" or "https://" (lower
	// case) so what we check is what the browser follows.
	return strings.HasPrefix(link, "https://") || strings.HasPrefix(link, "http://")
}
