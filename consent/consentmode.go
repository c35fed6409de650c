package consent

import (
	"fmt"
	"strings"
)

// Google Consent Mode v2 signals, in the order gcd encodes the first four.
// Sources: Google's consent mode reference
// (https://support.google.com/tagmanager/answer/13802165) for the names
// and meanings; the gcs/gcd hit parameters are not documented by Google,
// their format is taken from observed hits as described by Markus Baersch
// and Simo Ahava (https://www.simoahava.com/analytics/consent-mode-v2-google-tags/)
// and https://pietromingotti.com/consent-mode-parameters.
var cmSignals = [...]string{
	"ad_storage", "analytics_storage", "ad_user_data", "ad_personalization",
	"functionality_storage", "personalization_storage", "security_storage",
}

// cmState is the state of each Consent Mode signal (index as cmSignals).
type cmState [len(cmSignals)]int8

// Signal states.
const (
	cmUnset   int8 = 0
	cmGranted int8 = 1
	cmDenied  int8 = -1
)

func cmIndex(name string) int {
	for i, s := range cmSignals {
		if asciiEqualFold(s, name) {
			return i
		}
	}
	return -1
}

// merge combines two states conservatively: denied if either denies,
// granted if one grants and the other does not deny.
func (s *cmState) merge(o cmState) {
	for i, v := range o {
		switch {
		case v == cmDenied:
			s[i] = cmDenied
		case v == cmGranted && s[i] == cmUnset:
			s[i] = cmGranted
		}
	}
}

// DefaultConsentMode returns the default Consent Mode mapping (see
// Policy.ConsentMode): analytics ← analytics_storage; marketing ←
// ad_storage, ad_user_data and ad_personalization (marketing includes
// retargeting, which is what ad_personalization governs);
// personalization ← personalization_storage (a non-ads Consent Mode
// signal that only payload objects carry).
func DefaultConsentMode() map[Purpose][]string {
	return map[Purpose][]string{
		Analytics:       {"analytics_storage"},
		Marketing:       {"ad_storage", "ad_user_data", "ad_personalization"},
		Personalization: {"personalization_storage"},
	}
}

// parseGCS decodes the gcs hit parameter: "G1" then one character for
// ad_storage and one for analytics_storage, '1' granted, '0' denied, '-'
// not set (e.g. "G100", "G111", "G101", "G1--").
func parseGCS(v string) (cmState, error) {
	var s cmState
	if len(v) != 4 || v[:2] != "G1" {
		return s, fmt.Errorf("%w: gcs must be G1 and two flags", ErrInvalidConsent)
	}
	for i, c := range []byte(v[2:]) {
		switch c {
		case '1':
			s[i] = cmGranted
		case '0':
			s[i] = cmDenied
		case '-':
		default:
			return cmState{}, fmt.Errorf("%w: gcs flag must be 0, 1 or -", ErrInvalidConsent)
		}
	}
	return s, nil
}

// gcdLetter maps a gcd letter to the final state of a signal. The letter
// combines the default and the update commands; the final state is the
// update when there is one:
//
//	l  not set
//	p  denied by default, no update          → denied
//	q  denied by default and by update       → denied
//	t  granted by default, no update         → granted
//	r  denied by default, granted by update  → granted
//	m  denied by update, no default          → denied
//	n  granted by update, no default         → granted
//	u  granted by default, denied by update  → denied
//	v  granted by default and by update      → granted
//
// Any other letter (e.g. 'e', seen in the wild with no agreed meaning) is
// treated as not set.
func gcdLetter(c byte) int8 {
	switch c {
	case 'p', 'q', 'm', 'u':
		return cmDenied
	case 't', 'r', 'n', 'v':
		return cmGranted
	}
	return cmUnset
}

// parseGCD decodes the gcd hit parameter: ten characters, digits at even
// offsets 0, 1, 3, 5, 7, 9 (a version and separators, e.g. "11p1t1p1t5",
// "13l3l3l3l1") and letters at 2, 4, 6, 8 for ad_storage,
// analytics_storage, ad_user_data and ad_personalization.
func parseGCD(v string) (cmState, error) {
	var s cmState
	if len(v) != 10 {
		return s, fmt.Errorf("%w: gcd must have 10 characters", ErrInvalidConsent)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		letter := i >= 2 && i%2 == 0
		switch {
		case letter && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'):
			s[i/2-1] = gcdLetter(c)
		case !letter && '0' <= c && c <= '9':
		default:
			return cmState{}, fmt.Errorf("%w: malformed gcd", ErrInvalidConsent)
		}
	}
	return s, nil
}

// FromConsentMode reads the Consent Mode v2 hit parameters gcs and gcd
// (either may be empty) into a SourceConsentMode signal through
// p.ConsentMode. When both are present a denial in either wins. A
// malformed value is an error wrapping ErrInvalidConsent and gives an
// empty signal.
func FromConsentMode(gcs, gcd string, p Policy) (Signal, error) {
	var st cmState
	if gcs != "" {
		s, err := parseGCS(strings.TrimSpace(gcs))
		if err != nil {
			return Signal{Source: SourceConsentMode}, err
		}
		st.merge(s)
	}
	if gcd != "" {
		s, err := parseGCD(strings.TrimSpace(gcd))
		if err != nil {
			return Signal{Source: SourceConsentMode}, err
		}
		st.merge(s)
	}
	return cmSignal(st, p), nil
}

// cmSignal maps signal states to purposes: a purpose is denied when any of
// its signals is denied, granted when all are granted, else untouched.
func cmSignal(st cmState, p Policy) Signal {
	sig := Signal{Source: SourceConsentMode}
	for pur, names := range p.ConsentMode {
		if len(names) == 0 {
			continue
		}
		all, denied := true, false
		for _, n := range names {
			i := cmIndex(n)
			if i < 0 {
				all = false
				continue
			}
			all = all && st[i] == cmGranted
			denied = denied || st[i] == cmDenied
		}
		switch {
		case denied:
			setFlag(&sig, index(string(pur), false), false)
		case all:
			setFlag(&sig, index(string(pur), false), true)
		}
	}
	return sig
}
