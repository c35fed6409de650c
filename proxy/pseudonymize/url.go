package pseudonymize

import (
	"net/netip"
	"net/url"
	"strings"
)

// URLParts is a scrubbed URL and its pieces.
type URLParts struct {
	// URL is the scrubbed URL: scheme://host/path?kept for absolute input,
	// //host/path?kept for scheme-relative input, path?kept otherwise.
	URL string
	// Path is the scrubbed, escaped path ("" when the input had none).
	Path string
	// Search is "?" followed by the kept query parameters, or "".
	Search string
	// Host is the lowercased host[:port], "" for relative input. An IP
	// address host (IPv4 in any inet_aton form, IPv6) is ipHost, a host
	// holding other personal data is redactedHost.
	Host string
	// Campaign holds the campaign parameters found in the query.
	Campaign Campaign
}

// Campaign holds campaign attribution from a URL's query. Values are
// scrubbed with ScrubText; Source also with ScrubSource.
type Campaign struct {
	// Name is utm_campaign (else mtm_campaign, pk_campaign, campaign).
	Name string
	// Source is utm_source (else mtm_source, pk_source, source, ref).
	Source string
	// Medium is utm_medium (else mtm_medium, pk_medium).
	Medium string
	// Term is utm_term (else mtm_keyword/mtm_kwd, pk_keyword/pk_kwd).
	Term string
	// Content is utm_content (else mtm_content, pk_content).
	Content string
	// ClickIDs maps click-id parameter names (lowercased) to their values,
	// verbatim; only filled with marketing consent, nil when none. The URL
	// never holds them.
	ClickIDs map[string]string
}

// Hosts that replace an IP address host and a host holding personal data
// (names reserved by RFC 2606: a bracketed marker is no valid host).
const (
	ipHost       = "ip.invalid"
	redactedHost = "redacted.invalid"
)

// ScrubURL removes query params not on the allowlist (and click ids),
// other trackers' visitor ids (even when
// allowlisted), drops fragment and userinfo, replaces an IP address host
// with ipHost, and replaces personal data in the path and kept values with
// markers (see ScrubText; kept values also lose random-looking tokens of 12
// bytes or more, and ref/source values that look like identifiers become
// "[id]"); it also extracts campaign parameters into Campaign. Click ids
// (marketing only) are moved out of the URL into Campaign.ClickIDs,
// verbatim: the caller pseudonymizes them (ClickIDs). Relative URLs and
// paths are accepted.
// Unparseable input returns a scrubbed path-only best effort, never the raw
// input. What was removed is added to c (nil: not counted).
func (p *Pseudonymizer) ScrubURL(raw string, marketing bool, c *Counts) URLParts {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return URLParts{}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bestEffortURL(raw, c)
	}
	var stack [512]byte
	buf := stack[:0]
	var hostStart, hostEnd int
	switch {
	case u.Opaque != "":
		buf = appendLowerASCII(buf, u.Scheme)
		buf = append(buf, ':')
	case u.Host != "":
		if u.Scheme != "" {
			buf = appendLowerASCII(buf, u.Scheme)
			buf = append(buf, ':')
		}
		buf = append(buf, "//"...)
		hostStart = len(buf)
		buf = appendHost(buf, u, c)
		hostEnd = len(buf)
	case u.Scheme != "":
		buf = appendLowerASCII(buf, u.Scheme)
		buf = append(buf, ':')
	}
	pathStart := len(buf)
	if u.Opaque != "" {
		opaque := u.Opaque
		if !strings.EqualFold(u.Scheme, "mailto") {
			opaque = stripUserinfo(opaque) // "user:pw@host/x" parses as scheme "user"
		}
		buf = appendScrubbedPath(buf, opaque, c)
	} else {
		buf = appendScrubbedPath(buf, u.EscapedPath(), c)
	}
	if u.Host == "" && len(buf)-pathStart > 1 && buf[pathStart] == '/' && buf[pathStart+1] == '/' {
		// A path starting with "//" would read back as an authority.
		extra := pathStart + 1
		for extra < len(buf) && buf[extra] == '/' {
			extra++
		}
		buf = append(buf[:pathStart+1], buf[extra:]...)
	}
	searchStart := len(buf)
	var camp campaigns
	buf = p.appendQuery(buf, u.RawQuery, marketing, &camp, c)

	full := string(buf)
	return URLParts{
		URL:      full,
		Path:     full[pathStart:searchStart],
		Search:   full[searchStart:],
		Host:     full[hostStart:hostEnd],
		Campaign: camp.merge(),
	}
}

