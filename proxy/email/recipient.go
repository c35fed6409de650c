package email

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"strings"
	"time"
)

// A recipient value is the per-recipient signed value an ESP stores as a
// contact attribute and substitutes into the r query parameter of a
// merge-tag campaign's URLs:
//
//	base64url(payload) "." keyID "." base64url(MAC[:16])
//	payload = 0x52 ('R') || uvarint(expires, unix seconds, 0 = never) || recipient pseudonym
//	MAC     = HMAC-SHA256(recipient key, uvarint(len(site)) || site || base64url(payload) "." keyID)
//
// The recipient key is derived from the keyring secret under its own label,
// so a campaign token never verifies as a recipient value nor the other way
// round. The site is signed but not carried (the campaign token names it),
// so a value made for one site verifies for no other. The value is bound to
// no campaign: one contact attribute serves every campaign of the site.
const (
	recipientVersion  = 'R'
	maxRecipientLen   = 128 // bytes of pseudonym; keeps a value under 255 characters
	maxRecipientValue = 255 // characters; Mailchimp's text merge fields hold 255 bytes
)

// b64strict decodes recipient values canonically: one value, one spelling.
var b64strict = b64.Strict()

// recipientLabel separates recipient-value keys from campaign-token keys
// and from every other use of the keyring secret.
const recipientLabel = "vigie/email-recipient/v1"

// SignRecipient returns the recipient value of the recipient pseudonym on
// site, signed with the active key; expires (zero = never) is when it stops
// identifying the recipient, at second precision. The value is URL-safe
// ([A-Za-z0-9_.-]) and at most 255 characters.
func (s *Signer) SignRecipient(site, recipient string, expires time.Time) (string, error) {
	if site == "" || len(site) > maxFieldLen {
		return "", fmt.Errorf("%w: recipient value needs a site of 1-%d bytes", ErrConfig, maxFieldLen)
	}
	if recipient == "" || len(recipient) > maxRecipientLen {
		return "", fmt.Errorf("%w: recipient pseudonym must be 1-%d bytes", ErrConfig, maxRecipientLen)
	}
	var buf [8 + binary.MaxVarintLen64 + maxRecipientLen]byte
	p := append(buf[:0], recipientVersion)
	p = binary.AppendUvarint(p, unixOrZero(expires))
	p = append(p, recipient...)
	out := make([]byte, 0, maxRecipientValue)
	out = b64.AppendEncode(out, p)
	out = append(out, '.')
	out = append(out, s.active...)
	var sum [sha256.Size]byte
	s.recipientMAC(s.active, site, string(out), sum[:0])
	out = append(out, '.')
	out = b64.AppendEncode(out, sum[:macLen])
	return string(out), nil
}

// VerifyRecipient checks the recipient value v for site and returns the
// recipient pseudonym it carries. A malformed value, one signed with an
// unknown (or retired) key, for another site, or whose signature does not
// match gives ErrBadToken; a valid value past its expiry gives ErrExpired
// (and no recipient: an expired value identifies nobody).
func (s *Signer) VerifyRecipient(site, v string, now time.Time) (string, error) {
	if len(v) > maxRecipientValue || len(v) < 5 {
		return "", ErrBadToken
	}
	d1 := strings.IndexByte(v, '.')
	if d1 <= 0 {
		return "", ErrBadToken
	}
	rest := v[d1+1:]
	d2 := strings.IndexByte(rest, '.')
	if d2 <= 0 {
		return "", ErrBadToken
	}
	keyID, sig := rest[:d2], rest[d2+1:]
	if _, ok := s.rmacs[keyID]; !ok || len(sig) != b64.EncodedLen(macLen) {
		return "", ErrBadToken
	}
	var got [macLen]byte
	if n, err := b64strict.Decode(got[:], []byte(sig)); err != nil || n != macLen {
		return "", ErrBadToken
	}
	var sum [sha256.Size]byte
	if !hmac.Equal(s.recipientMAC(keyID, site, v[:d1+1+d2], sum[:0])[:macLen], got[:]) {
		return "", ErrBadToken
	}
	var pbuf [maxRecipientValue]byte
	p, err := b64strict.AppendDecode(pbuf[:0], []byte(v[:d1]))
	if err != nil || len(p) < 2 || p[0] != recipientVersion {
		return "", ErrBadToken
	}
	exp, n := binary.Uvarint(p[1:])
	if n <= 0 || exp > maxUnix {
		return "", ErrBadToken
	}
	recipient := p[1+n:]
	if len(recipient) == 0 || len(recipient) > maxRecipientLen {
		return "", ErrBadToken
	}
	if t := timeOrZero(exp); !t.IsZero() && now.After(t) {
		return "", ErrExpired
	}
	return string(recipient), nil
}

// recipientMAC computes the recipient-value MAC of signed (payload "."
// keyID) for site with key id into dst.
func (s *Signer) recipientMAC(id, site, signed string, dst []byte) []byte {
	pool := s.rmacs[id]
	st := pool.Get().(*macState)
	b := binary.AppendUvarint(st.buf[:0], uint64(len(site)))
	b = append(b, site...)
	b = append(b, signed...)
	st.h.Reset()
	st.h.Write(b)
	dst = st.h.Sum(dst)
	st.buf = b[:0]
	pool.Put(st)
	return dst
}

// macState is a keyed HMAC and its input buffer, reused through a pool.
type macState struct {
	h   hash.Hash
	buf []byte
}

func newMACState(key []byte) *macState {
	return &macState{h: hmac.New(sha256.New, key), buf: make([]byte, 0, 64)}
}

// SignRecipients returns the recipient value of each user id on site, in
// order: the id is checked (UserIDProblem), turned into the recipient's
// pseudonym by pseudonym (the one identify's userId gets) and signed with
// SignRecipient. Neither the id nor anything derived from it but the
// pseudonym goes into the value. It backs `vigie email tokens` and
// POST /admin/v1/email/tokens.
func (s *Signer) SignRecipients(site string, userIDs []string, pseudonym func(userID string) string, expires time.Time) ([]string, error) {
	out := make([]string, len(userIDs))
	for i, id := range userIDs {
		if p := UserIDProblem(id); p != "" {
			return nil, fmt.Errorf("%w: user id %d: %s", ErrBadInput, i, p)
		}
		v, err := s.SignRecipient(site, pseudonym(id), expires)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
