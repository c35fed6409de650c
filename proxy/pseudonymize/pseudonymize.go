// Package pseudonymize is everything Vigie does to a hit's personal data
// before anything is stored or published: keyed, domain-separated pseudonyms
// for identifiers (HMAC-SHA256 with a rotating keyring), IP truncation,
// user-agent reduction and bot detection, URL query allowlisting, free-text
// scrubbing of e-mails, phone numbers, long numbers and tokens, and JSON
// property/trait scrubbing.
//
// All functions are pure (no I/O) and safe for concurrent use.
package pseudonymize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"sync"
)

// MinSecretLen is the minimum length of a Key's secret in bytes.
const MinSecretLen = 32

// idBytes is how many bytes of the HMAC output make up a pseudonym.
const idBytes = 16

// Key is one keyring secret. Keys[0] is active; others are kept for lookups until retired.
type Key struct {
	// ID names the key (stored next to pseudonyms so readers know which key made them).
	ID string
	// Secret is the HMAC key; at least MinSecretLen bytes.
	Secret []byte
}

// Config configures a Pseudonymizer. Nil slices take the documented
// defaults; a non-nil empty slice means "none".
type Config struct {
	// Keys is the keyring, active key first. Required: at least one key,
	// every secret at least MinSecretLen bytes, ids non-empty and unique.
	Keys []Key
	// AllowParams lists the query parameters kept in URLs (matched
	// case-insensitively); entries ending in '*' are prefixes.
	// Default: utm_*, mtm_*, pk_*, ref, campaign, source.
	AllowParams []string
	// ClickIDParams lists ad click-id parameters, kept (and reported in
	// Campaign.ClickIDs) only with marketing consent. Entries ending in '*'
	// are prefixes. Default: gclid, gbraid, wbraid, dclid, fbclid, msclkid,
	// ttclid, twclid, li_fat_id, yclid. (Mailchimp's mc_eid is a recipient id,
	// i.e. personal data, and is always dropped.)
	ClickIDParams []string
	// PIIKeys lists property/trait names treated as personal. Matching is
	// case- and separator-insensitive (names are reduced to lowercase
	// letters and digits: "E-Mail" → "email", "first_Name" → "firstname");
	// entries ending in '*' are prefixes. Besides these, any name containing
	// "email", "password", "passwd" or "phone" (not as part of "iphone",
	// "smartphone", "headphone", "microphone", "earphone") is personal, so
	// "email_address" and "emailAddress" match too. Default: email, phone,
	// mobile, fax, name, firstname, lastname, fullname, surname, givenname,
	// familyname, middlename, displayname, address, address1, address2,
	// addressline1, addressline2, street, streetaddress, postalcode,
	// postcode, zip, zipcode, birthday, birthdate, dateofbirth, dob, ssn,
	// socialsecuritynumber, nationalid, taxid, passport, passportnumber,
	// iban, creditcard, cardnumber, password, ip, ipaddress, username.
	PIIKeys []string
}

// Default lists used when the corresponding Config field is nil.
var (
	defaultAllowParams   = []string{"utm_*", "mtm_*", "pk_*", "ref", "campaign", "source"}
	defaultClickIDParams = []string{"gclid", "gbraid", "wbraid", "dclid", "fbclid", "msclkid", "ttclid", "twclid", "li_fat_id", "yclid"}
	defaultPIIKeys       = []string{
		"email", "phone", "mobile", "fax",
		"name", "firstname", "lastname", "fullname", "surname", "givenname", "familyname", "middlename", "displayname",
		"address", "address1", "address2", "addressline1", "addressline2", "street", "streetaddress",
		"postalcode", "postcode", "zip", "zipcode",
		"birthday", "birthdate", "dateofbirth", "dob",
		"ssn", "socialsecuritynumber", "nationalid", "taxid", "passport", "passportnumber",
		"iban", "creditcard", "cardnumber",
		"password", "ip", "ipaddress", "username",
	}
)

// Kind domain-separates pseudonyms.
type Kind uint8