// appendHost appends u's host, lowercased, or ipHost / redactedHost, and
// its port.
func appendHost(dst []byte, u *url.URL, c *Counts) []byte {
	h := u.Hostname()
	repl := ipHost
	if isIPHost(h) {
		c.add(ClassIP)
	} else if _, personal := appendScrubText(nil, h, c); personal {
		repl = redactedHost
	} else {
		return appendLowerASCII(dst, u.Host)
	}
	dst = append(dst, repl...)
	if port := u.Port(); port != "" {
		dst = append(dst, ':')
		dst = append(dst, port...)
	}
	return dst
}

// isIPHost reports an IP address host: IPv6 (with a zone or not), IPv4, or
// the other forms inet_aton and browsers accept (a last label that is a
// decimal or 0x-hex number: "3325256713", "0xC6336449", "0306.0063.0144.0111").
// Real top-level domains are alphabetic.
func isIPHost(h string) bool {
	if h == "" {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	label := h[strings.LastIndexByte(h, '.')+1:]
	if len(label) > 2 && (label[:2] == "0x" || label[:2] == "0X") && isHexRun(label[2:]) {
		return true
	}
	return allDigits(label)
}

// appendScrubbedPath appends the escaped path with each segment scrubbed.
// Unchanged segments keep their original escaping.
func appendScrubbedPath(dst []byte, escaped string, c *Counts) []byte {
	for len(escaped) > 0 {
		seg, rest, more := strings.Cut(escaped, "/")
		dst = appendScrubbedSegment(dst, seg, c)
		if more {
			dst = append(dst, '/')
		}
		escaped = rest
	}
	return dst
}

func appendScrubbedSegment(dst []byte, seg string, c *Counts) []byte {
	if seg == "" {
		return dst
	}
	dec, err := url.PathUnescape(seg)
	// A segment kept as it came must be valid and hold no raw space or
	// control character (which would not survive a second parse).
	keep := err == nil && !hasSpaceOrControl(seg)
	if err != nil {
		dec = lenientUnescape(seg)
	} else if keep && features(dec) == 0 {
		return append(dst, seg...)
	}
	var stack [256]byte
	out, changed := appendScrubText(stack[:0], dec, c)
	if !changed {
		if keep {
			return append(dst, seg...)
		}
		out = append(out, dec...)
	}
	return appendEscapedSegment(dst, out)
}

func hasSpaceOrControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// appendEscapedSegment percent-encodes a path segment, leaving unreserved
// characters, sub-delims, '@' and the markers' brackets readable (':' is
// escaped so a relative path never looks like a scheme).
func appendEscapedSegment(dst, seg []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range seg {
		if isAlnum(c) || strings.IndexByte("-._~!$&'()*+,;=@[]", c) >= 0 {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

// lenientUnescape decodes valid %XX escapes, keeps invalid ones literally and
// drops control characters.
func lenientUnescape(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		}
		if c < 0x20 || c == 0x7f {
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// bestEffortURL handles input url.Parse rejects: it keeps only a path,
// without scheme, authority, query or fragment, scrubbed and re-escaped.
func bestEffortURL(raw string, c *Counts) URLParts {
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
		if j := strings.IndexByte(s, '/'); j >= 0 {
			s = s[j:]
		} else {
			s = ""
		}
	}
	s = stripUserinfo(s)
	var buf []byte
	for len(s) > 0 {
		seg, rest, more := strings.Cut(s, "/")
		dec := lenientUnescape(seg)
		out, changed := appendScrubText(nil, dec, c)
		if !changed {
			out = []byte(dec)
		}
		buf = appendEscapedSegment(buf, out)
		if more {
			buf = append(buf, '/')
		}
		s = rest
	}
	path := string(buf)
	if strings.HasPrefix(path, "//") { // would read as an authority
		path = "/" + strings.TrimLeft(path, "/")
	}
	return URLParts{URL: path, Path: path}
}

// stripUserinfo drops a userinfo-like prefix: everything up to the last '@'
// before the first '/'.
func stripUserinfo(s string) string {
	slash := strings.IndexByte(s, '/')
	if slash < 0 {
		slash = len(s)
	}
	if at := strings.LastIndexByte(s[:slash], '@'); at >= 0 {
		return s[at+1:]
	}
	return s
}

// campaigns collects campaign values by family before merging by precedence.
type campaigns struct {
	utm, matomo, bare Campaign
	clickIDs          map[string]string
}

func (c *campaigns) merge() Campaign {
	first := func(vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return ""
	}
	return Campaign{
		Name:     first(c.utm.Name, c.matomo.Name, c.bare.Name),
		Source:   first(c.utm.Source, c.matomo.Source, c.bare.Source),
		Medium:   first(c.utm.Medium, c.matomo.Medium),
		Term:     first(c.utm.Term, c.matomo.Term),
		Content:  first(c.utm.Content, c.matomo.Content),
		ClickIDs: c.clickIDs,
	}
}

func (c *campaigns) set(key, val string) {
	var dst *Campaign
	name := key
	switch {
	case strings.HasPrefix(key, "utm_"):
		dst, name = &c.utm, key[4:]
	case strings.HasPrefix(key, "mtm_"):
		dst, name = &c.matomo, key[4:]
	case strings.HasPrefix(key, "pk_"):
		dst, name = &c.matomo, key[3:]
	default:
		dst = &c.bare
	}
	var field *string
	switch name {
	case "campaign", "name":
		field = &dst.Name
	case "source", "ref":
		field = &dst.Source
	case "medium":
		field = &dst.Medium
	case "term", "keyword", "kwd":
		field = &dst.Term
	case "content":
		field = &dst.Content
	default:
		return
	}
	if *field == "" {
		*field = val
	}
}

// appendQuery appends "?" and the kept parameters of rawQuery (if any).
func (p *Pseudonymizer) appendQuery(dst []byte, rawQuery string, marketing bool, camp *campaigns, c *Counts) []byte {
	start := len(dst)
	var lower [64]byte
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" {
			continue
		}
		k, v, hasValue := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || key == "" {
			c.add(ClassQueryParam)
			continue
		}
		if _, personal := appendScrubText(nil, key, c); personal { // e.g. utm_jane@example.com
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			c.add(ClassQueryParam)
			continue
		}
		lk := key
		if hasUpperASCII(key) {
			lk = string(appendLowerASCII(lower[:0], key))
		}
		switch {
		case trackerParams.match(lk):
			c.add(ClassTrackerID)
			continue
		case p.clickIDs.match(lk):
			if !marketing {
				c.add(ClassQueryParam)
				continue
			}
			if camp.clickIDs == nil {
				camp.clickIDs = make(map[string]string, 1)
			}
			camp.clickIDs[lk] = val
			continue // carried by Campaign.ClickIDs only, never in the URL
		case p.allow.match(lk):
			val = scrubQueryValue(val, isSourceParam(lk), c)
			camp.set(lk, val)
		default:
			c.add(ClassQueryParam)
			continue
		}
		if len(dst) == start {
			dst = append(dst, '?')
		} else {
			dst = append(dst, '&')
		}
		dst = appendQueryEscaped(dst, key)
		if hasValue {
			dst = append(dst, '=')
			dst = appendQueryEscaped(dst, val)
		}
	}
	return dst
}

// trackerParams are other trackers' visitor and contact ids (Matomo,
// Google Analytics and its linker, Meta, Segment, HubSpot, Marketo,
// Mailchimp, Klaviyo, Vero, Omeda): always dropped from URLs, even when a
// site's allowlist matches them, and dropped as property or trait names.
var trackerParams = newMatcher([]string{
	"pk_vid", "_pk_id*", "_pk_ses*", "_pk_ref*", "_pk_cvar*", "_pk_hsr*", "_pk_uid", "pk_uid",
	"_ga", "_ga_*", "_gid", "_gl", "_gac_*", "_gcl_*", "_fbp", "_fbc",
	"ajs_aid", "ajs_uid", "ajs_anonymous_id", "ajs_user_id",
	"_hsenc", "_hsmi", "__hstc", "__hssc", "__hsfp", "hubspotutk", "mkt_tok", "mc_eid", "_kx",
	"vero_id", "vero_conv", "oly_enc_id", "oly_anon_id", "_hjid", "_hjsessionuser_*", "_hjsession_*",
}, true)

// isSourceParam reports parameters naming a traffic source, whose
// identifier-like values are referral ids.
func isSourceParam(lk string) bool {
	switch lk {
	case "ref", "source", "utm_source", "mtm_source", "pk_source", "referrer", "referer":
		return true
	}
	return false
}

// scrubQueryValue scrubs a kept parameter's value: ScrubText, then random
// -looking tokens of 12 bytes or more, then, for source parameters, a value
// that looks like an identifier as a whole.
func scrubQueryValue(val string, source bool, c *Counts) string {
	var stack [128]byte
	if out, changed := appendScrubText(stack[:0], val, c); changed {
		val = string(out)
	}
	if source && looksLikeID(val) {
		c.add(ClassTrackerID)
		return markers[ClassTrackerID]
	}
	return replaceShortTokens(val, c)
}

// ScrubSource scrubs a campaign source (utm_source, ref, context.campaign
// source): ScrubText, then a value that looks like an identifier (a
// referral or visitor id) becomes "[id]".
func ScrubSource(s string, c *Counts) string {
	s = ScrubText(s, c)
	if looksLikeID(s) {
		c.add(ClassTrackerID)
		return markers[ClassTrackerID]
	}
	return s
}

// looksLikeID reports a value of 5–64 bytes of [A-Za-z0-9_.-] with a
// segment (between '_', '.' and '-') that looks generated: 5 or more
// digits in a row that are not a date, ≥ 8 hex digits mixing letters and
// digits, or ≥ 6 alphanumerics with 3 letter/digit transitions
// ("u8c2f9a", "12345", "a3f9c2e1"; not "newsletter", "spring2026").
func looksLikeID(v string) bool {
	if len(v) < 5 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isAlnum(v[i]) && v[i] != '_' && v[i] != '.' && v[i] != '-' {
			return false
		}
	}
	for seg := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == '_' || r == '.' || r == '-' }) {
		if idLikeSegment(seg, 5) {
			return true
		}
	}
	return false
}

