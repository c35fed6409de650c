package imports

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/collect"
)

// Reasons a row failed (its values are wrong) or was skipped (a valid row
// the rules keep out). They name the problem, never the value.
const (
	reasonMissingIdentity = "missing_identity"
	reasonInvalidEmail    = "invalid_email"
	reasonInvalidNumber   = "invalid_number"
	reasonInvalidInteger  = "invalid_integer"
	reasonInvalidBoolean  = "invalid_boolean"
	reasonInvalidTime     = "invalid_timestamp"
	reasonTimeRange       = "timestamp_out_of_range"
	reasonInvalidConsent  = "invalid_consent"
	reasonUnknownPurpose  = "unknown_purpose"
	reasonMissingKey      = "missing_natural_key"
	reasonEventTooLarge   = "event_too_large"
	reasonNoLawfulBasis   = "no_lawful_basis"
	reasonConsentUndated  = "consent_undated"
	reasonConsentExpired  = "consent_expired"
	reasonConsentDenied   = "consent_denied"
	reasonObjected        = "objected"
	reasonRestricted      = "restricted"
	reasonSuppressed      = "suppressed"
	reasonPastRetention   = "past_retention"
	reasonDuplicate       = "duplicate"
	reasonNotPseudonymous = "not_pseudonymous"
)

// reasonText explains each reason in the client's terms (the per-row
// errors' message).
var reasonText = map[string]string{
	reasonMalformed:       "the row is not well-formed (quotes, or JSON syntax)",
	reasonFieldCount:      "the row has another number of fields than the header",
	reasonRowTooLarge:     "the row is larger than 1 MiB",
	reasonNotObject:       "the line is not a JSON object",
	reasonUnsupported:     "an object or array where a value is expected",
	reasonEncoding:        "the row is not valid UTF-8",
	reasonMissingIdentity: "the identity column is empty",
	reasonInvalidEmail:    "the identity is not an e-mail address",
	reasonInvalidNumber:   "not a number",
	reasonInvalidInteger:  "not an integer",
	reasonInvalidBoolean:  "not a boolean (true/false, yes/no, 1/0)",
	reasonInvalidTime:     "not a time in the mapping's format",
	reasonTimeRange:       "a time before 1970 or more than a day ahead",
	reasonInvalidConsent:  "not a consent value (yes/no, or a list of purposes)",
	reasonUnknownPurpose:  "names a purpose that is not configured",
	reasonMissingKey:      "a natural key column is empty",
	reasonEventTooLarge:   "the event would be larger than 32 KiB",
	reasonNoLawfulBasis:   "no consent in the row",
	reasonConsentUndated:  "the consent has no date",
	reasonConsentExpired:  "the consent is older than 13 months",
	reasonConsentDenied:   "the consent does not grant the import's purposes",
	reasonObjected:        "the person objected to one of the import's purposes",
	reasonRestricted:      "the person's processing is restricted",
	reasonSuppressed:      "the person was erased and is suppressed",
	reasonPastRetention:   "the row is older than the import's retention",
	reasonNotPseudonymous: "the site's policy keeps such events anonymous",
}

// rowErr is a row's failure or skip.
type rowErr struct {
	reason string
	field  string // mapping field, if one is concerned
	failed bool   // false: skipped
}

func failed(reason, field string) *rowErr  { return &rowErr{reason: reason, field: field, failed: true} }
func skipped(reason, field string) *rowErr { return &rowErr{reason: reason, field: field} }

// row is one row made ready for the pipeline. Its buffers are reused.
type row struct {
	msg      collect.Message
	identity string    // normalized identifier
	at       time.Time // event time
	key      []byte    // natural key material (hashed)
	attrs    []byte    // attributes JSON object, nil when none
	// lawful basis
	contract   bool
	hasConsent bool
	granted    consent.Set
	denied     consent.Set
	consentAt  time.Time
	source     string // raw, scrubbed by the caller
	proof      [sha256.Size]byte

	buf bytes.Buffer
	enc jsontext.Encoder
}

