package config

import (
	"fmt"
	"slices"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/sensitive"
)

// SiteSensitive is a site's handling of special categories of personal
// data (GDPR Art. 9 and 10, and national identification numbers), which
// Vigie detects in property and trait names, in values, and in the page
// context (see proxy/sensitive).
type SiteSensitive struct {
	// Actions maps a category (health, ethnic_origin, religion,
	// political_opinion, trade_union, sex_life, biometric, genetic,
	// criminal_record, national_id) to what happens to an event in which it
	// is detected: anonymous (kept anonymous only: never profiled, synced
	// or modelled), drop_field (what matched is removed), drop_event
	// (nothing stored) or require_consent (anonymous unless the visitor
	// explicitly granted the purpose "sensitive"). Default: anonymous for
	// every category but national_id, drop_field.
	Actions map[string]string `yaml:"actions"`
	// SensitivePaths declares the site's own sensitive sections: a URL path
	// pattern ("/clinic/*": the section and everything below it; "*" as a
	// segment: any one segment) mapped to its category. Default none.
	SensitivePaths map[string]string `yaml:"sensitive_paths"`
	// Layers switches the keyword layers on or off. Default: all on.
	Layers SensitiveLayers `yaml:"layers"`
}

// SensitiveLayers switches the detection layers (sensitive_paths always
// apply).
type SensitiveLayers struct {
	// Names: property and trait names, at any depth. Default true.
	Names *bool `yaml:"names"`
	// Values: health terms in free-text values and national
	// identification numbers. Default true.
	Values *bool `yaml:"values"`
	// Page: URL path, title and page name keywords. Default true.
	Page *bool `yaml:"page"`
}

// fieldProblem is a validation problem of a field under a site.
type fieldProblem struct{ field, msg string }

// SensitivePolicy turns the site's sensitive section into a
// sensitive.Policy.
func (s Site) SensitivePolicy() (sensitive.Policy, error) {
	p, probs := s.sensitivePolicy()
	if len(probs) > 0 {
		return p, fmt.Errorf("%w: sensitive.%s: %s", ErrInvalid, probs[0].field, probs[0].msg)
	}
	return p, nil
}

func (s Site) sensitivePolicy() (sensitive.Policy, []fieldProblem) {
	p := sensitive.DefaultPolicy()
	var probs []fieldProblem
	cfg := s.Sensitive
	for _, name := range sortedKeys(cfg.Actions) {
		c, err := sensitive.ParseCategory(name)
		if err != nil {
			probs = append(probs, fieldProblem{"actions." + name, err.Error()})
			continue
		}
		a, err := sensitive.ParseAction(cfg.Actions[name])
		if err != nil {
			probs = append(probs, fieldProblem{"actions." + name, err.Error()})
			continue
		}
		p.Actions[c] = a
	}
	for _, pattern := range sortedKeys(cfg.SensitivePaths) {
		c, err := sensitive.ParseCategory(cfg.SensitivePaths[pattern])
		if err != nil {
			probs = append(probs, fieldProblem{fmt.Sprintf("sensitive_paths[%q]", pattern), err.Error()})
			continue
		}
		p.Paths = append(p.Paths, sensitive.PathRule{Pattern: pattern, Category: c})
	}
	if _, err := sensitive.New(sensitive.Policy{Paths: p.Paths}); err != nil {
		probs = append(probs, fieldProblem{"sensitive_paths", err.Error()})
	}
	for _, l := range []struct {
		v   *bool
		dst *bool
	}{{cfg.Layers.Names, &p.Names}, {cfg.Layers.Values, &p.Values}, {cfg.Layers.Page, &p.Page}} {
		if l.v != nil {
			*l.dst = *l.v
		}
	}
	return p, probs
}

// needsSensitivePurpose reports whether a site asks for the purpose
// "sensitive" (a require_consent action).
func (c *Config) needsSensitivePurpose() bool {
	return slices.ContainsFunc(c.Sites, func(s Site) bool {
		p, _ := s.sensitivePolicy()
		return p.RequiresConsent()
	})
}

// validateSensitive registers the purpose "sensitive" when a site needs it
// and checks every site's sensitive section.
func (c *Config) validateSensitive() []error {
	var errs []error
	if c.needsSensitivePurpose() {
		if err := consent.Register(consent.Sensitive); err != nil {
			errs = append(errs, fmt.Errorf("%w: sites: the purpose %q: %v", ErrInvalid, consent.Sensitive, err))
		}
	}
	for i, s := range c.Sites {
		_, probs := s.sensitivePolicy()
		for _, p := range probs {
			errs = append(errs, fmt.Errorf("%w: sites[%d].sensitive.%s: %s", ErrInvalid, i, p.field, p.msg))
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