// idLikeSegment reports an alphanumeric segment that looks generated: a
// run of minDigits or more digits that is not a compact date (yyyymmdd),
// ≥ 8 hex digits mixing letters and digits, or ≥ 6 alphanumerics with 3
// letter/digit transitions.
func idLikeSegment(seg string, minDigits int) bool {
	digitRun, maxRun, transitions, hasDigit, hasLetter := 0, 0, 0, false, false
	for i := 0; i < len(seg); i++ {
		if isDigit(seg[i]) {
			digitRun++
			maxRun = max(maxRun, digitRun)
			hasDigit = true
		} else {
			digitRun = 0
			hasLetter = true
		}
		if i > 0 && isDigit(seg[i]) != isDigit(seg[i-1]) {
			transitions++
		}
	}
	switch {
	case maxRun >= minDigits && !(allDigits(seg) && isCompactDate(seg)):
		return true
	case len(seg) >= 8 && hasDigit && hasLetter && isHexRun(seg):
		return true
	case len(seg) >= 6 && transitions >= 3:
		return true
	}
	return false
}

// isCompactDate reports yyyymmdd with a plausible year, month and day.
func isCompactDate(d string) bool {
	if len(d) != 8 {
		return false
	}
	y, m, day := digitsValue(d[:4]), digitsValue(d[4:6]), digitsValue(d[6:])
	return y >= 1900 && y <= 2100 && m >= 1 && m <= 12 && day >= 1 && day <= 31
}

