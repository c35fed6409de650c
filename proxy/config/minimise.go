package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

// validateSiteMinimisation checks a site's data-minimisation settings (f
// names the site in errors): mode, anonymous time granularity and
// identifier patterns, pseudonym rotation, cookie lifetime, exported click
// ids and, in cnil_exempt mode, every condition of the exemption.
func (c *Config) validateSiteMinimisation(f string, s Site, bad func(field, format string, a ...any)) {
	switch s.Mode {
	case "", ModeStandard, ModeCNILExempt:
	default:
		bad(f+".mode", "%q is not %s or %s", s.Mode, ModeStandard, ModeCNILExempt)
	}
	if g := time.Duration(s.Anonymous.TimeGranularity); g < 0 || g > 0 && (g < time.Second || (24*time.Hour)%g != 0) {
		bad(f+".anonymous.time_granularity", "%v must be at least 1s and divide 24h (e.g. 15m, 1h, 6h, 24h)", g)
	}
	if _, err := pseudonymize.CompilePathPatterns(s.Anonymous.IDPathPatterns); err != nil {
		bad(f+".anonymous.id_path_patterns", "%v", err)
	}
	if _, err := pseudonymize.ParseRotation(s.Consent.PseudonymRotation); err != nil {
		bad(f+".consent.pseudonym_rotation", "%q is not never, daily or monthly", s.Consent.PseudonymRotation)
	}
	if l := time.Duration(s.Consent.CookieLifetime); l < 0 || l > MaxCookieLifetime {
		bad(f+".consent.cookie_lifetime", "%v must be positive and at most %s (13 months)", l, days(MaxCookieLifetime))
	}
	for _, id := range s.ExportClickIDs {
		if strings.TrimSpace(id) == "" {
			bad(f+".export_click_ids", "empty parameter name")
		}
	}
	if s.CNILExempt() {
		for _, cond := range c.CNILConditions(s) {
			if !cond.Met {
				bad(f+".mode", "cnil_exempt: %s: %s", cond.Name, cond.Detail)
			}
		}
	}
}

// CNILCondition is one condition of the CNIL's audience-measurement
// consent exemption (délibération 2020-091, and its guide for Matomo), as
// a site's configuration meets it or not.
type CNILCondition struct {
	// Name is the condition, short and stable ("data ≤ 25 months").
	Name string
	// Met is false when the configuration breaks the condition (Vigie then
	// refuses it).
	Met bool
	// AtStart is true when the file alone cannot decide and Vigie checks
	// the condition again when the plugins start (their manifests).
	AtStart bool
	// Manual is true for a condition Vigie cannot check at all (the site's
	// own to do), as Matomo's CNIL policy lists its "unknown settings".
	Manual bool
	// Detail says what was checked, or why it is not met.
	Detail string
}

// CNIL exemption bounds.
const (
	// CNILMaxCookieLifetime is the longest lifetime of the exempt tracker:
	// 13 months.
	CNILMaxCookieLifetime = 395 * 24 * time.Hour
	// CNILMaxRetention is the longest retention of the collected data:
	// 25 months (of 30.44 days).
	CNILMaxRetention = 761 * 24 * time.Hour
)

// safeBuiltins are the built-in plugins that may run beside a cnil_exempt
// site, and why each receives no identifier of it.
var safeBuiltins = map[string]string{
	"geoip":    "reads the truncated ip_prefix only and keeps nothing",
	"segments": "gets only events granting a profile purpose, which this site never grants",
}

