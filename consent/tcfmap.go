package consent

import (
	"fmt"
	"slices"

	"github.com/vigie-dev/vigie/consent/gpp"
	"github.com/vigie-dev/vigie/consent/tcf"
)

// TCFMapping maps IAB TCF v2.2 purposes (and optionally Vigie's own vendor
// id) to Vigie's purposes. TCF v2.2 purposes: 1 store and/or access
// information on a device, 2 use limited data to select advertising, 3
// create profiles for personalised advertising, 4 use profiles to select
// personalised advertising, 5 create profiles to personalise content, 6
// use profiles to select personalised content, 7 measure advertising
// performance, 8 measure content performance, 9 understand audiences
// through statistics, 10 develop and improve services, 11 use limited data
// to select content (https://iabeurope.eu/iab-europe-transparency-consent-framework-policies/).
type TCFMapping struct {
	// VendorID is Vigie's GVL vendor id on this site. 0 (default) means
	// Vigie runs as the publisher's own first-party tool and only the
	// purpose signals count. When set, the vendor's own consent (or
	// legitimate interest, where allowed) is required too and publisher
	// restrictions for it apply.
	VendorID int `yaml:"vendor_id,omitempty"`
	// PublisherTC, with no VendorID, reads the publisher TC segment
	// (the publisher's own purposes) instead of the core purpose signals
	// when the string has one. Default false: many CMPs emit that segment
	// empty, which would deny everything.
	PublisherTC bool `yaml:"publisher_tc,omitempty"`
	// Purposes lists, per Vigie purpose, the TCF purposes that must all be
	// allowed to grant it. Default: DefaultTCFPurposes().
	Purposes map[Purpose][]int `yaml:"purposes"`
	// LegitimateInterest lists the TCF purposes for which legitimate
	// interest (instead of consent) suffices. TCF v2.2 forbids it for
	// purposes 1 and 3-6. Default: none (consent only, privacy first).
	LegitimateInterest []int `yaml:"legitimate_interest,omitempty"`
}

// DefaultTCFPurposes returns the default TCF purpose mapping. Purpose 1
// is needed for any processing that reads or sets the identifier cookie,
// so every entry includes it:
//
//   - analytics ← 1, 8, 9, 10 (measure content, audience statistics,
//     improve the site: what our analytics purpose describes);
//   - personalization ← 1, 5, 6 (personalised content profile and use);
//   - marketing ← 1, 2, 3, 4, 7 (ads, personalised-ads profile and use,
//     ad measurement: marketing includes retargeting).
func DefaultTCFPurposes() map[Purpose][]int {
	return map[Purpose][]int{
		Analytics:       {1, 8, 9, 10},
		Personalization: {1, 5, 6},
		Marketing:       {1, 2, 3, 4, 7},
	}
}

// noLegitimateInterest are the TCF v2.2 purposes for which legitimate
// interest is not a permitted legal basis.
var noLegitimateInterest = []int{1, 3, 4, 5, 6}

// maxTCFPurpose is the largest TCF purpose id the string can carry.
const maxTCFPurpose = 24

func (m TCFMapping) validate() []error {
	var errs []error
	if m.VendorID < 0 || m.VendorID > 65535 {
		errs = append(errs, fmt.Errorf("%w: tcf vendor_id must be 0-65535", ErrInvalidPolicy))
	}
	for pur, ids := range m.Purposes {
		if index(string(pur), false) < 0 {
			errs = append(errs, fmt.Errorf("%w: %q in tcf purposes", ErrUnknownPurpose, pur))
		}
		if pur == Necessary {
			errs = append(errs, fmt.Errorf("%w: necessary cannot be mapped to TCF purposes", ErrInvalidPolicy))
		}
		for _, id := range ids {
			if id < 1 || id > maxTCFPurpose {
				errs = append(errs, fmt.Errorf("%w: tcf purpose %d out of range 1-%d", ErrInvalidPolicy, id, maxTCFPurpose))
			}
		}
	}
	for _, id := range m.LegitimateInterest {
		if slices.Contains(noLegitimateInterest, id) || id < 1 || id > maxTCFPurpose {
			errs = append(errs, fmt.Errorf("%w: legitimate interest is not allowed for tcf purpose %d", ErrInvalidPolicy, id))
		}
	}
	return errs
}

