package email

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A preference token is the credential of a recipient's preference page
// (GET and POST /p/<token>), carried by the List-Unsubscribe link of every
// rewritten e-mail:
//
//	base64url(payload) "." keyID "." base64url(MAC[:16])
//	payload = 0x50 ('P') || uvarint(expires, unix seconds, 0 = never)
//	          || uvarint(len(site)) || site || recipient pseudonym
//	MAC     = HMAC-SHA256(preference key, base64url(payload) "." keyID)
//
// The preference key is derived from the keyring secret under its own
// label, so neither a campaign token nor a recipient value opens a
// preference page, and a preference token counts no hit. Unlike a
// recipient value it carries its site: the page's URL names nothing else.
const (
	preferenceVersion = 'P'
	maxPreferenceLen  = 512
	// preferenceLabel separates preference-token keys from every other use
	// of the keyring secret.
	preferenceLabel = "vigie/email-preference/v1"
	// formLabel derives the key of the preference page's form nonces.
	formLabel = "vigie/preference-form/v1"
)

// PreferencePath is the path of the preference page under Vigie's public
// URL: BASE + PreferencePath + token.
const PreferencePath = "p/"

// PreferenceNonceTTL is how long a preference page's form stays valid.
const PreferenceNonceTTL = time.Hour

// SignPreference returns the preference token of the recipient pseudonym
// on site, signed with the active key; expires (zero = never) is when it
// stops opening the page. The token is URL-safe ([A-Za-z0-9_.-]).
func (s *Signer) SignPreference(site, recipient string, expires time.Time) (string, error) {
	if site == "" || len(site) > maxFieldLen {
		return "", fmt.Errorf("%w: preference token needs a site of 1-%d bytes", ErrConfig, maxFieldLen)
	}
	if recipient == "" || len(recipient) > maxRecipientLen {
		return "", fmt.Errorf("%w: recipient pseudonym must be 1-%d bytes", ErrConfig, maxRecipientLen)
	}
	p := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(site)+len(recipient))
	p = append(p, preferenceVersion)
	p = binary.AppendUvarint(p, unixOrZero(expires))
	p = binary.AppendUvarint(p, uint64(len(site)))
	p = append(p, site...)
	p = append(p, recipient...)
	out := b64.AppendEncode(nil, p)
	out = append(out, '.')
	out = append(out, s.active...)
	mac := hmac.New(sha256.New, s.pkeys[s.active])
	mac.Write(out)
	out = append(out, '.')
	out = b64.AppendEncode(out, mac.Sum(nil)[:macLen])
	if len(out) > maxPreferenceLen {
		return "", fmt.Errorf("%w: preference token longer than %d characters", ErrConfig, maxPreferenceLen)
	}
	return string(out), nil
}

// VerifyPreference checks a preference token and returns its site and
// recipient pseudonym. A malformed token, one signed with an unknown (or
// retired) key, or whose signature does not match gives ErrBadToken; a
// valid token past its expiry gives ErrExpired (and nothing else).
func (s *Signer) VerifyPreference(tok string, now time.Time) (site, recipient string, err error) {
	if len(tok) > maxPreferenceLen || len(tok) < 5 {
		return "", "", ErrBadToken
	}
	d1 := strings.IndexByte(tok, '.')
	if d1 <= 0 {
		return "", "", ErrBadToken
	}
	rest := tok[d1+1:]
	d2 := strings.IndexByte(rest, '.')
	if d2 <= 0 {
		return "", "", ErrBadToken
	}
	keyID, sig := rest[:d2], rest[d2+1:]
	key, ok := s.pkeys[keyID]
	if !ok || len(sig) != b64.EncodedLen(macLen) {
		return "", "", ErrBadToken
	}
	got, err := b64strict.DecodeString(sig)
	if err != nil || len(got) != macLen {
		return "", "", ErrBadToken
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(tok[:d1+1+d2]))
	if !hmac.Equal(mac.Sum(nil)[:macLen], got) {
		return "", "", ErrBadToken
	}
	p, err := b64strict.DecodeString(tok[:d1])
	if err != nil || len(p) < 2 || p[0] != preferenceVersion {
		return "", "", ErrBadToken
	}
	p = p[1:]
	exp, n := binary.Uvarint(p)
	if n <= 0 || exp > maxUnix {
		return "", "", ErrBadToken
	}
	p = p[n:]
	l, n := binary.Uvarint(p)
	if n <= 0 || l == 0 || l > uint64(len(p)-n) {
		return "", "", ErrBadToken
	}
	site, recipient = string(p[n:n+int(l)]), string(p[n+int(l):])
	if recipient == "" || len(recipient) > maxRecipientLen {
		return "", "", ErrBadToken
	}
	if t := timeOrZero(exp); !t.IsZero() && now.After(t) {
		return "", "", ErrExpired
	}
	return site, recipient, nil
}

