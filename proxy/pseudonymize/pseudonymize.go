// Package pseudonymize is everything Vigie does to a hit's personal data
// before anything is stored or published: keyed, domain-separated pseudonyms
// for identifiers (HMAC-SHA256 with a rotating keyring), IP truncation,
// user-agent reduction and bot detection, URL query allowlisting, free-text
// scrubbing of e-mails, phone numbers, cards, IBANs, national ids, IP
// addresses, secrets, tokens and cued names (in any common encoding), and
// JSON property/trait scrubbing (names, string values and numbers). What
// is removed is counted by class (Counts), never kept.
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

// Config configures a Pseudonymizer. Nil AllowParams and ClickIDParams
// take the documented defaults; a non-nil empty slice means "none".
type Config struct {
	// Keys is the keyring, active key first. Required: at least one key,
	// every secret at least MinSecretLen bytes, ids non-empty and unique.
	Keys []Key
	// AllowParams lists the query parameters kept in URLs (matched
	// case-insensitively); entries ending in '*' are prefixes. Other
	// trackers' visitor ids (pk_vid, _pk_id*, _ga, _gl, _fbp, ajs_*,
	// _hsenc, mkt_tok, mc_eid…) are dropped even when listed. Default:
	// utm_*, mtm_*, Matomo's pk_ campaign parameters (pk_campaign, pk_cpn,
	// pk_source, pk_medium, pk_keyword, pk_kwd, pk_content, pk_cid,
	// pk_group, pk_placement), ref, campaign, source.
	AllowParams []string
	// ClickIDParams lists ad click-id parameters, reported in
	// Campaign.ClickIDs (and never kept in URLs) only with marketing
	// consent. Entries ending in '*'
	// are prefixes. Default: gclid, gbraid, wbraid, dclid, fbclid, msclkid,
	// ttclid, twclid, li_fat_id, yclid. (Mailchimp's mc_eid is a recipient id,
	// i.e. personal data, and is always dropped.)
	ClickIDParams []string
	// ExportClickIDs lists the click-id parameters whose values ClickIDs
	// keeps as they came, for an ads integration that must send them back
	// to the ad platform (conversion import); the others are stored as
	// pseudonyms. Entries ending in '*' are prefixes. Default: none.
	ExportClickIDs []string
	// PIIKeys lists property/trait names treated as personal, in addition
	// to the defaults (which cannot be turned off). Matching is case-,
	// accent- and separator-insensitive (names are reduced to lowercase
	// letters and digits: "E-Mail" → "email", "first_Name" → "firstname",
	// "Prénom" → "prenom"); entries ending in '*' are prefixes. Besides
	// these, any name containing "email", "courriel", "useragent" or
	// "phone" (not as part of "iphone", "smartphone", "headphone",
	// "microphone", "earphone") is personal, so "email_address" and
	// "emailAddress" match too; credential names (password, secret,
	// token, api_key, csrf_token…) and other trackers' or devices' ids
	// (_ga, pk_vid, ajs_anonymous_id, device_id…) are always dropped,
	// never vaulted. Defaults: defaultPIIKeys (names, addresses, phones,
	// e-mails, birth dates, national, tax, passport and bank numbers, IP
	// addresses, precise location, user agents; in English, French,
	// German, Spanish, Italian, Portuguese, Dutch and Polish).
	PIIKeys []string
}