// allowed reports whether TCF purpose id is allowed for Vigie by t under m.
func (m TCFMapping) allowed(t *tcf.TCString, id int) bool {
	liOK := slices.Contains(m.LegitimateInterest, id)
	if m.VendorID == 0 {
		if pub := t.Publisher; pub != nil && m.PublisherTC {
			return pub.Consents.Has(id) || liOK && pub.LITransparency.Has(id)
		}
		return t.PurposeConsent(id) || liOK && t.PurposeLI(id)
	}
	v := m.VendorID
	consent := t.PurposeConsent(id) && t.VendorConsent(v)
	li := liOK && t.PurposeLI(id) && t.VendorLI(v)
	if rt, ok := t.Restriction(id, v); ok {
		switch rt {
		case tcf.NotAllowed:
			return false
		case tcf.RequireConsent:
			return consent
		case tcf.RequireLI:
			return li
		}
	}
	return consent || li
}

// tcfSignal maps a decoded TC string to a SourceTCF signal: a mapped
// purpose is granted when every one of its TCF purposes is allowed, and
// denied otherwise.
func tcfSignal(t *tcf.TCString, p Policy) Signal {
	sig := Signal{Source: SourceTCF}
	for pur, ids := range p.TCF.Purposes {
		if len(ids) == 0 {
			continue
		}
		ok := true
		for _, id := range ids {
			if !p.TCF.allowed(t, id) {
				ok = false
				break
			}
		}
		setFlag(&sig, index(string(pur), false), ok)
	}
	return sig
}

// FromTCF decodes a TCF v2.2 TC string into a SourceTCF signal through
// p.TCF. When gdprApplies is false the string is ignored (empty signal).
// An undecodable string is an error wrapping ErrInvalidConsent and
// tcf.ErrInvalid, and gives an empty signal.
func FromTCF(tcString string, gdprApplies bool, p Policy) (Signal, error) {
	if !gdprApplies {
		return Signal{Source: SourceTCF}, nil
	}
	t, err := tcf.Decode(tcString)
	if err != nil {
		return Signal{Source: SourceTCF}, fmt.Errorf("%w: %w", ErrInvalidConsent, err)
	}
	return tcfSignal(t, p), nil
}

// FromGPP parses a GPP string into a SourceGPP signal. sid lists the
// applicable sections (the gpp_sid parameter); nil means every section in
// the string. The applicable TCF EU v2 section maps as FromTCF does; an
// applicable US section (usnat, usca, usva, usco, usut, usct) with any
// sale, sharing or targeted-advertising opt-out, or GPC, denies marketing.
// An unparsable string is an error wrapping ErrInvalidConsent and
// gpp.ErrInvalid, and gives an empty signal.
func FromGPP(gppString string, sid []int, p Policy) (Signal, error) {
	g, err := gpp.Parse(gppString)
	if err != nil {
		return Signal{Source: SourceGPP}, fmt.Errorf("%w: %w", ErrInvalidConsent, err)
	}
	applies := func(id int) bool { return sid == nil || slices.Contains(sid, id) }
	sig := Signal{Source: SourceGPP}
	if g.TCF != nil && applies(gpp.SectionTCFEUv2) {
		t := tcfSignal(g.TCF, p)
		sig.Granted, sig.Denied = t.Granted, t.Denied
	}
	for _, u := range g.US {
		if applies(u.Section) && u.OptedOut() {
			setFlag(&sig, index(string(Marketing), false), false)
		}
	}
	return sig, nil
}

// parseSID parses gpp_sid, wrapping errors in ErrInvalidConsent.
func parseSID(v string) ([]int, error) {
	sid, err := gpp.ParseSID(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConsent, err)
	}
	return sid, nil
}