// PreferenceNonce returns the form nonce of the preference page of tok,
// made at at: "<unix seconds>.<base64url MAC>", bound to the token and
// valid for PreferenceNonceTTL. It is what the page's form posts back.
func (s *Signer) PreferenceNonce(tok string, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return ts + "." + b64.EncodeToString(s.formMAC(ts, tok))
}

// CheckPreferenceNonce reports whether nonce was made by PreferenceNonce
// for tok by the active key less than PreferenceNonceTTL before now.
func (s *Signer) CheckPreferenceNonce(tok, nonce string, now time.Time) bool {
	ts, sig, ok := strings.Cut(nonce, ".")
	if !ok || len(ts) > 20 || len(sig) != b64.EncodedLen(macLen) {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	at := time.Unix(sec, 0)
	if at.After(now.Add(time.Minute)) || now.Sub(at) > PreferenceNonceTTL {
		return false
	}
	got, err := b64strict.DecodeString(sig)
	return err == nil && hmac.Equal(got, s.formMAC(ts, tok))
}

func (s *Signer) formMAC(ts, tok string) []byte {
	mac := hmac.New(sha256.New, s.form)
	mac.Write([]byte(ts))
	mac.Write([]byte{0})
	mac.Write([]byte(tok))
	return mac.Sum(nil)[:macLen]
}

// Unsubscribe holds the List-Unsubscribe headers (RFC 2369, RFC 8058) of
// one e-mail.
type Unsubscribe struct {
	// ListUnsubscribe is "<https://…/p/<token>>".
	ListUnsubscribe string `json:"List-Unsubscribe"`
	// ListUnsubscribePost is "List-Unsubscribe=One-Click": mail clients
	// then unsubscribe with one POST to that URL, no page shown.
	ListUnsubscribePost string `json:"List-Unsubscribe-Post"`
}

// OneClick is the body of an RFC 8058 one-click unsubscription, and the
// value of the List-Unsubscribe-Post header.
const OneClick = "List-Unsubscribe=One-Click"

// UnsubscribeHeaders returns the headers pointing at the preference page
// of token (a preference token, or in merge-tag mode the ESP's placeholder
// for it) under base, Vigie's public URL.
func UnsubscribeHeaders(base, token string) (Unsubscribe, error) {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if !SafeLink(base) || strings.ContainsAny(base, "?#") {
		return Unsubscribe{}, fmt.Errorf("%w: Base must be an absolute http(s) URL without query or fragment", ErrConfig)
	}
	if token == "" || strings.ContainsAny(token, "<>\"' \r\n\t\x00,") {
		return Unsubscribe{}, fmt.Errorf("%w: preference token or merge tag has characters that cannot go in a header URL", ErrConfig)
	}
	return Unsubscribe{ListUnsubscribe: "<" + base + PreferencePath + token + ">", ListUnsubscribePost: OneClick}, nil
}
