package pseudonymize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// jsonState is the reusable machinery for one streaming rewrite.
type jsonState struct {
	in      bytes.Buffer
	out     bytes.Buffer
	dec     *jsontext.Decoder
	enc     *jsontext.Encoder
	scratch []byte  // unquoted string values
	names   []byte  // normalized member names
	text    []byte  // scrubbed text
	counts  *Counts // what was removed
	local   Counts  // counts when the caller gave none
}

var jsonStates = sync.Pool{New: func() any {
	st := &jsonState{}
	st.dec = jsontext.NewDecoder(&st.in)
	st.enc = jsontext.NewEncoder(&st.out)
	return st
}}

// emptyBuffer lets pooled coders drop references to caller memory.
var emptyBuffer bytes.Buffer

func getJSONState(raw, dst []byte) *jsonState {
	st := jsonStates.Get().(*jsonState)
	st.in = *bytes.NewBuffer(raw)
	st.out = *bytes.NewBuffer(dst)
	st.dec.Reset(&st.in)
	st.enc.Reset(&st.out)
	return st
}

func putJSONState(st *jsonState) {
	st.dec.Reset(&emptyBuffer)
	st.enc.Reset(&emptyBuffer)
	st.in, st.out = bytes.Buffer{}, bytes.Buffer{}
	st.counts, st.local = nil, Counts{}
	const keep = 64 << 10
	if cap(st.scratch) > keep || cap(st.names) > keep || cap(st.text) > keep {
		return // let oversized buffers go
	}
	jsonStates.Put(st)
}

