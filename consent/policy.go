package consent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Policy is a site's consent policy. Start from DefaultPolicy and override
// fields: the zero Policy is not the default (its bools are false).
type Policy struct {
	// Unconsented is the outcome of traffic without an identifying grant:
	// Drop or Anonymous. Default Anonymous.
	Unconsented Outcome `yaml:"unconsented"`
	// Defaults are the purposes granted without any signal (opt-out
	// regimes add purposes here). Default: necessary only.
	Defaults Set `yaml:"defaults"`
	// Identifying are the purposes any one of which makes an event
	// pseudonymous. Default: analytics, personalization, marketing.
	Identifying Set `yaml:"identifying"`
	// HonorGPC makes Sec-GPC: 1 deny marketing, even over an explicit
	// grant. Default true.
	HonorGPC bool `yaml:"honor_gpc"`
	// HonorDNT makes DNT: 1 deny marketing, even over an explicit grant.
	// Default true.
	HonorDNT bool `yaml:"honor_dnt"`
	// Categories maps a consent-management category (Segment
	// categoryPreferences key; case-insensitive) to purposes. Default:
	// DefaultCategories().
	Categories map[string][]Purpose `yaml:"categories"`
	// TCF maps IAB TCF v2.2 purposes (TC strings, and the TCF section of
	// GPP strings) to ours. Default: DefaultTCFPurposes(), no vendor id,
	// no legitimate interest.
	TCF TCFMapping `yaml:"tcf"`
	// ConsentMode maps each purpose to the Google Consent Mode v2 signals
	// (ad_storage, analytics_storage, ad_user_data, ad_personalization,
	// functionality_storage, personalization_storage, security_storage)
	// that must all be granted to grant it; any one denied denies it.
	// Default: DefaultConsentMode().
	ConsentMode map[Purpose][]string `yaml:"consent_mode"`
	// ConsentManagement maps, per consent manager (RudderStack's
	// context.consentManagement.provider: oneTrust, ketch, iubenda,
	// custom; case-insensitive), its consent ids to purposes. An id not
	// found there is looked up in Categories. Default:
	// DefaultConsentManagement().
	ConsentManagement map[string]map[string][]Purpose `yaml:"consent_management"`
}

// DefaultPolicy returns the default policy documented on Policy's fields.
func DefaultPolicy() Policy {
	return Policy{
		Unconsented: Anonymous,
		Defaults:    NewSet(Necessary),
		Identifying: NewSet(Analytics, Personalization, Marketing),
		HonorGPC:    true,
		HonorDNT:    true,
		Categories:  DefaultCategories(),
		TCF:         TCFMapping{Purposes: DefaultTCFPurposes()},
		ConsentMode: DefaultConsentMode(),

		ConsentManagement: DefaultConsentManagement(),
	}
}

// DefaultCategories returns the default category map: plain names
// (analytics, performance, personalization, functional, advertising,
// marketing, targeting, necessary, strictlynecessary) and OneTrust's group
// ids, as Segment and RudderStack send them (C0001 necessary, C0002
// performance → analytics, C0003 functional → personalization, C0004
// targeting and C0005 social media → marketing).
func DefaultCategories() map[string][]Purpose {
	return map[string][]Purpose{
		"necessary":         {Necessary},
		"strictlynecessary": {Necessary},
		"analytics":         {Analytics},
		"performance":       {Analytics},
		"personalization":   {Personalization},
		"functional":        {Personalization},
		"advertising":       {Marketing},
		"marketing":         {Marketing},
		"targeting":         {Marketing},
		"C0001":             {Necessary},
		"C0002":             {Analytics},
		"C0003":             {Personalization},
		"C0004":             {Marketing},
		"C0005":             {Marketing},
	}
}