// consentYes and consentNo are the consent values read as a yes or a no
// for the mapping's purposes (lower case).
var (
	consentYes = map[string]bool{"yes": true, "y": true, "true": true, "1": true, "granted": true, "grant": true,
		"opt-in": true, "optin": true, "opted-in": true, "accepted": true, "accept": true, "oui": true, "ja": true, "si": true, "sí": true}
	consentNo = map[string]bool{"no": true, "n": true, "false": true, "0": true, "denied": true, "deny": true,
		"opt-out": true, "optout": true, "opted-out": true, "refused": true, "refuse": true, "withdrawn": true,
		"non": true, "nein": true}
)

// maxFuture bounds how far ahead a row's time may be.
const maxFuture = 24 * time.Hour

// build fills r from vals (one per plan column) at now. configured tells
// whether a purpose may be named by a consent list.
func (p *plan) build(r *row, vals []string, now time.Time, configured func(string) bool) *rowErr {
	r.msg = collect.Message{Type: p.typ, Event: p.event}
	r.attrs, r.contract, r.hasConsent = nil, p.contract, false
	r.granted, r.denied, r.consentAt, r.source = consent.Set{}, consent.Set{}, time.Time{}, ""
	id := vals[p.identity]
	switch {
	case id == "":
		return failed(reasonMissingIdentity, "identity.column")
	case p.kind == KindEmail:
		id = blind.Normalize(blind.Email, id, "")
		at := strings.IndexByte(id, '@')
		if at <= 0 || at == len(id)-1 || strings.Count(id, "@") != 1 || strings.ContainsAny(id, " \t<>,;") {
			return failed(reasonInvalidEmail, "identity.column")
		}
	case p.kind == KindUserID:
		r.msg.UserID = id
	}
	r.identity = id
	r.at = now
	if p.ts != nil {
		t, e := p.ts.parse(vals[p.ts.col], now)
		if e != nil {
			return e
		}
		if !t.IsZero() {
			r.at = t
		}
	}
	r.msg.Timestamp = r.at
	var err *rowErr
	if r.msg.Properties, err = p.object(r, p.props, vals); err != nil {
		return err
	}
	if r.msg.Traits, err = p.object(r, p.traits, vals); err != nil {
		return err
	}
	if r.attrs, err = p.object(r, p.attrs, vals); err != nil {
		return err
	}
	if len(r.msg.Properties)+len(r.msg.Traits) > collect.MaxEventBytes {
		return failed(reasonEventTooLarge, "")
	}
	if err := p.naturalKey(r, vals); err != nil {
		return err
	}
	if p.contract {
		r.granted = p.purposes
		return nil
	}
	return p.lawfulBasis(r, vals, now, configured)
}

// parse reads a time (zero time for an empty value).
func (ts *timeSpec) parse(v string, now time.Time) (time.Time, *rowErr) {
	if v == "" {
		return time.Time{}, nil
	}
	var t time.Time
	ok := true
	switch ts.layout {
	case "":
		if t, ok = collect.ParseTimeIn(v, ts.loc); !ok {
			// Spreadsheets write minutes without seconds.
			var err error
			t, err = time.ParseInLocation("2006-01-02 15:04", v, ts.loc)
			ok = err == nil
		}
	case "unix", "unix_ms":
		n, err := strconv.ParseInt(v, 10, 64)
		ok = err == nil && n >= 0 && n < 1<<42
		if ts.layout == "unix" {
			t = time.Unix(n, 0)
		} else {
			t = time.UnixMilli(n)
		}
	default:
		var err error
		t, err = time.ParseInLocation(ts.layout, v, ts.loc)
		ok = err == nil
	}
	switch {
	case !ok:
		return time.Time{}, failed(reasonInvalidTime, ts.path)
	case t.Unix() <= 0 || t.After(now.Add(maxFuture)):
		return time.Time{}, failed(reasonTimeRange, ts.path)
	}
	return t, nil
}

// object encodes fields of vals as a JSON object (nil when every value is
// empty), into a new slice.
func (p *plan) object(r *row, fields []field, vals []string) (jsontext.Value, *rowErr) {
	if len(fields) == 0 {
		return nil, nil
	}
	r.buf.Reset()
	r.enc.Reset(&r.buf)
	_ = r.enc.WriteToken(jsontext.BeginObject)
	n := 0
	for _, f := range fields {
		v := vals[f.col]
		if v == "" {
			continue
		}
		tok, e := p.value(f, v)
		if e != nil {
			return nil, e
		}
		_ = r.enc.WriteToken(jsontext.String(f.name))
		if err := r.enc.WriteToken(tok); err != nil {
			return nil, failed(reasonInvalidNumber, f.path)
		}
		n++
	}
	_ = r.enc.WriteToken(jsontext.EndObject)
	if n == 0 {
		return nil, nil
	}
	return bytes.Clone(bytes.TrimSpace(r.buf.Bytes())), nil
}