// isNullOrEmpty reports input that ScrubProperties and SplitTraits treat as
// "no data".
func isNullOrEmpty(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// ScrubProperties streams a JSON object (properties), dropping members whose
// name is PII-named (see Config.PIIKeys), a credential name, another
// tracker's visitor id, or itself contains personal data, at any depth;
// scrubbing every string value with ScrubText (and URL-looking strings —
// http(s)://…, //host/…, /path — with ScrubURL without marketing); and
// replacing integer numbers that are payment cards, national ids or
// international phone numbers (see numberClass) with their marker, as a
// string. It appends the rewritten JSON to dst and returns it; what was
// removed is added to c (nil: not counted). Invalid JSON or a top-level
// value that is not an object → error wrapping ErrInvalidJSON. Empty/null
// input → nil, nil.
func (p *Pseudonymizer) ScrubProperties(dst, raw []byte, c *Counts) ([]byte, error) {
	if isNullOrEmpty(raw) {
		return nil, nil
	}
	st := getJSONState(raw, dst)
	defer putJSONState(st)
	if st.dec.PeekKind() != '{' {
		return nil, invalidJSON(st.dec)
	}
	if c == nil {
		c = &st.local
	}
	st.counts = c
	if err := p.copyValue(st); err != nil {
		return nil, err
	}
	if err := expectEOF(st.dec); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(st.out.Bytes(), newline), nil
}

var newline = []byte("\n")

// SplitTraits separates identify/group traits: PII-named top-level traits
// go verbatim to personal (a JSON object, to be stored encrypted in the
// vault; their names, in input order, in names), the rest are scrubbed like
// properties into clean. Traits whose name itself contains personal data
// (e.g. an e-mail used as a key), credentials (password, token…) and other
// trackers' ids are dropped from both, so names never carries personal data
// and the vault never holds a secret. clean is "{}" when every trait was
// personal; personal and names are nil when none was. Empty/null input →
// all nil. What was removed from clean (not what went to the vault) is
// added to c.
func (p *Pseudonymizer) SplitTraits(raw []byte, c *Counts) (clean, personal []byte, names []string, err error) {
	if isNullOrEmpty(raw) {
		return nil, nil, nil, nil
	}
	st := getJSONState(raw, nil)
	defer putJSONState(st)
	if c == nil {
		c = &st.local
	}
	st.counts = c
	dec, enc := st.dec, st.enc
	if dec.PeekKind() != '{' {
		return nil, nil, nil, invalidJSON(dec)
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, nil, nil, wrapJSON(err)
	}
	if err := enc.WriteToken(jsontext.BeginObject); err != nil {
		return nil, nil, nil, wrapJSON(err)
	}
	var pbuf bytes.Buffer
	var penc *jsontext.Encoder
	for dec.PeekKind() != '}' {
		name, class, err := p.readName(st)
		if err != nil {
			return nil, nil, nil, err
		}
		if class == namePersonal {
			if err := dec.SkipValue(); err != nil {
				return nil, nil, nil, wrapJSON(err)
			}
			continue
		}
		if class == nameClean {
			if err := enc.WriteValue(name); err != nil {
				return nil, nil, nil, wrapJSON(err)
			}
			if err := p.copyValue(st); err != nil {
				return nil, nil, nil, err
			}
			continue
		}
		if penc == nil {
			penc = jsontext.NewEncoder(&pbuf)
			if err := penc.WriteToken(jsontext.BeginObject); err != nil {
				return nil, nil, nil, wrapJSON(err)
			}
		}
		names = append(names, string(st.scratch))
		if err := penc.WriteValue(name); err != nil {
			return nil, nil, nil, wrapJSON(err)
		}
		v, err := dec.ReadValue()
		if err != nil {
			return nil, nil, nil, wrapJSON(err)
		}
		if err := penc.WriteValue(v); err != nil {
			return nil, nil, nil, wrapJSON(err)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, nil, nil, wrapJSON(err)
	}
	if err := enc.WriteToken(jsontext.EndObject); err != nil {
		return nil, nil, nil, wrapJSON(err)
	}
	if err := expectEOF(dec); err != nil {
		return nil, nil, nil, err
	}
	clean = bytes.TrimSuffix(st.out.Bytes(), newline)
	if penc != nil {
		if err := penc.WriteToken(jsontext.EndObject); err != nil {
			return nil, nil, nil, wrapJSON(err)
		}
		personal = bytes.TrimSuffix(pbuf.Bytes(), newline)
	}
	return clean, personal, names, nil
}

// Member name classes.
const (
	nameClean    = iota
	namePII      // PII-named: dropped, or moved to the vault by SplitTraits
	namePersonal // personal data in the name, a credential, a tracker id: always dropped
)

// readName reads a member name; it leaves the unquoted name in st.scratch
// and classifies it. Names dropped for good are counted here; PII names
// are counted by the caller that drops them.
func (p *Pseudonymizer) readName(st *jsonState) (jsontext.Value, int, error) {
	name, err := st.dec.ReadValue()
	if err != nil {
		return nil, nameClean, wrapJSON(err)
	}
	st.scratch, err = jsontext.AppendUnquote(st.scratch[:0], name)
	if err != nil {
		return nil, nameClean, wrapJSON(err)
	}
	unq := unsafeString(st.scratch)
	var hit bool
	if st.text, hit = appendScrubText(st.text[:0], unq, st.counts); hit {
		return name, namePersonal, nil
	}
	var lk []byte
	if lk, hit = trackerParams.matchFold(st.text[:0], unq); hit {
		st.text = lk
		st.counts.add(ClassTrackerID)
		return name, namePersonal, nil
	}
	st.text = lk
	var class Class
	if st.names, class = p.pii.classify(st.names, unq); class == ClassSecret || class == ClassTrackerID {
		st.counts.add(class)
		return name, namePersonal, nil
	} else if class == ClassPersonalKey {
		return name, namePII, nil
	}
	return name, nameClean, nil
}

// copyValue copies the next value from st.dec to st.enc, scrubbing it.
func (p *Pseudonymizer) copyValue(st *jsonState) error {
	dec, enc := st.dec, st.enc
	switch dec.PeekKind() {
	case '{':
		if _, err := dec.ReadToken(); err != nil {
			return wrapJSON(err)
		}
		if err := enc.WriteToken(jsontext.BeginObject); err != nil {
			return wrapJSON(err)
		}
		for dec.PeekKind() != '}' {
			name, class, err := p.readName(st)
			if err != nil {
				return err
			}
			if class != nameClean {
				if class == namePII {
					st.counts.add(ClassPersonalKey)
				}
				if err := dec.SkipValue(); err != nil {
					return wrapJSON(err)
				}
				continue
			}
			if err := enc.WriteValue(name); err != nil {
				return wrapJSON(err)
			}
			if err := p.copyValue(st); err != nil {
				return err
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return wrapJSON(err)
		}
		return wrapJSON(enc.WriteToken(jsontext.EndObject))
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return wrapJSON(err)
		}
		if err := enc.WriteToken(jsontext.BeginArray); err != nil {
			return wrapJSON(err)
		}
		for dec.PeekKind() != ']' {
			if err := p.copyValue(st); err != nil {
				return err
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return wrapJSON(err)
		}
		return wrapJSON(enc.WriteToken(jsontext.EndArray))
	case '"':
		v, err := dec.ReadValue()
		if err != nil {
			return wrapJSON(err)
		}
		st.scratch, err = jsontext.AppendUnquote(st.scratch[:0], v)
		if err != nil {
			return wrapJSON(err)
		}
		s := unsafeString(st.scratch)
		if looksLikeURL(s) {
			u := p.ScrubURL(s, false, st.counts)
			if u.URL == s {
				return wrapJSON(enc.WriteValue(v))
			}
			return wrapJSON(enc.WriteToken(jsontext.String(u.URL)))
		}
		var changed bool
		st.text, changed = appendScrubText(st.text[:0], s, st.counts)
		if !changed {
			return wrapJSON(enc.WriteValue(v))
		}
		return wrapJSON(enc.WriteToken(jsontext.String(unsafeString(st.text))))
	case 0:
		_, err := dec.ReadToken() // surfaces the syntax error or EOF
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return wrapJSON(err)
	case '0':
		v, err := dec.ReadValue()
		if err != nil {
			return wrapJSON(err)
		}
		if cl := numberClass(v, st.counts); cl != NumClasses {
			st.counts.add(cl)
			return wrapJSON(enc.WriteToken(jsontext.String(markers[cl])))
		}
		return wrapJSON(enc.WriteValue(v))
	default:
		v, err := dec.ReadValue()
		if err != nil {
			return wrapJSON(err)
		}
		return wrapJSON(enc.WriteValue(v))
	}
}

// numberClass classifies a JSON number that is an integer of 8–19 digits
// (written plainly, with a zero fraction, or with an exponent): a payment
// card (issuer prefix, Luhn), a national id (French NIR, Belgian national
// number, German tax id, Polish PESEL, by their checks) or a phone number in
// international form without its '+' (country code first, valid for
// github.com/nyaruka/phonenumbers). NumClasses when none: timestamps,
// amounts and ids are kept as numbers. A phone number sent as an integer
// without its country code cannot be told from other integers and is kept.
func numberClass(lit []byte, c *Counts) Class {
	if len(lit) < 8 || lit[0] == '-' {
		return NumClasses
	}
	var buf [24]byte
	d, ok := integerDigits(buf[:0], lit)
	if !ok || len(d) < 8 || len(d) > 19 {
		return NumClasses
	}
	ds := unsafeString(d)
	if cl := classifyDigits(ds); cl != NumClasses {
		return cl
	}
	if len(ds) <= 15 {
		return confirmE164(ds, c)
	}
	return NumClasses
}

// integerDigits appends the decimal digits of the JSON number lit when it
// is a positive integer of at most 24 digits ("4111111111111111",
// "3.3612345678e10", "33612345678.0"; not with a negative exponent).
func integerDigits(dst, lit []byte) ([]byte, bool) {
	if len(lit) == 0 || !isDigit(lit[0]) {
		return nil, false // negative numbers are not identifiers
	}
	intPart, rest := lit, []byte(nil)
	for i, c := range lit {
		if c == '.' || c == 'e' || c == 'E' {
			intPart, rest = lit[:i], lit[i:]
			break
		}
	}
	var frac []byte
	if len(rest) > 0 && rest[0] == '.' {
		k := 1
		for k < len(rest) && isDigit(rest[k]) {
			k++
		}
		frac, rest = rest[1:k], rest[k:]
	}
	exp := 0
	if len(rest) > 0 {
		if rest[0] != 'e' && rest[0] != 'E' {
			return nil, false
		}
		rest = rest[1:]
		neg := false
		if len(rest) > 0 && (rest[0] == '+' || rest[0] == '-') {
			neg = rest[0] == '-'
			rest = rest[1:]
		}
		if len(rest) == 0 {
			return nil, false
		}
		for _, c := range rest {
			if exp > 100 || !isDigit(c) {
				return nil, false
			}
			exp = exp*10 + int(c-'0')
		}
		if neg {
			exp = -exp
		}
	}
	for len(frac) > 0 && frac[len(frac)-1] == '0' && len(frac) > exp {
		frac = frac[:len(frac)-1]
	}
	if exp < len(frac) || len(intPart)+exp > cap(dst) {
		return nil, false
	}
	if len(intPart) == 0 || !allDigits(unsafeString(intPart)) {
		return nil, false
	}
	for _, c := range intPart {
		if len(dst) == 0 && c == '0' {
			continue
		}
		dst = append(dst, c)
	}
	for _, c := range frac {
		if len(dst) == 0 && c == '0' {
			continue
		}
		dst = append(dst, c)
	}
	for range exp - len(frac) {
		if len(dst) == 0 {
			break
		}
		dst = append(dst, '0')
	}
	return dst, len(dst) > 0
}

// looksLikeURL reports strings worth parsing as URLs: absolute http(s),
// scheme-relative, or a single-line absolute path.
func looksLikeURL(s string) bool {
	if len(s) < 2 || strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	if s[0] == '/' {
		return true
	}
	return len(s) > 8 && (strings.EqualFold(s[:7], "http://") || strings.EqualFold(s[:8], "https://"))
}

func expectEOF(dec *jsontext.Decoder) error {
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			return fmt.Errorf("trailing data after object: %w", ErrInvalidJSON)
		}
		return wrapJSON(err)
	}
	return nil
}

func invalidJSON(dec *jsontext.Decoder) error {
	if _, err := dec.ReadToken(); err != nil && err != io.EOF {
		return wrapJSON(err)
	}
	return fmt.Errorf("top-level value is not an object: %w", ErrInvalidJSON)
}

// wrapJSON wraps a jsontext error with ErrInvalidJSON (nil stays nil).
func wrapJSON(err error) error {
	if err == nil || errors.Is(err, ErrInvalidJSON) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalidJSON, err)
}