// CNILConditions reports, condition by condition, whether s (with c's
// retention and plugins) meets the CNIL audience-measurement exemption.
// What the configuration cannot break (no user id, truncated IPs, no
// cross-site linking) is enforced on every event and reported as met.
func (c *Config) CNILConditions(s Site) []CNILCondition {
	var out []CNILCondition
	add := func(name string, met bool, detail string, a ...any) {
		out = append(out, CNILCondition{Name: name, Met: met, Detail: fmt.Sprintf(detail, a...)})
	}

	var extra []string
	for _, p := range s.Consent.Defaults {
		if !consent.ExemptPurposes().Has(p) {
			extra = append(extra, string(p))
		}
	}
	if len(extra) > 0 {
		add("analytics only, first party", false, "consent.defaults grants %s: only necessary and analytics may be granted", strings.Join(extra, ", "))
	} else {
		add("analytics only, first party", true, "every decision limited to necessary and analytics; events stay in this Vigie")
	}

	add("no user id", true, "userId, groupId, previousId and traits dropped; identify, group and alias not kept")

	var profiled []string
	for _, p := range c.PluginRuntime.ProfilePurposes {
		if consent.ExemptPurposes().Has(p) {
			profiled = append(profiled, string(p))
		}
	}
	if len(profiled) > 0 {
		add("no profiling, no CRM", false, "plugin_runtime.profile_purposes has %s: this site's visitors would be profiled", strings.Join(profiled, ", "))
	} else {
		add("no profiling, no CRM", true, "no profile purpose can be granted: no profile, segment or CRM sync")
	}

	plugins := CNILCondition{Name: "no plugin receiving identifiers", Met: true}
	var safe, atStart []string
	for _, p := range c.Plugins {
		if p.Disabled {
			continue
		}
		if why, ok := safeBuiltins[p.Name]; ok && p.Path == "" {
			safe = append(safe, p.Name+" ("+why+")")
			continue
		}
		atStart = append(atStart, p.Name)
	}
	switch {
	case len(atStart) > 0:
		plugins.AtStart = true
		plugins.Detail = fmt.Sprintf("%s checked at start: refused unless its manifest's filter leaves this site out", strings.Join(atStart, ", "))
	case len(safe) > 0:
		plugins.Detail = strings.Join(safe, "; ")
	default:
		plugins.Detail = "no plugin"
	}
	out = append(out, plugins)

	geo := "pseudonymous events keep a /16 (IPv6 /32) prefix, anonymous events none; location: country"
	if s.Anonymous.Region {
		geo += " and region"
	}
	postal := ""
	for _, p := range c.Plugins {
		if !p.Disabled && p.Name == "geoip" && p.Path == "" && p.Config["postal"] == true {
			postal = p.Name
		}
	}
	if postal != "" {
		add("IP truncated, location no finer than city", false, "plugin %s adds the postal code (postal: true)", postal)
	} else {
		add("IP truncated, location no finer than city", true, "%s", geo)
	}

	if l := s.CookieLifetime(); l > CNILMaxCookieLifetime {
		add("cookie ≤ 13 months, not extended", false, "consent.cookie_lifetime is %s", days(l))
	} else {
		add("cookie ≤ 13 months, not extended", true, "vigie_id lasts %s from the consent, never extended", days(l))
	}

	var long []string
	for _, k := range []string{"anonymous", string(consent.Necessary), string(consent.Analytics)} {
		r := time.Duration(c.Retention[k])
		if r <= 0 || r > CNILMaxRetention {
			v := "forever"
			if r > 0 {
				v = days(r)
			}
			long = append(long, fmt.Sprintf("retention.%s is %s", k, v))
		}
	}
	if len(long) > 0 {
		add("data ≤ 25 months", false, "%s (at most %s)", strings.Join(long, ", "), days(CNILMaxRetention))
	} else {
		add("data ≤ 25 months", true, "anonymous %s, analytics %s, necessary %s",
			days(time.Duration(c.Retention["anonymous"])), days(time.Duration(c.Retention[string(consent.Analytics)])),
			days(time.Duration(c.Retention[string(consent.Necessary)])))
	}

	add("no cross-site linking", true, "pseudonyms are keyed per site; e-mail hits join no visit (marketing is never granted)")
	out = append(out, CNILCondition{Name: "visitors informed, opt-out offered", Met: true, Manual: true,
		Detail: "the site's to do: say so in its privacy policy and offer an opt-out (vigie('consent', {analytics: false}) records it)"})
	return out
}

// days writes d in days ("395d"), or as a Go duration below a day.
func days(d time.Duration) string {
	if d < 24*time.Hour || d%(24*time.Hour) != 0 {
		return d.String()
	}
	return fmt.Sprintf("%dd", d/(24*time.Hour))
}