// replaceShortTokens replaces runs of 12–23 token bytes that look random
// (a segment of ≥ 10 alphanumerics with ≥ 4 letter/digit transitions) with
// "[token]" (longer ones are ScrubText's).
func replaceShortTokens(v string, c *Counts) string {
	r := replacer{s: v}
	for i := 0; i < len(v); {
		if !isTokenByte(v[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(v) && isTokenByte(v[j]) {
			j++
		}
		if n := j - i; n >= 12 && n < minTokenLen && !(i > 0 && v[i-1] == '[') && randomSegment(v[i:j]) {
			r.replace(i, j, ClassToken, c)
		}
		i = j
	}
	out, _ := r.result()
	return out
}

// randomSegment reports a run with a segment of ≥ 10 alphanumerics and ≥ 4
// letter/digit transitions.
func randomSegment(run string) bool {
	for seg := range strings.FieldsFuncSeq(run, func(r rune) bool { return r == '_' || r == '-' }) {
		if len(seg) < 10 {
			continue
		}
		transitions := 0
		for i := 1; i < len(seg); i++ {
			if isDigit(seg[i]) != isDigit(seg[i-1]) {
				transitions++
			}
		}
		if transitions >= 4 {
			return true
		}
	}
	return false
}

// appendQueryEscaped appends s escaped like url.QueryEscape, without allocating.
func appendQueryEscaped(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~':
			dst = append(dst, c)
		case c == ' ':
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
}
