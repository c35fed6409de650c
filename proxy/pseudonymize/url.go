package pseudonymize

import (
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
	// Host is the lowercased host[:port], "" for relative input.
	Host string
	// Campaign holds the campaign parameters found in the query.
	Campaign Campaign
}

// Campaign holds campaign attribution from a URL's query. Values are
// scrubbed with ScrubText.
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
	// ClickIDs maps click-id parameter names to their values; only filled
	// with marketing consent, nil when none.
	ClickIDs map[string]string
}

// ScrubURL removes query params not on the allowlist (click ids only when
// marketing is true), drops fragment and userinfo, and replaces personal data
// in the path and kept values with markers (see ScrubText); it also extracts
// campaign parameters into Campaign. Click-id values are kept verbatim.
// Relative URLs and paths are accepted. Unparseable input returns a scrubbed
// path-only best effort, never the raw input.
func (p *Pseudonymizer) ScrubURL(raw string, marketing bool) URLParts {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return URLParts{}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bestEffortURL(raw)
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
		buf = appendLowerASCII(buf, u.Host)
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
		buf = appendScrubbedPath(buf, opaque)
	} else {
		buf = appendScrubbedPath(buf, u.EscapedPath())
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
	buf = p.appendQuery(buf, u.RawQuery, marketing, &camp)

	full := string(buf)
	return URLParts{
		URL:      full,
		Path:     full[pathStart:searchStart],
		Search:   full[searchStart:],
		Host:     full[hostStart:hostEnd],
		Campaign: camp.merge(),
	}
}

// appendScrubbedPath appends the escaped path with each segment scrubbed.
// Unchanged segments keep their original escaping.
func appendScrubbedPath(dst []byte, escaped string) []byte {
	for len(escaped) > 0 {
		seg, rest, more := strings.Cut(escaped, "/")
		dst = appendScrubbedSegment(dst, seg)
		if more {
			dst = append(dst, '/')
		}
		escaped = rest
	}
	return dst
}

func appendScrubbedSegment(dst []byte, seg string) []byte {
	if seg == "" {
		return dst
	}
	dec, err := url.PathUnescape(seg)
	if err != nil {
		dec = lenientUnescape(seg)
	} else if !mayContainPII(dec) {
		return append(dst, seg...)
	}
	var stack [256]byte
	out, changed := appendScrubText(stack[:0], dec)
	if !changed {
		if err == nil {
			return append(dst, seg...)
		}
		out = append(out, dec...)
	}
	return appendEscapedSegment(dst, out)
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
func bestEffortURL(raw string) URLParts {
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
		out, changed := appendScrubText(nil, dec)
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
func (p *Pseudonymizer) appendQuery(dst []byte, rawQuery string, marketing bool, camp *campaigns) []byte {
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
			continue
		}
		if _, personal := appendScrubText(nil, key); personal { // e.g. utm_jane@example.com
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			continue
		}
		lk := key
		if hasUpperASCII(key) {
			lk = string(appendLowerASCII(lower[:0], key))
		}
		switch {
		case p.clickIDs.match(lk):
			if !marketing {
				continue
			}
			if camp.clickIDs == nil {
				camp.clickIDs = make(map[string]string, 1)
			}
			camp.clickIDs[lk] = val
		case p.allow.match(lk):
			var stack [128]byte
			if out, changed := appendScrubText(stack[:0], val); changed {
				val = string(out)
			}
			camp.set(lk, val)
		default:
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
