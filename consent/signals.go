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
			// Blanket tokens leave sensitive alone: it is granted or
			// denied only by name (and never granted without a grant).
			s.Denied.bits |= allBits() &^ necessaryBit &^ explicitOnlyBits()
			continue
		case all:
			s.Granted.bits |= allBits() &^ explicitOnlyBits()
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
	x   payloadExtra
}

// payloadExtra collects the standard consent strings of a payload; they
// are decoded after the JSON is read.
type payloadExtra struct {
	tcf, gpp            string
	hasTCF, hasGPP      bool
	gdprApplies, hasSID bool
	sid                 []int
	sidErr              error
	cm                  cmState
	hasCM               bool
	gpc, dnt            bool
}

func (x *payloadExtra) reset() {
	sid := x.sid[:0]
	*x = payloadExtra{gdprApplies: true, sid: sid}
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
//     signal;
//   - "tcf" or "tcString": a TCF v2.2 TC string, with an optional
//     "gdprApplies": bool (default true) → a SourceTCF signal (FromTCF);
//   - "gpp": a GPP string, with an optional "gppSid": [2, 7] or "2,7" →
//     a SourceGPP signal (FromGPP);
//   - "googleConsentMode" or "gcm": {"ad_storage": "granted"|"denied"|bool,
//     ...} → a SourceConsentMode signal through p.ConsentMode;
//   - "gpc": true and "dnt": true (the browser's Global Privacy Control and
//     Do Not Track, as the snippet reports them) → SourceGPC / SourceDNT
//     signals denying marketing, when p honours them (as FromHeaders);
//
// other top-level keys are ignored. Keys ignore ASCII case; a null value
// counts as absent; a signal is returned only if it grants or denies
// something. Malformed JSON, duplicate keys or a value of the wrong type
// is an error wrapping ErrInvalidConsent with no signals at all. A TC or
// GPP string (or gppSid) that cannot be decoded is reported the same way
// but only that source is dropped: the other signals are returned with
// the error.
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
	pr.x.reset()
	seg := Signal{Source: SourceSegment}
	own := Signal{Source: SourcePayload}
	null, err := readPayload(&pr.dec, p, &seg, &own, &pr.x)
	if err != nil {
		return nil, invalidJSON(err)
	}
	if null {
		return nil, nil
	}
	var out []Signal
	add := func(s Signal) {
		if s.Granted.bits|s.Denied.bits != 0 {
			if out == nil {
				out = make([]Signal, 0, 2)
			}
			out = append(out, s)
		}
	}
	add(seg)
	add(own)
	var errs []error
	x := &pr.x
	if x.hasTCF {
		s, err := FromTCF(x.tcf, x.gdprApplies, p)
		add(s)
		errs = append(errs, err)
	}
	if x.hasGPP && x.sidErr != nil {
		errs = append(errs, x.sidErr) // applicability unknown: drop GPP
	} else if x.hasGPP {
		var sid []int
		if x.hasSID {
			sid = x.sid
		}
		s, err := FromGPP(x.gpp, sid, p)
		add(s)
		errs = append(errs, err)
	}
	if x.hasCM {
		add(cmSignal(x.cm, p))
	}
	// The browser's Global Privacy Control and Do Not Track, as the snippet
	// reports them (navigator.globalPrivacyControl, navigator.doNotTrack):
	// the same as the Sec-GPC and DNT headers.
	if x.gpc && p.HonorGPC {
		add(Signal{Source: SourceGPC, Denied: NewSet(Marketing)})
	}
	if x.dnt && p.HonorDNT {
		add(Signal{Source: SourceDNT, Denied: NewSet(Marketing)})
	}
	return out, errors.Join(errs...)
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
func readPayload(dec *jsontext.Decoder, p Policy, seg, own *Signal, x *payloadExtra) (null bool, err error) {
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
		case asciiEqualFold(name, "tcf") || asciiEqualFold(name, "tcString"):
			x.tcf, x.hasTCF, err = readString(dec)
		case asciiEqualFold(name, "gpp"):
			x.gpp, x.hasGPP, err = readString(dec)
		case asciiEqualFold(name, "gdprApplies"):
			var v, ok bool
			if v, ok, err = readBool(dec); ok {
				x.gdprApplies = v
			}
		case asciiEqualFold(name, "gppSid"):
			err = readSID(dec, x)
		case asciiEqualFold(name, "googleConsentMode") || asciiEqualFold(name, "gcm"):
			err = readConsentMode(dec, x)
		case asciiEqualFold(name, "gpc"):
			x.gpc, _, err = readBool(dec)
		case asciiEqualFold(name, "dnt"):
			x.dnt, _, err = readBool(dec)
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

// readString reads a string value; ok is false for null.
func readString(dec *jsontext.Decoder) (v string, ok bool, err error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return "", false, err
	}
	switch tok.Kind() {
	case '"':
		return tok.String(), true, nil
	case 'n':
		return "", false, nil
	}
	return "", false, fmt.Errorf("%w: expected a string", errType)
}

// maxSID bounds the number of entries of gppSid.
const maxSID = 64

// readSID reads gppSid: an array of section ids, a comma-separated string,
// or null. A string that does not parse is kept as x.sidErr (only the GPP
// source is dropped); an array of non-integers is a type error.
func readSID(dec *jsontext.Decoder, x *payloadExtra) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '"':
		x.hasSID = true
		x.sid, x.sidErr = parseSID(tok.String())
		return nil
	case '[':
	default:
		return fmt.Errorf("%w: gppSid must be an array or a string", errType)
	}
	x.hasSID = true
	for dec.PeekKind() != ']' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		if tok.Kind() != '0' {
			return fmt.Errorf("%w: gppSid entries must be integers", errType)
		}
		f, err := tok.Float()
		if err != nil || f != float64(int(f)) || f < 0 || f > 1023 || len(x.sid) >= maxSID {
			return fmt.Errorf("%w: gppSid entries must be section ids", errType)
		}
		x.sid = append(x.sid, int(f))
	}
	_, err = dec.ReadToken()
	return err
}

// readConsentMode reads a Consent Mode object: signal name → "granted",
// "denied" (ASCII case ignored) or a boolean; null values and unknown
// signals are ignored.
func readConsentMode(dec *jsontext.Decoder, x *payloadExtra) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '{':
	default:
		return fmt.Errorf("%w: consent mode must be an object", errType)
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		i := cmIndex(tok.String())
		if i < 0 {
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		v, err := dec.ReadToken()
		if err != nil {
			return err
		}
		var st int8
		switch v.Kind() {
		case 'n':
		case 't':
			st = cmGranted
		case 'f':
			st = cmDenied
		case '"':
			switch s := v.String(); {
			case asciiEqualFold(s, "granted"):
				st = cmGranted
			case asciiEqualFold(s, "denied"):
				st = cmDenied
			default:
				return fmt.Errorf("%w: consent mode value must be granted or denied", errType)
			}
		default:
			return fmt.Errorf("%w: consent mode value must be granted or denied", errType)
		}
		if st != cmUnset {
			x.cm[i] = st
			x.hasCM = true
		}
	}
	_, err = dec.ReadToken()
	return err
}
