package pseudonymize

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// minPathDigits is the shortest digit run of a path part MarkPathIDs
// replaces: order and account numbers are 6 digits or more, while years,
// product variants and page numbers stay readable.
const minPathDigits = 6

// MarkPathIDs replaces the identifier-like parts of an escaped path (as
// ScrubURL returns it) with "[id]", for events that must not single out a
// visitor: within each segment, every run of letters and digits that is
// one of a run of 6 or more digits that is not a compact date (yyyymmdd),
// 8 or more hex digits mixing letters and digits, or 6 or more letters and
// digits with 3 letter/digit changes; and every match of one of patterns
// (Go regular expressions matched against each unescaped segment). UUIDs,
// long hex ids, e-mails and phones were already markers after ScrubURL.
// What was replaced is counted as ClassIdentifier in c (nil: not counted).
func MarkPathIDs(path string, patterns []*regexp.Regexp, c *Counts) string {
	if path == "" {
		return path
	}
	var b strings.Builder
	changed := false
	rest := path
	for first := true; ; first = false {
		seg, tail, more := strings.Cut(rest, "/")
		if !first {
			b.WriteByte('/')
		}
		out, ok := markSegment(seg, patterns, c)
		changed = changed || ok
		b.WriteString(out)
		if !more {
			break
		}
		rest = tail
	}
	if !changed {
		return path
	}
	return b.String()
}

// markSegment applies MarkPathIDs to one escaped segment and reports
// whether it changed.
func markSegment(seg string, patterns []*regexp.Regexp, c *Counts) (string, bool) {
	if seg == "" {
		return seg, false
	}
	dec, err := url.PathUnescape(seg)
	if err != nil {
		dec = lenientUnescape(seg)
	}
	out, changed := dec, false
	for _, re := range patterns {
		if n := len(re.FindAllStringIndex(out, -1)); n > 0 {
			out = re.ReplaceAllLiteralString(out, markers[ClassIdentifier])
			for range n {
				c.add(ClassIdentifier)
			}
			changed = true
		}
	}
	var b []byte
	last := 0
	for i := 0; i < len(out); {
		if !isAlnum(out[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(out) && isAlnum(out[j]) {
			j++
		}
		// A marker's own letters ("[id]", "[token]") are never ids.
		if !(i > 0 && out[i-1] == '[') && idLikeSegment(out[i:j], minPathDigits) {
			b = append(b, out[last:i]...)
			b = append(b, markers[ClassIdentifier]...)
			c.add(ClassIdentifier)
			last, changed = j, true
		}
		i = j
	}
	if !changed {
		return seg, false
	}
	b = append(b, out[last:]...)
	return string(appendEscapedSegment(nil, b)), true
}

// CompilePathPatterns compiles a site's identifier patterns for
// MarkPathIDs; the error names the pattern that does not compile.
func CompilePathPatterns(patterns []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(patterns))
	for i, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %d (%q): %w", i, p, err)
		}
		if re.MatchString("") {
			return nil, fmt.Errorf("pattern %d (%q) matches the empty string", i, p)
		}
		out = append(out, re)
	}
	return out, nil
}

// NetworkBits is Network with the prefix lengths given: v4 bits of an
// IPv4 address, v6 bits of an IPv6 one (each at most Network's).
func NetworkBits(addr netip.Addr, v4, v6 int) netip.Prefix {
	addr = addr.Unmap().WithZone("")
	bits := min(v6, 48)
	if addr.Is4() {
		bits = min(v4, 24)
	}
	pfx, _ := addr.Prefix(bits)
	return pfx
}

// Rotation says how often the pseudonyms of analytics-only events change.
type Rotation uint8

// Rotations.
const (
	// RotateNever keeps one pseudonym per identifier (the default).
	RotateNever Rotation = iota
	// RotateDaily changes pseudonyms every UTC day.
	RotateDaily
	// RotateMonthly changes pseudonyms every UTC month.
	RotateMonthly
)

// ParseRotation reads never (or ""), daily or monthly.
func ParseRotation(s string) (Rotation, error) {
	switch s {
	case "", "never":
		return RotateNever, nil
	case "daily":
		return RotateDaily, nil
	case "monthly":
		return RotateMonthly, nil
	}
	return RotateNever, fmt.Errorf("%w: %q (never, daily or monthly)", ErrRotation, s)
}

// Period names the rotation period holding t, in UTC: "2026-01-15" for
// RotateDaily, "2026-01" for RotateMonthly, "" for RotateNever.
func (r Rotation) Period(t time.Time) string {
	switch r {
	case RotateDaily:
		return t.UTC().Format(time.DateOnly)
	case RotateMonthly:
		return t.UTC().Format("2006-01")
	}
	return ""
}

// periodLabel domain-separates the keys derived for rotation periods.
const periodLabel = "vigie pseudonym period v1"

// maxPeriodKeys bounds the derived keys kept (the current period and its
// neighbours around a boundary).
const maxPeriodKeys = 4

// PeriodID is ID under the active key's derivative for period (see
// Rotation.Period): HMAC-SHA256(HMAC-SHA256(active secret, label 0x00
// period), kind 0x00 site 0x00 value), cut like ID. Pseudonyms of two
// periods cannot be linked without the keyring: whoever holds it can
// compute a given identifier's pseudonym for any period (for a person's
// access or erasure request), nobody else can. An empty period is ID.
func (p *Pseudonymizer) PeriodID(site string, k Kind, value, period string) string {
	if value == "" {
		return ""
	}
	if period == "" {
		return p.ID(site, k, value)
	}
	var buf [32]byte
	return string(p.periodKey(period).appendID(buf[:0], site, k, value))
}

// PeriodKeyID names the key that made PeriodID pseudonyms for period:
// "<key id>@<period>" (KeyID for an empty period).
func (p *Pseudonymizer) PeriodKeyID(period string) string {
	if period == "" {
		return p.KeyID()
	}
	return p.KeyID() + "@" + period
}

// periodKeys caches the keys derived for rotation periods.
type periodKeys struct {
	mu   sync.Mutex
	keys map[string]*keyState
}

// periodKey returns the active key's derivative for period.
func (p *Pseudonymizer) periodKey(period string) *keyState {
	pk := &p.periods
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if ks, ok := pk.keys[period]; ok {
		return ks
	}
	if pk.keys == nil || len(pk.keys) >= maxPeriodKeys {
		pk.keys = make(map[string]*keyState, maxPeriodKeys)
	}
	m := hmac.New(sha256.New, p.activeSecret)
	m.Write([]byte(periodLabel))
	m.Write([]byte{0})
	m.Write([]byte(period))
	secret := m.Sum(nil)
	ks := &keyState{id: p.PeriodKeyID(period)}
	ks.pool.New = func() any {
		return &hmacState{h: hmac.New(sha256.New, secret), in: make([]byte, 0, 128)}
	}
	pk.keys[period] = ks
	return ks
}

// ClickIDs returns the click ids of a URL (Campaign.ClickIDs) as they may
// be stored for site: the value of a parameter on the export list (Config.
// ExportClickIDs, for an ads integration that must send it back) as it
// came, every other one as its pseudonym (HMAC, kind ClickID), so that
// conversions can be joined without the ad platform's identifier being
// kept. Nil for none.
func (p *Pseudonymizer) ClickIDs(site string, ids map[string]string) map[string]string {
	if len(ids) == 0 {
		return nil
	}
	out := make(map[string]string, len(ids))
	for name, v := range ids {
		if p.exportClickIDs.match(name) {
			out[name] = v
			continue
		}
		out[name] = p.ID(site, ClickID, v)
	}
	return out
}
