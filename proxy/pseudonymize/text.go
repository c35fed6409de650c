package pseudonymize

import "strings"

// Markers that replace personal data in text, URLs and JSON strings.
const (
	markEmail  = "[email]"
	markPhone  = "[phone]"
	markNumber = "[number]"
	markToken  = "[token]"
	markIP     = "[ip]"
)

const (
	// minTokenLen is the shortest run of [A-Za-z0-9_-] treated as a token.
	minTokenLen = 24
	// minNumberRun is the shortest digit run replaced by [number].
	minNumberRun = 9
	// maxNumberSpan bounds how far one phone/number candidate is scanned, so
	// pathological inputs stay linear.
	maxNumberSpan = 40
)

// ScrubText replaces personal data in free text with markers and returns s
// itself (no allocation) when nothing matched. It is a single-pass scanner:
//
//   - "[email]": local@domain, where local is [A-Za-z0-9._%+-] (or non-ASCII)
//     and domain has at least two labels and an alphabetic TLD of ≥ 2 letters.
//   - "[token]": a run of ≥ 24 bytes of [A-Za-z0-9_-] containing letters and
//     digits (session ids, hex hashes, JWT parts, UUIDs). Runs that contain
//     '-' or '_' must also be a UUID or contain a segment of ≥ 8 bytes mixing
//     letters and digits, so long slugs like "my-post-about-2026" survive.
//   - "[phone]": a span of digit groups separated by single ' ', '.' or '-'
//     (one kind per span; "(415) " style area codes allowed), not glued to
//     letters or digits, that is either "+" followed by 8–15 digits, or
//     9–12 digits in groups where only the first may have one digit ('.'
//     forbids one-digit groups, which keeps versions like 131.0.6778.86
//     out), or a bare run of 10–11 digits starting with 0 (0612345678).
//     Dates (2026-11-26: 8 digits), times, prices (1,299.00), versions and
//     mixed-separator spans (2026-11-26 10:30) are not phones.
//   - "[ip]": a dotted quad of numbers ≤ 255 (IPv4 address).
//   - "[number]": any other run of ≥ 9 digits, spans like the above with
//     more than 12 digits (card numbers, IBAN bodies) and thousands-grouped
//     numbers (1 299 000 000).
func ScrubText(s string) string {
	var stack [256]byte
	out, changed := appendScrubText(stack[:0], s)
	if !changed {
		return s
	}
	return string(out)
}

// appendScrubText appends the scrubbed form of s to dst and reports whether
// anything was replaced. When nothing was replaced dst is returned unchanged
// (s is not appended), so callers can keep the original.
//
// E-mails are replaced first over the whole string, then the other rules run
// on the result, so that a second pass sees exactly what the first pass's
// second phase saw (idempotence).
func appendScrubText(dst []byte, s string) ([]byte, bool) {
	if !mayContainPII(s) {
		return dst, false
	}
	if strings.IndexByte(s, '@') >= 0 {
		if t, ok := replaceEmails(s); ok {
			out, changed := appendScrubOthers(dst, t)
			if !changed {
				out = append(dst, t...)
			}
			return out, true
		}
	}
	return appendScrubOthers(dst, s)
}

// replaceEmails returns s with every e-mail replaced, and whether any was.
func replaceEmails(s string) (string, bool) {
	var stack [256]byte
	out := stack[:0]
	found := false
	last, pos := 0, 0
	for {
		k := strings.IndexByte(s[pos:], '@')
		if k < 0 {
			break
		}
		at := pos + k
		start := at
		for start > last && isLocal(s[start-1]) {
			start--
		}
		a, b := matchEmail(s, start, at)
		if b == 0 {
			pos = at + 1
			continue
		}
		out = append(out, s[last:a]...)
		out = append(out, markEmail...)
		last, pos, found = b, b, true
	}
	if !found {
		return s, false
	}
	return string(append(out, s[last:]...)), true
}

