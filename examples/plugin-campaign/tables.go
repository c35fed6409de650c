package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// builtinSources maps source aliases that are not host names to canonical
// sources. Host names ("m.facebook.com", "www.google.fr") need no entry:
// a source containing a dot is matched like a referrer host (see
// referrerHosts and referrerNames). Every canonical name is known.
var builtinSources = map[string]string{
	"fb":         "facebook",
	"ig":         "instagram",
	"insta":      "instagram",
	"yt":         "youtube",
	"tw":         "twitter",
	"ddg":        "duckduckgo",
	"adwords":    "google",
	"googleads":  "google",
	"google_ads": "google",
	"google-ads": "google",
	"linked-in":  "linkedin",
	"lnkd":       "linkedin",
}

// builtinMediums maps medium aliases to the canonical mediums of Google
// Analytics' default channel grouping.
var builtinMediums = map[string]string{
	"ppc": "cpc", "paid": "cpc", "paidsearch": "cpc", "paid-search": "cpc", "paid_search": "cpc", "sem": "cpc",
	"e-mail": "email", "e_mail": "email", "mail": "email", "newsletter": "email",
	"social-network": "social", "social_network": "social", "social-media": "social", "social_media": "social",
	"paid-social": "paid_social", "paidsocial": "paid_social",
	"banner": "display", "cpm": "display",
	"affiliates": "affiliate",
	"organic":    "organic",
	"referral":   "referral",
}

// channel is the source and medium a referrer implies.
type channel struct{ source, medium string }

// Mediums a referrer implies.
const (
	mediumOrganic = "organic"
	mediumSocial  = "social"
)

// referrerHosts matches a whole referrer host (after dropping one of
// hostPrefixes).
var referrerHosts = map[string]channel{
	"t.co":             {"twitter", mediumSocial},
	"x.com":            {"twitter", mediumSocial},
	"lnkd.in":          {"linkedin", mediumSocial},
	"youtu.be":         {"youtube", mediumSocial},
	"duckduckgo.com":   {"duckduckgo", mediumOrganic},
	"search.yahoo.com": {"yahoo", mediumOrganic},
	"search.brave.com": {"brave", mediumOrganic},
	"ecosia.org":       {"ecosia", mediumOrganic},
	"qwant.com":        {"qwant", mediumOrganic},
}

// referrerNames matches a referrer host by its first label, whatever
// domain follows, for services with many country domains (google.fr,
// google.co.uk, yandex.ru). Only the first label counts: mail.google.com
// is not a search.
var referrerNames = map[string]channel{
	"google":    {"google", mediumOrganic},
	"bing":      {"bing", mediumOrganic},
	"yandex":    {"yandex", mediumOrganic},
	"baidu":     {"baidu", mediumOrganic},
	"facebook":  {"facebook", mediumSocial},
	"instagram": {"instagram", mediumSocial},
	"linkedin":  {"linkedin", mediumSocial},
	"twitter":   {"twitter", mediumSocial},
	"reddit":    {"reddit", mediumSocial},
	"pinterest": {"pinterest", mediumSocial},
	"tiktok":    {"tiktok", mediumSocial},
	"youtube":   {"youtube", mediumSocial},
}

// hostPrefixes are dropped from a host before matching: mobile and
// link-shim subdomains of the same service.
var hostPrefixes = []string{"www.", "m.", "l.", "lm.", "mobile."}

// normalize trims and lower-cases s; it does not allocate when s already
// is normalized.
func normalize(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// matchReferrer returns the channel a normalized host implies.
func matchReferrer(host string) (channel, bool) {
	host = strings.TrimSuffix(host, ".")
	for _, p := range hostPrefixes {
		if rest, ok := strings.CutPrefix(host, p); ok {
			host = rest
			break
		}
	}
	if ch, ok := referrerHosts[host]; ok {
		return ch, true
	}
	if label, _, ok := strings.Cut(host, "."); ok && label != "" {
		ch, ok := referrerNames[label]
		return ch, ok
	}
	return channel{}, false
}

// buildSources returns the source alias table: the built-in aliases, every
// referrer canonical, then extra (already normalized) over them, resolved.
func buildSources(extra map[string]string) (map[string]string, error) {
	m := maps.Clone(builtinSources)
	for _, ch := range referrerHosts {
		m[ch.source] = ch.source
	}
	for _, ch := range referrerNames {
		m[ch.source] = ch.source
	}
	return resolve(merge(m, extra))
}

// buildMediums returns the medium alias table: the built-in aliases with
// extra (already normalized) over them, resolved.
func buildMediums(extra map[string]string) (map[string]string, error) {
	return resolve(merge(maps.Clone(builtinMediums), extra))
}

// merge copies the configured aliases extra over the built-in ones m and
// returns m. A name extra maps to is canonical, even when m has it as an
// alias: {"cpc": "paid_search"} renames cpc and its aliases to
// paid_search rather than making a cycle with the built-in paid_search →
// cpc.
func merge(m, extra map[string]string) map[string]string {
	for _, v := range extra {
		if _, configured := extra[v]; !configured {
			delete(m, v)
		}
	}
	maps.Copy(m, extra)
	return m
}

// resolve follows alias chains ("fb" → "facebook" → "meta" once an entry
// renames "facebook") so that every value is final, and adds each final
// name as its own alias, which makes it known. The result maps every
// canonical name to itself. A cycle is an error.
func resolve(m map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(m)*2)
	for _, k := range slices.Sorted(maps.Keys(m)) { // sorted: the same error for the same input
		v := k
		for hops := 0; ; hops++ {
			next, ok := m[v]
			if !ok || next == v {
				break
			}
			if hops == len(m) {
				return nil, fmt.Errorf("%w: aliases of %q form a cycle", ErrConfig, k)
			}
			v = next
		}
		out[k] = v
	}
	for _, v := range slices.Collect(maps.Values(out)) {
		out[v] = v
	}
	return out, nil
}
