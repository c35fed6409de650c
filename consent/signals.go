package consent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// FromHeaders reads the privacy headers of a request: "Sec-GPC: 1" gives a
// SourceGPC signal and "DNT: 1" a SourceDNT signal, each denying marketing,
// only when p honours them. It returns nil when there is no such signal.
func FromHeaders(h http.Header, p Policy) []Signal {
	var out []Signal
	if p.HonorGPC && headerIsOne(h.Get("Sec-Gpc")) {
		out = append(out, Signal{Source: SourceGPC, Denied: NewSet(Marketing)})
	}
	if p.HonorDNT && headerIsOne(h.Get("Dnt")) {
		out = append(out, Signal{Source: SourceDNT, Denied: NewSet(Marketing)})
	}
	return out
}

func headerIsOne(v string) bool { return strings.TrimSpace(v) == "1" }

// maxPixelLen bounds the pixel consent value.
const maxPixelLen = 1024

// FromPixel reads the consent query parameter of the no-JS pixel (format in
// the package documentation) into a SourcePixel signal. An empty value is
// an empty signal. A malformed token is an error wrapping ErrInvalidConsent.
func FromPixel(v string) (Signal, error) {
	s := Signal{Source: SourcePixel}
	if len(v) > maxPixelLen {
		return Signal{Source: SourcePixel}, fmt.Errorf("%w: pixel value longer than %d bytes", ErrInvalidConsent, maxPixelLen)
	}
	for tok := range strings.SplitSeq(v, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		name, val, hasVal := strings.Cut(tok, ":")
		if !hasVal {
			name, val, hasVal = strings.Cut(tok, "=")
		}
		name = strings.TrimSpace(name)
		none, all := name == "0" || asciiEqualFold(name, "none"), name == "1" || asciiEqualFold(name, "all")
		switch {
		case (none || all) && hasVal:
			return Signal{Source: SourcePixel}, fmt.Errorf("%w: none/all take no flag", ErrInvalidConsent)
		case none:
			s.Denied.bits |= allBits() &^ necessaryBit
			continue
		case all:
			s.Granted.bits |= allBits()
			continue
		}
		grant := true
		if hasVal {
			switch strings.TrimSpace(val) {
			case "1":
			case "0":
				grant = false
			default:
				return Signal{Source: SourcePixel}, fmt.Errorf("%w: pixel flag must be 0 or 1", ErrInvalidConsent)
			}
		}
		if name == "" {
			return Signal{Source: SourcePixel}, fmt.Errorf("%w: pixel token without a purpose", ErrInvalidConsent)
		}
		i := index(name, true)
		if i < 0 {
			continue // unknown purpose: ignored
		}
		if grant {
			s.Granted.bits |= 1 << i
		} else {
			s.Denied.bits |= 1 << i
		}
	}
	return s, nil
}

// payloadReader is a pooled streaming JSON decoder.
type payloadReader struct {
	r   bytes.Reader
	dec jsontext.Decoder
}

var readers = sync.Pool{New: func() any { return new(payloadReader) }}

// FromPayload reads the JSON of an event's context.consent object. An
// absent, empty or null object gives no signal. It recognises:
//
//   - "categoryPreferences": {"<category>": bool, ...} (Segment) → a
//     SourceSegment signal through p.Categories; unknown categories are
//     ignored;
//   - top-level keys that are purpose names with boolean values, or the
//     same under "purposes": {...} (Vigie's own object) → a SourcePayload
//     signal; other top-level keys are ignored.
//
// Keys ignore ASCII case; a null flag counts as absent; a signal is
// returned only if it grants or denies something. Malformed JSON, duplicate
// keys or a non-boolean flag is an error wrapping ErrInvalidConsent.
func FromPayload(raw []byte, p Policy) ([]Signal, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	pr := readers.Get().(*payloadReader)
	defer func() {
		pr.r.Reset(nil)
		pr.dec.Reset(&pr.r)
		readers.Put(pr)
	}()
	pr.r.Reset(raw)
	pr.dec.Reset(&pr.r)
	seg := Signal{Source: SourceSegment}
	own := Signal{Source: SourcePayload}
	null, err := readPayload(&pr.dec, p, &seg, &own)
	if err != nil {
		return nil, invalidJSON(err)
	}
	if null {
		return nil, nil
	}
	var out []Signal
	for _, s := range [...]Signal{seg, own} {
		if s.Granted.bits|s.Denied.bits != 0 {
			if out == nil {
				out = make([]Signal, 0, 2)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// errType marks a JSON value of the wrong type.
var errType = errors.New("wrong JSON type")

// invalidJSON wraps a decoding error in ErrInvalidConsent, keeping only the
// offset: jsontext messages may quote input, which may be personal data.
func invalidJSON(err error) error {
	if errors.Is(err, errType) {
		return fmt.Errorf("%w: %w", ErrInvalidConsent, err)
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: malformed JSON at offset %d", ErrInvalidConsent, se.ByteOffset)
	}
	return fmt.Errorf("%w: malformed JSON", ErrInvalidConsent)
}

// readPayload decodes the top-level consent object into seg and own. It
// reports null for a JSON null.
func readPayload(dec *jsontext.Decoder, p Policy, seg, own *Signal) (null bool, err error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return false, err
	}
	switch tok.Kind() {
	case 'n':
		return true, checkEOF(dec)
	case '{':
	default:
		return false, fmt.Errorf("%w: consent must be an object", errType)
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return false, err
		}
		name := tok.String()
		switch {
		case asciiEqualFold(name, "categoryPreferences"):
			err = readFlags(dec, p, seg, true)
		case asciiEqualFold(name, "purposes"):
			err = readFlags(dec, p, own, false)
		default:
			if i := index(name, true); i >= 0 {
				var v, ok bool
				if v, ok, err = readBool(dec); ok {
					setFlag(own, i, v)
				}
			} else {
				err = dec.SkipValue()
			}
		}
		if err != nil {
			return false, err
		}
	}
	if _, err := dec.ReadToken(); err != nil { // '}'
		return false, err
	}
	return false, checkEOF(dec)
}

// readFlags reads an object of boolean flags (null flags skipped) into sig:
// keys are categories of p if categories, else purpose names. A JSON null
// object is treated as empty.
func readFlags(dec *jsontext.Decoder, p Policy, sig *Signal, categories bool) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '{':
	default:
		return fmt.Errorf("%w: expected an object", errType)
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String()
		v, ok, err := readBool(dec)
		if err != nil {
			return err
		}
		switch {
		case !ok:
		case categories:
			ps, _ := p.category(name)
			for _, pur := range ps {
				setFlag(sig, index(string(pur), false), v)
			}
		default:
			setFlag(sig, index(name, true), v)
		}
	}
	_, err = dec.ReadToken()
	return err
}

// readBool reads a boolean flag; ok is false for null.
func readBool(dec *jsontext.Decoder) (v, ok bool, err error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return false, false, err
	}
	switch tok.Kind() {
	case 't', 'f':
		return tok.Bool(), true, nil
	case 'n':
		return false, false, nil
	}
	return false, false, fmt.Errorf("%w: flag must be a boolean", errType)
}

func checkEOF(dec *jsontext.Decoder) error {
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			return errors.New("trailing data")
		}
		return err
	}
	return nil
}

func setFlag(s *Signal, i int, grant bool) {
	if i < 0 {
		return
	}
	if grant {
		s.Granted.bits |= 1 << i
	} else {
		s.Denied.bits |= 1 << i
	}
}
