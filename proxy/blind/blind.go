// Package blind computes Vigie's blind index: keyed MACs of personal
// identifiers (e-mail addresses, phone numbers, user ids, anonymous ids),
// so that a privacy request can find a person by the value they give
// without Vigie ever storing the value. The key is the keyring's
// blind-index key, itself sealed under the master key: a copy of the data
// directory alone cannot test a guessed address against the index.
//
// A MAC is the first 16 bytes of HMAC-SHA256(key, site ‖ 0 ‖ kind ‖ 0 ‖
// normalized value). Values are normalized first: e-mail addresses trimmed
// and lower-cased, phone numbers in E.164 when github.com/nyaruka/phonenumbers
// can parse them (with the region of the event's locale for national
// notations), digits only otherwise.
package blind

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"

	"github.com/vigie-dev/vigie/storage"
)

// Kinds of identifiers.
const (
	Email       = "email"
	Phone       = "phone"
	UserID      = "user_id"
	AnonymousID = "anonymous_id"
)

// ErrNoKey is returned by New without a key.
var ErrNoKey = errors.New("blind: no blind-index key")

// Index computes blind-index MACs. It is safe for concurrent use.
type Index struct {
	pool sync.Pool // of *state
}

type state struct {
	mac []byte
	h   interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
		Reset()
	}
}

// New returns an Index keyed with key (at least 16 bytes).
func New(key []byte) (*Index, error) {
	if len(key) < 16 {
		return nil, ErrNoKey
	}
	k := append([]byte(nil), key...)
	ix := &Index{}
	ix.pool.New = func() any { return &state{h: hmac.New(sha256.New, k)} }
	return ix, nil
}

// MAC returns the MAC of value (normalized for kind, with region the
// ISO 3166 region for national phone numbers, "" if unknown), or nil when
// value is empty after normalization.
func (ix *Index) MAC(site, kind, value, region string) []byte {
	v := Normalize(kind, value, region)
	if v == "" {
		return nil
	}
	st := ix.pool.Get().(*state)
	st.h.Reset()
	st.h.Write([]byte(site))
	st.h.Write([]byte{0})
	st.h.Write([]byte(kind))
	st.h.Write([]byte{0})
	st.h.Write([]byte(v))
	st.mac = st.h.Sum(st.mac[:0])
	out := append([]byte(nil), st.mac[:storage.MACLen]...)
	ix.pool.Put(st)
	return out
}

// Entry returns the storage index entry of value, and false when value is
// empty.
func (ix *Index) Entry(site, kind, value, region string) (storage.IndexEntry, bool) {
	m := ix.MAC(site, kind, value, region)
	if m == nil {
		return storage.IndexEntry{}, false
	}
	return storage.IndexEntry{Kind: kind, MAC: m}, true
}

// Normalize returns the form of value that is MACed: e-mail addresses
// trimmed and lower-cased; phone numbers in E.164 when parseable (region
// helps with national notations), else their digits (with a leading + kept);
// other kinds trimmed.
func Normalize(kind, value, region string) string {
	value = strings.TrimSpace(value)
	switch kind {
	case Email:
		return strings.ToLower(value)
	case Phone:
		return normalizePhone(value, region)
	}
	return value
}

func normalizePhone(v, region string) string {
	if v == "" {
		return ""
	}
	if n, err := phonenumbers.Parse(v, strings.ToUpper(region)); err == nil && phonenumbers.IsValidNumber(n) {
		return phonenumbers.Format(n, phonenumbers.E164)
	}
	var b strings.Builder
	for i, r := range v {
		if r >= '0' && r <= '9' || (r == '+' && i == 0) {
			b.WriteRune(r)
		}
	}
	if b.Len() < 4 {
		return ""
	}
	return b.String()
}

// Region returns the region of a locale such as fr-FR or en_GB ("" when it
// names none).
func Region(locale string) string {
	i := strings.LastIndexAny(locale, "-_")
	if i < 0 || len(locale)-i-1 != 2 {
		return ""
	}
	return strings.ToUpper(locale[i+1:])
}