// appendScrubOthers applies every rule but e-mails (see appendScrubText).
func appendScrubOthers(dst []byte, s string) ([]byte, bool) {
	changed := false
	last := 0
	replace := func(start, end int, mark string) {
		dst = append(dst, s[last:start]...)
		dst = append(dst, mark...)
		last = end
		changed = true
	}
	noSpanUntil := 0 // a rejected span is not retried from inside
	for i := 0; i < len(s); {
		c := s[i]
		if isTokenByte(c) && (i == 0 || !isTokenByte(s[i-1])) {
			j := i + 1
			for j < len(s) && isTokenByte(s[j]) {
				j++
			}
			if j-i >= minTokenLen && looksLikeToken(s[i:j]) {
				replace(i, j, markToken)
				i = j
				continue
			}
		}
		if i >= noSpanUntil && (isDigit(c) || c == '+' || c == '(') && (i == 0 || !isWordEnd(s[i-1])) {
			end, mark := matchNumberSpan(s, i)
			if mark != "" {
				replace(i, end, mark)
				i = end
				continue
			}
			noSpanUntil = end
		}
		if isDigit(c) {
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			if j-i >= minNumberRun {
				replace(i, j, markNumber)
			}
			i = j
			continue
		}
		i++
	}
	if !changed {
		return dst, false
	}
	return append(dst, s[last:]...), true
}

// mayContainPII is the fast pre-filter: nothing can match in a string with
// no '@', no run of minTokenLen token bytes, fewer than 8 digits and no
// dotted quad candidate (4+ digits and 3+ dots).
func mayContainPII(s string) bool {
	digits, dots, run := 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isDigit(c):
			digits++
			run++
		case isAlpha(c) || c == '_' || c == '-':
			run++
		case c == '@':
			return true
		case c == '.':
			dots++
			run = 0
		default:
			run = 0
		}
		if run >= minTokenLen {
			return true
		}
	}
	return digits >= 8 || (digits >= 4 && dots >= 3)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// isWordEnd reports whether c ends a word for span boundaries; a marker's
// closing bracket counts, so that scrubbing is idempotent.
func isWordEnd(c byte) bool { return isAlnum(c) || c == ']' }

// isTokenByte reports c ∈ [A-Za-z0-9_-].
func isTokenByte(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

// isLocal reports whether c may appear in an e-mail local part.
func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' || c >= 0x80
}

// isDomainByte reports whether c may appear in an e-mail domain.
func isDomainByte(c byte) bool { return isAlnum(c) || c == '-' || c == '.' || c >= 0x80 }

// matchEmail checks for an e-mail whose local part is s[i:at] and returns
// its span (leading punctuation of the local part is left out), or 0, 0.
func matchEmail(s string, i, at int) (start, end int) {
	start = i
	for start < at && !isAlnum(s[start]) && s[start] < 0x80 {
		start++
	}
	if start == at {
		return 0, 0
	}
	limit := min(len(s), at+1+maxDomainLen)
	end = at + 1
	for end < limit && isDomainByte(s[end]) {
		end++
	}
	// Take the longest valid domain prefix (labels, a dot, a TLD of ≥ 2
	// letters), so that a later replacement inside a rejected domain cannot
	// turn its prefix into an e-mail on a second pass.
	best := 0
	for k := at + 1; k < end; k++ {
		if s[k] != '.' {
			continue
		}
		if k == at+1 || s[k-1] == '.' {
			break // empty label: nothing from here on is a domain
		}
		t := k + 1
		for t < end && (isAlpha(s[t]) || s[t] >= 0x80) {
			t++
		}
		if t-k-1 >= 2 {
			best = t
		}
	}
	if best == 0 {
		return 0, 0
	}
	return start, best
}

// maxDomainLen bounds the e-mail domain scan (DNS names are ≤ 253 bytes).
const maxDomainLen = 253

// looksLikeToken applies the [token] rules to a run of token bytes.
func looksLikeToken(run string) bool {
	hasDigit, hasLetter, hasSep := false, false, false
	for i := 0; i < len(run); i++ {
		switch c := run[i]; {
		case isDigit(c):
			hasDigit = true
		case isAlpha(c):
			hasLetter = true
		default:
			hasSep = true
		}
	}
	if !hasDigit || !hasLetter {
		return false
	}
	if !hasSep || isUUID(run) {
		return true
	}
	// Separated runs: some segment must itself look random.
	segStart := 0
	for i := 0; i <= len(run); i++ {
		if i < len(run) && isAlnum(run[i]) {
			continue
		}
		if mixedSegment(run[segStart:i]) {
			return true
		}
		segStart = i + 1
	}
	return false
}