// Validate reports every problem of p, each wrapping ErrInvalidPolicy (or
// ErrUnknownPurpose for an unregistered purpose in Categories).
func (p Policy) Validate() error {
	var errs []error
	if p.Unconsented != Drop && p.Unconsented != Anonymous {
		errs = append(errs, fmt.Errorf("%w: unconsented must be drop or anonymous, not %s", ErrInvalidPolicy, p.Unconsented))
	}
	if p.Defaults.Has(Sensitive) {
		errs = append(errs, fmt.Errorf("%w: sensitive cannot be a default purpose (special categories need explicit consent, Art. 9(2)(a))", ErrInvalidPolicy))
	}
	if p.Identifying.Has(Necessary) {
		errs = append(errs, fmt.Errorf("%w: necessary cannot be identifying (it is always granted)", ErrInvalidPolicy))
	}
	keys := make([]string, 0, len(p.Categories))
	for k := range p.Categories {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seen := make(map[string]string, len(keys))
	for _, k := range keys {
		lk := strings.ToLower(k)
		if strings.TrimSpace(k) == "" {
			errs = append(errs, fmt.Errorf("%w: empty category name", ErrInvalidPolicy))
		} else if prev, dup := seen[lk]; dup {
			errs = append(errs, fmt.Errorf("%w: categories %q and %q differ only in case", ErrInvalidPolicy, prev, k))
		}
		seen[lk] = k
		for _, pur := range p.Categories[k] {
			if index(string(pur), false) < 0 {
				errs = append(errs, fmt.Errorf("%w: %q in category %q", ErrUnknownPurpose, pur, k))
			}
		}
	}
	errs = append(errs, p.TCF.validate()...)
	errs = append(errs, validateConsentManagement(p.ConsentManagement)...)
	for pur, names := range p.ConsentMode {
		if index(string(pur), false) < 0 {
			errs = append(errs, fmt.Errorf("%w: %q in consent_mode", ErrUnknownPurpose, pur))
		}
		if pur == Necessary {
			errs = append(errs, fmt.Errorf("%w: necessary cannot be mapped to consent mode", ErrInvalidPolicy))
		}
		for _, n := range names {
			if cmIndex(n) < 0 {
				errs = append(errs, fmt.Errorf("%w: unknown consent mode signal %q", ErrInvalidPolicy, n))
			}
		}
	}
	return errors.Join(errs...)
}

// category returns the purposes of a category, matching keys exactly
// first, then lower-cased, then ignoring ASCII case. It does not allocate.
func (p Policy) category(name string) ([]Purpose, bool) {
	if ps, ok := p.Categories[name]; ok {
		return ps, true
	}
	var buf [64]byte
	if len(name) <= len(buf) {
		lower := buf[:len(name)]
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		if ps, ok := p.Categories[string(lower)]; ok {
			return ps, true
		}
	}
	for k, ps := range p.Categories {
		if asciiEqualFold(k, name) {
			return ps, true
		}
	}
	return nil, false
}

// validateConsentManagement checks the consent id maps of
// Policy.ConsentManagement.
func validateConsentManagement(m map[string]map[string][]Purpose) []error {
	var errs []error
	providers := make([]string, 0, len(m))
	for k := range m {
		providers = append(providers, k)
	}
	slices.Sort(providers)
	seen := make(map[string]string, len(providers))
	for _, prov := range providers {
		lp := strings.ToLower(prov)
		if strings.TrimSpace(prov) == "" {
			errs = append(errs, fmt.Errorf("%w: consent_management: empty provider name", ErrInvalidPolicy))
		} else if prev, dup := seen[lp]; dup {
			errs = append(errs, fmt.Errorf("%w: consent_management: providers %q and %q differ only in case", ErrInvalidPolicy, prev, prov))
		}
		seen[lp] = prov
		for id, ps := range m[prov] {
			if strings.TrimSpace(id) == "" {
				errs = append(errs, fmt.Errorf("%w: consent_management.%s: empty consent id", ErrInvalidPolicy, prov))
			}
			for _, pur := range ps {
				if index(string(pur), false) < 0 {
					errs = append(errs, fmt.Errorf("%w: %q in consent_management.%s.%s", ErrUnknownPurpose, pur, prov, id))
				}
			}
		}
	}
	return errs
}

// ExemptPurposes are the purposes the CNIL's audience-measurement consent
// exemption covers (délibération 2020-091): necessary and analytics. A
// site in that mode limits every decision to them (Decision.Limit).
func ExemptPurposes() Set { return NewSet(Necessary, Analytics) }