// value converts one cell to its JSON token.
func (p *plan) value(f field, v string) (jsontext.Token, *rowErr) {
	switch f.typ {
	case typeNumber:
		s := v
		if p.comma {
			s = strings.Replace(s, ",", ".", 1)
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
			return jsontext.Token{}, failed(reasonInvalidNumber, f.path)
		}
		return jsontext.Float(x), nil
	case typeInteger:
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return jsontext.Token{}, failed(reasonInvalidInteger, f.path)
		}
		return jsontext.Int(x), nil
	case typeBoolean:
		switch l := strings.ToLower(v); {
		case l == "true" || l == "yes" || l == "y" || l == "1":
			return jsontext.True, nil
		case l == "false" || l == "no" || l == "n" || l == "0":
			return jsontext.False, nil
		}
		return jsontext.Token{}, failed(reasonInvalidBoolean, f.path)
	case typeTimestamp:
		t, ok := collect.ParseTimeIn(v, time.UTC)
		if !ok {
			return jsontext.Token{}, failed(reasonInvalidTime, f.path)
		}
		return jsontext.String(t.UTC().Format(time.RFC3339Nano)), nil
	}
	return jsontext.String(v), nil
}

// naturalKey fills r.key: the event, then the natural key's values, or
// every mapped value but the lawful basis, each length-prefixed, hashed.
func (p *plan) naturalKey(r *row, vals []string) *rowErr {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	put := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	put(p.typ)
	put(p.event)
	if len(p.natural) > 0 {
		for i, c := range p.natural {
			if vals[c] == "" {
				return failed(reasonMissingKey, p.naturalPath(i))
			}
			put(vals[c])
		}
	} else {
		put(r.identity)
		put(strconv.FormatInt(r.at.UnixMilli(), 10))
		for _, obj := range [][]byte{r.msg.Properties, r.msg.Traits, r.attrs} {
			put(string(obj))
		}
	}
	r.key = h.Sum(r.key[:0])
	return nil
}

// naturalPath names natural_key[i].
func (p *plan) naturalPath(i int) string { return "natural_key[" + strconv.Itoa(i) + "]" }

// lawfulBasis reads the consent columns of a row.
func (p *plan) lawfulBasis(r *row, vals []string, now time.Time, configured func(string) bool) *rowErr {
	v := strings.ToLower(vals[p.consent])
	switch {
	case v == "":
		return skipped(reasonNoLawfulBasis, "lawful_basis.column")
	case consentYes[v]:
		r.granted = p.purposes
	case consentNo[v]:
		r.denied = p.purposes
	default:
		var names []consent.Purpose
		for _, f := range strings.FieldsFunc(v, func(c rune) bool { return c == ';' || c == ',' || c == '|' || c == ' ' }) {
			if !configured(f) {
				return failed(reasonUnknownPurpose, "lawful_basis.column")
			}
			names = append(names, consent.Purpose(f))
		}
		if len(names) == 0 {
			return failed(reasonInvalidConsent, "lawful_basis.column")
		}
		r.granted = consent.NewSet(names...)
		var rest []consent.Purpose
		for _, q := range setPurposes(p.purposes) {
			if !r.granted.Has(q) {
				rest = append(rest, q)
			}
		}
		r.denied = consent.NewSet(rest...)
	}
	at, e := p.date.parse(vals[p.date.col], now)
	if e != nil {
		return e
	}
	if at.IsZero() {
		return skipped(reasonConsentUndated, "lawful_basis.date_column")
	}
	r.hasConsent, r.consentAt = true, at
	if p.source >= 0 {
		r.source = vals[p.source]
	}
	h := sha256.New()
	for _, s := range []string{vals[p.consent], vals[p.date.col], r.source} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Sum(r.proof[:0])
	return nil
}