// Kinds of identifiers; each gets its own pseudonym space.
const (
	AnonymousID Kind = iota + 1
	UserID
	GroupID
	MessageID
)

// Pseudonymizer applies Vigie's pseudonymization rules. Create it with New;
// it is safe for concurrent use.
type Pseudonymizer struct {
	keys     []keyState
	allow    matcher
	clickIDs matcher
	pii      piiMatcher
	devices  *deviceCache
}

type keyState struct {
	id   string
	pool sync.Pool // of *hmacState
}

// hmacState is a keyed HMAC plus scratch space, reused through a sync.Pool.
type hmacState struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// New validates cfg and returns a ready Pseudonymizer.
func New(cfg Config) (*Pseudonymizer, error) {
	if len(cfg.Keys) == 0 {
		return nil, ErrNoKeys
	}
	p := &Pseudonymizer{keys: make([]keyState, len(cfg.Keys))}
	seen := make(map[string]bool, len(cfg.Keys))
	for i, k := range cfg.Keys {
		if k.ID == "" || seen[k.ID] {
			return nil, fmt.Errorf("key %d: %w", i, ErrKeyID)
		}
		seen[k.ID] = true
		if len(k.Secret) < MinSecretLen {
			return nil, fmt.Errorf("key %d: %d bytes, want >= %d: %w", i, len(k.Secret), MinSecretLen, ErrShortSecret)
		}
		secret := append([]byte(nil), k.Secret...)
		ks := &p.keys[i]
		ks.id = k.ID
		ks.pool.New = func() any {
			return &hmacState{h: hmac.New(sha256.New, secret), in: make([]byte, 0, 128)}
		}
	}
	p.allow = newMatcher(orDefault(cfg.AllowParams, defaultAllowParams), true)
	p.clickIDs = newMatcher(orDefault(cfg.ClickIDParams, defaultClickIDParams), true)
	p.pii = newPIIMatcher(orDefault(cfg.PIIKeys, defaultPIIKeys))
	p.devices = newDeviceCache(deviceCacheSize)
	return p, nil
}

func orDefault(v, def []string) []string {
	if v == nil {
		return def
	}
	return v
}

// KeyID is the active key's id.
func (p *Pseudonymizer) KeyID() string { return p.keys[0].id }

// ID returns the pseudonym of value for site and kind under the active key:
// base64url (no padding) of the first 16 bytes of
// HMAC-SHA256(key, kind || 0x00 || site || 0x00 || value). Empty value → "".
func (p *Pseudonymizer) ID(site string, k Kind, value string) string {
	if value == "" {
		return ""
	}
	var buf [32]byte
	return string(p.keys[0].appendID(buf[:0], site, k, value))
}

// AppendID is the allocation-free variant of ID: it appends the pseudonym
// (22 bytes) to dst. Empty value appends nothing.
func (p *Pseudonymizer) AppendID(dst []byte, site string, k Kind, value string) []byte {
	if value == "" {
		return dst
	}
	return p.keys[0].appendID(dst, site, k, value)
}

// IDs returns the pseudonyms of value under every key (active first), for
// lookups across rotation. Empty value → nil.
func (p *Pseudonymizer) IDs(site string, k Kind, value string) []string {
	if value == "" {
		return nil
	}
	out := make([]string, len(p.keys))
	var buf [32]byte
	for i := range p.keys {
		out[i] = string(p.keys[i].appendID(buf[:0], site, k, value))
	}
	return out
}

func (ks *keyState) appendID(dst []byte, site string, k Kind, value string) []byte {
	st := ks.pool.Get().(*hmacState)
	in := append(st.in[:0], byte(k), 0)
	in = append(in, site...)
	in = append(in, 0)
	in = append(in, value...)
	st.h.Reset()
	st.h.Write(in)
	sum := st.h.Sum(st.sum[:0])
	dst = base64.RawURLEncoding.AppendEncode(dst, sum[:idBytes])
	if cap(in) <= 4096 { // don't let one huge value pin memory in the pool
		st.in = in[:0]
	}
	ks.pool.Put(st)
	return dst
}