// Default lists used when the corresponding Config field is nil.
var (
	defaultAllowParams = []string{
		"utm_*", "mtm_*",
		"pk_campaign", "pk_cpn", "pk_source", "pk_medium", "pk_keyword", "pk_kwd", "pk_content", "pk_cid", "pk_group", "pk_placement",
		"ref", "campaign", "source",
	}
	defaultClickIDParams = []string{"gclid", "gbraid", "wbraid", "dclid", "fbclid", "msclkid", "ttclid", "twclid", "li_fat_id", "yclid"}
	defaultPIIKeys       = []string{
		// e-mail, phone
		"email", "mail", "courriel", "correo", "correoelectronico", "epost",
		"phone", "mobile", "mobil", "fax", "tel", "telefono", "telefon", "telefone", "telefoon", "movil", "cellulare",
		"cellular", "cell", "handy", "handynummer", "gsm", "portable", "numerodetelephone",
		// names
		"name", "firstname", "lastname", "fullname", "surname", "givenname", "familyname", "middlename", "displayname",
		"maidenname", "nickname", "initials", "prenom", "nom", "nomdefamille", "nomcomplet", "nomdenaissance",
		"vorname", "nachname", "familienname", "nombre", "apellido", "apellidos", "nombrecompleto", "cognome", "nome",
		"nomecompleto", "sobrenome", "voornaam", "achternaam", "naam", "imie", "nazwisko",
		"customer", "customername", "clientname", "contact", "contactname", "recipient", "recipientname",
		"sender", "sendername", "cardholder", "cardholdername", "accountholder", "beneficiary", "billingname",
		"shippingname", "person", "personname", "signature", "username", "login",
		// addresses
		"address", "address1", "address2", "address*", "addressline1", "addressline2", "street", "streetaddress",
		"billingaddress", "shippingaddress", "homeaddress", "adresse*", "rue", "anschrift", "strasse", "straße",
		"hausnummer", "housenumber", "direccion", "calle", "domicilio", "indirizzo", "endereco", "morada", "adres",
		"ulica", "postalcode", "postcode", "zip", "zipcode", "codepostal", "plz", "postleitzahl", "codigopostal",
		// birth
		"birthday", "birthdate", "dateofbirth", "dob", "birthplace", "placeofbirth", "datedenaissance", "naissance",
		"lieudenaissance", "geburtsdatum", "geburtstag", "geburtsort", "fechadenacimiento", "datadinascita",
		"luogodinascita",
		// national, tax, passport, bank numbers
		"ssn", "socialsecuritynumber", "nationalid", "nationalidnumber", "taxid", "taxnumber", "passport",
		"passportnumber", "passeport", "reisepass", "pasaporte", "passaporto", "idnumber", "idcard", "identitycard",
		"cartedidentite", "personalausweis", "ausweisnummer", "driverslicense", "driverlicense", "licensenumber",
		"permisdeconduire", "nir", "numerosecu", "numerosecuritesociale", "securitesociale", "insee", "nss", "dni",
		"nie", "nif", "codicefiscale", "steuerid", "steueridentifikationsnummer", "steuernummer", "bsn", "pesel",
		"personnummer", "nino", "nationalinsurancenumber", "sin", "cpf", "curp", "aadhaar",
		"iban", "rib", "sortcode", "routingnumber", "accountnumber", "bankaccount", "creditcard", "cardnumber",
		"ccnumber", "ccnum", "pan",
		// network and location
		"ip", "ipaddress", "ipv4", "ipv6", "clientip", "remoteip", "userip", "remoteaddr", "xforwardedfor", "xrealip",
		"macaddress", "latitude", "longitude", "lat", "lng", "lon", "geolocation", "gps", "coordinates",
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
	// ClickID is an ad click id (gclid, fbclid…), see ClickIDs.
	ClickID
)

// Pseudonymizer applies Vigie's pseudonymization rules. Create it with New;
// it is safe for concurrent use.
type Pseudonymizer struct {
	keys           []keyState
	allow          matcher
	clickIDs       matcher
	exportClickIDs matcher
	pii            piiMatcher
	devices        *deviceCache
	// activeSecret is the active key's secret, from which the keys of
	// rotation periods are derived (PeriodID).
	activeSecret []byte
	periods      periodKeys
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
		if i == 0 {
			p.activeSecret = secret
		}
		ks := &p.keys[i]
		ks.id = k.ID
		ks.pool.New = func() any {
			return &hmacState{h: hmac.New(sha256.New, secret), in: make([]byte, 0, 128)}
		}
	}
	p.allow = newMatcher(orDefault(cfg.AllowParams, defaultAllowParams), true)
	p.clickIDs = newMatcher(orDefault(cfg.ClickIDParams, defaultClickIDParams), true)
	p.exportClickIDs = newMatcher(cfg.ExportClickIDs, true)
	p.pii = newPIIMatcher(append(append([]string(nil), defaultPIIKeys...), cfg.PIIKeys...))
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
