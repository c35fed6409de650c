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
	scratch []byte // unquoted string values
	names   []byte // normalized member names
	text    []byte // scrubbed text
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
// name is PII-named (see Config.PIIKeys) or itself contains personal data,
// at any depth, and scrubbing every string value with ScrubText (and
// URL-looking strings — http(s)://…, //host/…, /path — with ScrubURL without
// marketing). It appends the rewritten JSON to dst and returns it. Invalid
// JSON or a top-level value that is not an object → error wrapping
// ErrInvalidJSON. Empty/null input → nil, nil.
func (p *Pseudonymizer) ScrubProperties(dst, raw []byte) ([]byte, error) {
	if isNullOrEmpty(raw) {
		return nil, nil
	}
	st := getJSONState(raw, dst)
	defer putJSONState(st)
	if st.dec.PeekKind() != '{' {
		return nil, invalidJSON(st.dec)
	}
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
// (e.g. an e-mail used as a key) are dropped from both, so names never
// carries personal data. clean is "{}" when every trait was personal;
// personal and names are nil when none was. Empty/null input → all nil.
func (p *Pseudonymizer) SplitTraits(raw []byte) (clean, personal []byte, names []string, err error) {
	if isNullOrEmpty(raw) {
		return nil, nil, nil, nil
	}
	st := getJSONState(raw, nil)
	defer putJSONState(st)
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
	namePersonal // the name itself contains personal data: always dropped
)

// readName reads a member name; it leaves the unquoted name in st.scratch
// and classifies it.
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
	if st.names, hit = p.pii.isPII(st.names, unq); hit {
		return name, namePII, nil
	}
	if st.text, hit = appendScrubText(st.text[:0], unq); hit {
		return name, namePersonal, nil
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
			u := p.ScrubURL(s, false)
			if u.URL == s {
				return wrapJSON(enc.WriteValue(v))
			}
			return wrapJSON(enc.WriteToken(jsontext.String(u.URL)))
		}
		var changed bool
		st.text, changed = appendScrubText(st.text[:0], s)
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
	default:
		v, err := dec.ReadValue()
		if err != nil {
			return wrapJSON(err)
		}
		return wrapJSON(enc.WriteValue(v))
	}
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
