package consent

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
)

// Consent management providers of RudderStack's JavaScript SDK v3, as its
// context.consentManagement.provider names them.
const (
	ProviderOneTrust = "oneTrust"
	ProviderKetch    = "ketch"
	ProviderIubenda  = "iubenda"
	ProviderCustom   = "custom"
)

// DefaultConsentManagement returns the default consent id maps per
// provider (see Policy.ConsentManagement). Only iubenda needs one: its
// purpose ids are 1 strictly necessary → necessary, 2 basic interactions
// and functionalities and 3 experience enhancement → personalization, 4
// measurement → analytics, 5 targeting and advertising → marketing.
// OneTrust's group ids (C0001–C0005) and plain names (analytics,
// marketing, functional…) are in DefaultCategories, which every provider
// falls back on; Ketch purpose codes are chosen by each organization and
// match there when they are plain names.
func DefaultConsentManagement() map[string]map[string][]Purpose {
	return map[string]map[string][]Purpose{
		ProviderIubenda: {
			"1": {Necessary},
			"2": {Personalization},
			"3": {Personalization},
			"4": {Analytics},
			"5": {Marketing},
		},
	}
}

// maxConsentIDs bounds the ids read from each list of consentManagement.
const maxConsentIDs = 256

// FromConsentManagement reads RudderStack's context.consentManagement
// object, which its JavaScript SDK v3 adds to every event when consent
// management is enabled:
//
//	{"provider": "oneTrust", "allowedConsentIds": ["C0001", "C0002"],
//	 "deniedConsentIds": ["C0004"], "resolutionStrategy": "and"}
//
// into a SourceConsentManagement signal. Each consent id (a string, or a
// number taken as its text) is looked up in p.ConsentManagement under the
// provider (provider and id ignore ASCII case), then in p.Categories;
// unknown ids are ignored. With resolutionStrategy "or" a purpose is
// granted when any of its ids is allowed and denied only when none is;
// otherwise ("and", or none) any denied id denies it, whatever else is
// allowed. Keys ignore ASCII case, other keys are ignored, null counts as
// absent. Malformed JSON or a value of the wrong type is an error wrapping
// ErrInvalidConsent, with an empty signal.
func FromConsentManagement(raw []byte, p Policy) (Signal, error) {
	out := Signal{Source: SourceConsentManagement}
	if len(bytes.TrimSpace(raw)) == 0 {
		return out, nil
	}
	pr := readers.Get().(*payloadReader)
	defer func() {
		pr.r.Reset(nil)
		pr.dec.Reset(&pr.r)
		readers.Put(pr)
	}()
	pr.r.Reset(raw)
	pr.dec.Reset(&pr.r)
	cm, err := readConsentManagement(&pr.dec)
	if err != nil {
		return out, invalidJSON(err)
	}
	ids := p.consentIDs(cm.provider)
	lookup := func(id string) []Purpose {
		if ps, ok := lookupFold(ids, id); ok {
			return ps
		}
		ps, _ := p.category(id)
		return ps
	}
	var granted, denied uint64
	for _, id := range cm.allowed {
		for _, pur := range lookup(id) {
			if i := index(string(pur), false); i >= 0 {
				granted |= 1 << i
			}
		}
	}
	for _, id := range cm.denied {
		for _, pur := range lookup(id) {
			if i := index(string(pur), false); i >= 0 {
				denied |= 1 << i
			}
		}
	}
	if asciiEqualFold(cm.strategy, "or") {
		denied &^= granted
	} else {
		granted &^= denied
	}
	out.Granted.bits, out.Denied.bits = granted, denied
	return out, nil
}

// consentManagement is the part of context.consentManagement Vigie reads.
type consentManagement struct {
	provider, strategy string
	allowed, denied    []string
}

func readConsentManagement(dec *jsontext.Decoder) (consentManagement, error) {
	var cm consentManagement
	tok, err := dec.ReadToken()
	if err != nil {
		return cm, err
	}
	switch tok.Kind() {
	case 'n':
		return cm, checkEOF(dec)
	case '{':
	default:
		return cm, fmt.Errorf("%w: consentManagement must be an object", errType)
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return cm, err
		}
		switch name := tok.String(); {
		case asciiEqualFold(name, "provider"):
			cm.provider, _, err = readString(dec)
		case asciiEqualFold(name, "resolutionStrategy"):
			cm.strategy, _, err = readString(dec)
		case asciiEqualFold(name, "allowedConsentIds"):
			cm.allowed, err = readConsentIDs(dec, cm.allowed)
		case asciiEqualFold(name, "deniedConsentIds"):
			cm.denied, err = readConsentIDs(dec, cm.denied)
		default:
			err = dec.SkipValue()
		}
		if err != nil {
			return cm, err
		}
	}
	if _, err := dec.ReadToken(); err != nil { // '}'
		return cm, err
	}
	return cm, checkEOF(dec)
}

// readConsentIDs reads an array of consent ids (strings or numbers) or
// null, appending to ids.
func readConsentIDs(dec *jsontext.Decoder, ids []string) ([]string, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return ids, err
	}
	switch tok.Kind() {
	case 'n':
		return ids, nil
	case '[':
	default:
		return ids, fmt.Errorf("%w: consent ids must be an array", errType)
	}
	for dec.PeekKind() != ']' {
		tok, err := dec.ReadToken()
		if err != nil {
			return ids, err
		}
		var id string
		switch tok.Kind() {
		case '"':
			id = tok.String()
		case '0':
			f, err := tok.Float()
			if err != nil || f != float64(int64(f)) || f < -1e15 || f > 1e15 {
				return ids, fmt.Errorf("%w: numeric consent ids must be integers", errType)
			}
			id = strconv.FormatInt(int64(f), 10)
		default:
			return ids, fmt.Errorf("%w: consent ids must be strings", errType)
		}
		if len(ids) >= maxConsentIDs {
			return ids, fmt.Errorf("%w: more than %d consent ids", errType, maxConsentIDs)
		}
		ids = append(ids, id)
	}
	_, err = dec.ReadToken()
	return ids, err
}

// consentIDs is the consent id map of provider, matched ignoring ASCII
// case; nil when there is none.
func (p Policy) consentIDs(provider string) map[string][]Purpose {
	if provider == "" {
		return nil
	}
	if m, ok := p.ConsentManagement[provider]; ok {
		return m
	}
	for k, m := range p.ConsentManagement {
		if asciiEqualFold(k, provider) {
			return m
		}
	}
	return nil
}

// lookupFold finds key in m exactly, else ignoring ASCII case.
func lookupFold(m map[string][]Purpose, key string) ([]Purpose, bool) {
	if ps, ok := m[key]; ok {
		return ps, true
	}
	for k, ps := range m {
		if asciiEqualFold(k, key) {
			return ps, true
		}
	}
	return nil, false
}