// mixedSegment reports a segment of ≥ 8 alphanumerics with at least two
// letter/digit transitions ("ab12cd34", not "2026edition").
func mixedSegment(seg string) bool {
	if len(seg) < 8 {
		return false
	}
	transitions := 0
	for i := 1; i < len(seg); i++ {
		if isDigit(seg[i]) != isDigit(seg[i-1]) {
			transitions++
		}
	}
	return transitions >= 2
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !isDigit(c) && !('a' <= c && c <= 'f') && !('A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Separator kinds in a number span.
const (
	sepSpace = 1 << iota
	sepDot
	sepDash
)

// numGroup is one digit group of a phone/number candidate.
type numGroup struct {
	len, val int
	end      int  // offset just past the group (past ')' for a paren group)
	sep      int  // separator kind before the group; 0 when none or next to a paren
	dotAdj   bool // a '.' touches a paren group
	paren    bool
}

// matchNumberSpan scans the phone/number/IP candidate starting at s[i] (a
// digit, '+' or '(' not preceded by a word). It returns the end of the span
// (0 when there is no digit group) and its marker, "" when the span is none
// of those. A last group glued to a letter or marker is left out of the span.
func matchNumberSpan(s string, i int) (int, string) {
	n := len(s)
	j := i
	plus := s[j] == '+'
	if plus {
		j++
	}
	var groups [16]numGroup
	ng := 0
	sep, dotAdj := 0, false
	for ng < len(groups) && j-i < maxNumberSpan {
		g := numGroup{sep: sep, dotAdj: dotAdj}
		switch {
		case j < n && s[j] == '(':
			k := j + 1
			for k < n && isDigit(s[k]) {
				k++
			}
			if k == j+1 || k-j-1 > 5 || k >= n || s[k] != ')' {
				break
			}
			g.len, g.paren, g.val = k-j-1, true, 256
			j = k + 1
		case j < n && isDigit(s[j]):
			k := j
			for k < n && isDigit(s[k]) {
				if g.val <= 255 {
					g.val = g.val*10 + int(s[k]-'0')
				}
				k++
			}
			g.len = k - j
			j = k
		}
		if g.len == 0 {
			break
		}
		g.end = j
		groups[ng] = g
		ng++
		if j >= n {
			break
		}
		c := s[j]
		next := byte(0)
		if j+1 < n {
			next = s[j+1]
		}
		if (c == ' ' || c == '.' || c == '-') && (isDigit(next) || next == '(') {
			sep, dotAdj = 0, false
			if !g.paren && next != '(' {
				switch c {
				case ' ':
					sep = sepSpace
				case '.':
					sep = sepDot
				default:
					sep = sepDash
				}
			} else if c == '.' {
				dotAdj = true
			}
			j++
			continue
		}
		if g.paren && isDigit(c) {
			sep, dotAdj = 0, false
			continue
		}
		break
	}
	if ng == 0 {
		return 0, ""
	}
	// A last group glued to a word, token or marker is not part of the span.
	for ng > 0 && groups[ng-1].end < n && (isTokenByte(s[groups[ng-1].end]) || s[groups[ng-1].end] == '[') {
		ng--
	}
	if ng == 0 {
		return 0, ""
	}
	end := groups[ng-1].end
	if mark := classifyNumberSpan(groups[:ng], plus, s[i]); mark != "" {
		return end, mark
	}
	for _, g := range groups[:ng] {
		if g.len >= minNumberRun {
			return end, markNumber
		}
	}
	return end, ""
}

// classifyNumberSpan applies the phone/IP/number rules documented on ScrubText.
func classifyNumberSpan(groups []numGroup, plus bool, first byte) string {
	digits, seps, singles, paren, dotAdj := 0, 0, 0, false, false
	quad := len(groups) == 4
	for k, g := range groups {
		digits += g.len
		seps |= g.sep
		paren = paren || g.paren
		dotAdj = dotAdj || g.dotAdj
		if g.len == 1 && k > 0 {
			singles++
		}
		if g.len > 3 || g.val > 255 || (k > 0 && g.sep != sepDot) {
			quad = false
		}
	}
	mixed := seps&(seps-1) != 0
	if plus {
		if groups[0].len == 1 {
			singles++
		}
		if digits >= 8 && digits <= 15 && singles <= 2 && !mixed {
			return markPhone
		}
		return ""
	}
	if quad && !paren && !dotAdj {
		return markIP
	}
	if len(groups) == 1 {
		switch {
		case digits < minNumberRun:
			return ""
		case first == '0' && (digits == 10 || digits == 11):
			return markPhone
		default:
			return markNumber
		}
	}
	if mixed || digits < minNumberRun || singles > 0 || (seps == sepDot && groups[0].len == 1) {
		return ""
	}
	thousands := !paren && len(groups) >= 3 && groups[0].len <= 3
	for _, g := range groups[1:] {
		thousands = thousands && g.len == 3
	}
	if digits > 12 || thousands {
		return markNumber
	}
	return markPhone
}
