package pseudonymize

import (
	"net/netip"
	"strings"
)

const (
	// minTokenLen is the shortest run of [A-Za-z0-9_-] treated as a token.
	minTokenLen = 24
	// minHexTokenLen is the shortest run of hex digits (with letters and
	// digits) treated as a token: other trackers' visitor ids are 16.
	minHexTokenLen = 16
	// minNumberRun is the shortest digit run replaced by [number].
	minNumberRun = 9
	// maxNumberSpan bounds how far one phone/number candidate is scanned, so
	// pathological inputs stay linear.
	maxNumberSpan = 48
	// maxSpanTrim is how many last groups a failed number span is tried
	// without.
	maxSpanTrim = 3
	// maxSpanRetries is how many groups into a rejected span the scan
	// tries again (leading unrelated digits are one or two groups).
	maxSpanRetries = 3
	// maxScrubRounds bounds the rounds ScrubText runs until its output is
	// stable.
	maxScrubRounds = 8
)

// ScrubText replaces personal data in free text with markers, adds what it
// replaced to c (nil: not counted), and returns s itself (no allocation)
// when nothing matched.
//
// Text holding an encoded character (%XX, \uXXXX, \xXX, an HTML character
// reference, a full-width at sign) is decoded repeatedly until stable
// before matching ("%2540" → "%40" → "@"); when something matched, the
// decoded text is what is scrubbed and returned. The rules, each run over
// the whole text, in this order, until a round changes nothing (so
// scrubbing the result again changes nothing):
//
//   - "[email]": local@domain, local in the RFC 5322 atext characters but
//     '/', '=', '?' and '&' (quotes, '+' and runs of '.' included) or
//     non-ASCII, domain of at least two labels with an alphabetic TLD of ≥ 2
//     letters, or an address literal ("[192.0.2.1]"); "(at)", "[at]",
//     "{at}" stand for '@' and "(dot)", "[dot]", "{dot}" for '.'.
//   - "[secret]": the value after a credential key and '=' or ':'
//     (password, passwd, pwd, passphrase, secret, token, api_key, sessionid,
//     sid, pin, cvv… and any key ending in password, secret, token, apikey,
//     sessionid); the credential after "Bearer" or "Basic"; JWTs
//     (eyJ….eyJ….sig); AWS access key ids (AKIA…, 20 characters); tokens with
//     a known secret prefix (sk_live_, ghp_, xoxb-, AIza, glpat-…).
//   - "[name]": best effort, after a cue only: 1–3 capitalized words after
//     an honorific (Mr, Mrs, Ms, Dr, Mme, M., Herr, Frau, Sr, Sra…), a
//     greeting (Dear, Hello, Hi, Bonjour, Hallo, Hola, Ciao… but not "Hello
//     World") or a closing (Regards, Cordialement, Thanks…); 1–3 words
//     after "name:", "nom :", "Vorname:", "nombre=" and alike, or after
//     "je m'appelle", "me llamo", "mi chiamo", "ich heiße". Names without
//     a cue are not found.
//   - "[iban]": an IBAN of its country's length passing mod 97, compact or
//     in groups.
//   - "[national_id]": checked national numbers: French NIR (key 97 − n mod
//     97, Corsica 2A/2B), US SSN (ddd-dd-dddd), UK NINO, Spanish DNI/NIE
//     (check letter), Italian codice fiscale (check letter), German tax id
//     (MOD 11,10), Belgian national number (mod 97), Polish PESEL,
//     Swedish personnummer (Luhn).
//   - "[card]": 13–19 digits, alone or in groups, with a card issuer's
//     prefix and length, passing Luhn.
//   - "[ip]": a dotted quad of numbers ≤ 255, or an IPv6 address of at
//     least four hex digits (with "::" or eight groups, a zone, brackets, an
//     IPv4 tail; "::1" and "a::b" are kept).
//   - "[token]": a run of ≥ 24 bytes of [A-Za-z0-9_-] containing letters and
//     digits (session ids, hashes, UUIDs); runs with '-' or '_' must also be
//     a UUID or hold a segment of ≥ 8 bytes mixing letters and digits, so
//     long slugs like "my-post-about-2026" survive; or a run of ≥ 16 hex
//     digits mixing letters and digits (visitor ids of other trackers).
//   - "[phone]": a span of digit groups separated by spaces (also no-break
//     and thin spaces), '.', '-' or '/', "(area)" groups allowed, not glued
//     to letters or digits, with an extension ("ext. 12", "x12", "#12",
//     "poste 12") kept in the span: "+" followed by 8–15 digits, "00" and a
//     valid international number, or
//     9–12 digits in groups of one separator kind where only the first may
//     have one digit ('.' forbids one-digit groups, which keeps versions
//     like 131.0.6778.86 out), or a bare run of 10–11 digits starting with
//     0 (0612345678); spans with mixed separators or one-digit groups are
//     phones when github.com/nyaruka/phonenumbers finds them valid
//     (international, or national in FR, DE, GB, BE, NL, CH, AT, IT, IE,
//     LU, SE, US). Dates (2026-11-26, 26/11/2026 10:30), times, prices
//     (1,299.00), versions and thousands are not phones.
//   - "[number]": any other run of ≥ 9 digits, spans like the above with
//     more than 12 digits and thousands-grouped numbers (1 299 000 000),
//     and phone candidates left unconfirmed once c's parse budget is spent.
//
// A span of digit groups that is none of these is tried again without its
// last groups and, for IPs and checksummed numbers only, from its next
// groups, so that "0 4111 1111 1111 1111 0" still loses the card number.
func ScrubText(s string, c *Counts) string {
	var stack [256]byte
	out, changed := appendScrubText(stack[:0], s, c)
	if !changed {
		return s
	}
	return string(out)
}

// appendScrubText appends the scrubbed form of s to dst and reports whether
// anything was replaced. When nothing was replaced dst is returned unchanged
// (s is not appended), so callers can keep the original.
//
// Rounds run until one changes nothing, so that scrubbing the output again
// is a no-op (idempotence by construction).
func appendScrubText(dst []byte, s string, c *Counts) ([]byte, bool) {
	var local Counts
	if c == nil {
		c = &local // the phone-parse budget still applies
	}
	out, changed := scrubOnce(s, c)
	if !changed {
		return dst, false
	}
	for range maxScrubRounds {
		next, again := scrubOnce(out, c)
		if !again {
			break
		}
		out = next
	}
	return append(dst, out...), true
}

// scrubOnce is one round: decode, then every rule. It returns s itself when
// nothing matched (even if s was encoded).
func scrubOnce(s string, c *Counts) (string, bool) {
	f := features(s)
	if f == 0 {
		return s, false
	}
	t := s
	if f&featEncoded != 0 {
		if d, ok := decodeAll(s); ok {
			t = d
			f = features(t)
		}
	}
	changed := false
	if f&featAt != 0 {
		if out, ok := replaceEmails(t, c); ok {
			t, changed = out, true
		}
	}
	if f&featWord != 0 {
		if out, ok := replaceCued(t, c); ok {
			t, changed = out, true
		}
	}
	if f&featOthers != 0 {
		if out, ok := replaceOthers(t, c); ok {
			t, changed = out, true
		}
	}
	if !changed {
		return s, false
	}
	return t, true
}

// Features found by the pre-filter; each gates one family of rules.
const (
	featAt      = 1 << iota // '@' or an "(at)"-style stand-in
	featEncoded             // an encoded character
	featWord                // a cue word, or a word before '=' or ':'
	featOthers              // digits, long runs, colons: numbers, ids, tokens, IPs
)

// features is the fast pre-filter: one pass over s that says which rule
// families can match at all.
func features(s string) uint8 {
	var f uint8
	digits, dots, colons := 0, 0, 0
	run, norm, runLetter := 0, 0, false
	var first, last byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		k := byteClass[c]
		if k&bUnit != 0 {
			run++
			switch {
			case k&bDigit != 0:
				digits++
			case k&bLetter != 0:
				runLetter = true
			case k&bSep != 0:
				continue
			case c == 0xEF && mayBeEncoded(s, i):
				f |= featEncoded
			}
			last = lowerASCII(c)
			if norm == 0 {
				first = last
			}
			norm++
			continue
		}
		if run > 0 {
			f |= unitFeatures(s, i, run, norm, first, last, runLetter)
			run, norm, runLetter = 0, 0, false
		}
		if k&bSpecial == 0 {
			continue
		}
		switch c {
		case '@':
			f |= featAt
		case '.':
			dots++
		case ':':
			colons++
		case '%', '\\', '&':
			if mayBeEncoded(s, i) {
				f |= featEncoded
			}
		case ')', ']', '}':
			if i >= 3 && (s[i-1]|0x20) == 't' && (s[i-2]|0x20) == 'a' && s[i-3] == openOf(c) {
				f |= featAt
			}
		}
	}
	if run > 0 {
		f |= unitFeatures(s, len(s), run, norm, first, last, runLetter)
	}
	if digits >= 6 || (digits >= 4 && dots >= 3) || colons >= 2 {
		f |= featOthers
	}
	return f
}

// unitFeatures is what one word (a run of unit bytes ending at s[i]) tells
// the pre-filter.
func unitFeatures(s string, i, run, norm int, first, last byte, letter bool) uint8 {
	var f uint8
	if run >= minHexTokenLen {
		f |= featOthers // tokens, secrets with a known prefix
	}
	if norm > 0 && mayBeCue(first, last, norm) {
		f |= featWord
	}
	if letter && i < len(s) && sepAfter(s, i) {
		f |= featWord // a credential name, maybe
	}
	return f
}

// Byte classes for the pre-filter.
const (
	bDigit   = 1 << iota
	bLetter  // ASCII letter
	bSep     // '_' and '-' (inside words)
	bHigh    // non-ASCII
	bSpecial // bytes the pre-filter looks at outside words
	bUnit    = bDigit | bLetter | bSep | bHigh
)

var byteClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch b := byte(c); {
		case isDigit(b):
			t[c] = bDigit
		case isAlpha(b):
			t[c] = bLetter
		case b == '_' || b == '-':
			t[c] = bSep
		case b >= 0x80:
			t[c] = bHigh
		case strings.IndexByte("@.:%\\&)]}", b) >= 0:
			t[c] = bSpecial
		}
	}
	return t
}()

func openOf(c byte) byte {
	switch c {
	case ')':
		return '('
	case ']':
		return '['
	}
	return '{'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isWordEnd reports whether c ends a word for span boundaries; a marker's
// closing bracket counts, so that scrubbing is idempotent.
func isWordEnd(c byte) bool { return isAlnum(c) || c == ']' }

// isTokenByte reports c ∈ [A-Za-z0-9_-].
func isTokenByte(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

// replacer builds the output of one rule over s lazily: nothing is
// allocated until the first replacement.
type replacer struct {
	s    string
	out  []byte
	last int
}

// replace replaces s[start:end] with cl's marker and counts it in c.
func (r *replacer) replace(start, end int, cl Class, c *Counts) {
	if r.out == nil {
		r.out = make([]byte, 0, len(r.s)+16)
	}
	r.out = append(r.out, r.s[r.last:start]...)
	r.out = append(r.out, markers[cl]...)
	r.last = end
	c.add(cl)
}

func (r *replacer) result() (string, bool) {
	if r.out == nil {
		return r.s, false
	}
	return string(append(r.out, r.s[r.last:]...)), true
}

// isMarkerAt reports whether a marker starts at s[i].
func isMarkerAt(s string, i int) bool {
	if i >= len(s) || s[i] != '[' {
		return false
	}
	for _, m := range markers {
		if m != "" && strings.HasPrefix(s[i:], m) {
			return true
		}
	}
	return false
}

// ---- e-mails ----

// replaceEmails replaces every e-mail in s. Stand-ins for '@' and '.'
// ("(at)", "[dot]") are read as such; when one makes an e-mail, the text is
// returned with the stand-ins normalized.
func replaceEmails(s string, c *Counts) (string, bool) {
	if strings.IndexByte(s, '@') < 0 {
		n, ok := normalizeAt(s)
		if !ok {
			return s, false
		}
		s = n
	}
	r := replacer{s: s}
	pos := 0
	for {
		k := strings.IndexByte(s[pos:], '@')
		if k < 0 {
			break
		}
		at := pos + k
		start := at
		for start > r.last && isLocal(s[start-1]) {
			start--
		}
		a, b := matchEmail(s, start, at)
		if b == 0 {
			pos = at + 1
			continue
		}
		r.replace(a, b, ClassEmail, c)
		pos = b
	}
	return r.result()
}

// normalizeAt rewrites "(at)"/"[at]"/"{at}" (with spaces around) to '@' and,
// when one was found, "(dot)"-style stand-ins to '.'.
func normalizeAt(s string) (string, bool) {
	out, n := replaceStandIn(s, "at", "@")
	if n == 0 {
		return s, false
	}
	out, _ = replaceStandIn(out, "dot", ".")
	return out, true
}

// replaceStandIn replaces bracketed word (any case, in (), [] or {}) and the
// spaces around it with repl.
func replaceStandIn(s, word, repl string) (string, int) {
	var b []byte
	last, n := 0, 0
	for i := 0; i+len(word)+2 <= len(s); i++ {
		open := s[i]
		if open != '(' && open != '[' && open != '{' {
			continue
		}
		end := i + 1 + len(word)
		if !strings.EqualFold(s[i+1:end], word) || s[end] != closeOf(open) {
			continue
		}
		a, z := i, end+1
		for a > last && s[a-1] == ' ' {
			a--
		}
		for z < len(s) && s[z] == ' ' {
			z++
		}
		b = append(b, s[last:a]...)
		b = append(b, repl...)
		last, n = z, n+1
		i = z - 1
	}
	if n == 0 {
		return s, 0
	}
	return string(append(b, s[last:]...)), n
}

func closeOf(open byte) byte {
	switch open {
	case '(':
		return ')'
	case '[':
		return ']'
	}
	return '}'
}

// isLocal reports whether c may appear in an e-mail local part: RFC 5322
// atext but '/', '=', '?' and '&' (which in text usually separate the
// address from what precedes it), '.', or non-ASCII.
func isLocal(c byte) bool {
	return isAlnum(c) || c >= 0x80 || strings.IndexByte(".!#$%'*+-^_`{|}~", c) >= 0
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
	if at+1 < len(s) && s[at+1] == '[' { // address literal
		if k := strings.IndexByte(s[at+1:min(len(s), at+50)], ']'); k > 1 {
			lit := s[at+2 : at+1+k]
			if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
				lit = v6
			}
			if _, err := netip.ParseAddr(lit); err == nil {
				return start, at + 2 + k
			}
		}
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

// ---- everything but e-mails and cued words ----

// replaceOthers applies the IP, token, secret-shape, IBAN, national id,
// card, phone and number rules in one left-to-right scan.
func replaceOthers(s string, c *Counts) (string, bool) {
	r := replacer{s: s}
	// A rejected span is retried from its next group, but only for
	// checksum-confirmed classes: noSpanUntil is that next group,
	// insideUntil the end of the rejected span.
	noSpanUntil, insideUntil, retries := 0, 0, 0
	for i := 0; i < len(s); {
		ch := s[i]
		boundary := i == 0 || !isTokenByte(s[i-1])
		if (isHex(ch) || ch == ':') && boundary && i >= r.last && (i == 0 || (s[i-1] != ':' && s[i-1] != '.')) {
			if a, b, ok := matchIPv6(s, i); ok && a >= r.last {
				r.replace(a, b, ClassIP, c)
				i = b
				continue
			}
		}
		if isTokenByte(ch) && boundary {
			j := i + 1
			for j < len(s) && isTokenByte(s[j]) {
				j++
			}
			if end, cl := classifyRunAt(s, i, j); cl != NumClasses {
				r.replace(i, end, cl, c)
				i = end
				continue
			}
		}
		if i >= noSpanUntil && (ch == '1' || ch == '2') && i+1 < len(s) && s[i+1] == ' ' && (i == 0 || !isWordEnd(s[i-1])) {
			if end := matchGroupedNIR(s, i); end > 0 {
				r.replace(i, end, ClassNationalID, c)
				i = end
				continue
			}
		}
		if i >= noSpanUntil && (isDigit(ch) || ch == '+' || ch == '(') && (i == 0 || !isWordEnd(s[i-1])) && !gluedToCode(s, i) {
			inside := i < insideUntil
			end, cl, retry := matchNumberSpan(s, i, inside, c)
			if cl != NumClasses {
				r.replace(i, end, cl, c)
				i = end
				continue
			}
			noSpanUntil = retry
			if !inside {
				insideUntil, retries = end, 0
				if digitsIn(s[i:end]) < minNumberRun && strings.Count(s[i:end], ".") < 4 {
					noSpanUntil = end // nothing checksummed or an IP can hide in it
				}
			} else if retries++; retries >= maxSpanRetries {
				noSpanUntil = insideUntil
			}
		}
		if isDigit(ch) {
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			if j-i >= minNumberRun {
				r.replace(i, j, classifyRun(s[i:j], c), c)
			}
			i = j
			continue
		}
		i++
	}
	return r.result()
}

func digitsIn(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n
}

// gluedToCode reports a span start glued by '-' or '_' to a word, as in an
// order or product code ("ORD-2026-00042", "SKU_123 456 789"): such digits
// are only replaced as a long run (the [number] rule).
func gluedToCode(s string, i int) bool {
	return i >= 2 && (s[i-1] == '-' || s[i-1] == '_') && isAlpha(s[i-2])
}

// classifyRun classifies a bare digit run of ≥ minNumberRun digits.
func classifyRun(d string, c *Counts) Class {
	if cl := classifyDigits(d); cl != NumClasses {
		if cl == ClassNationalID && d[0] == '0' && confirmNational(d, c) == ClassPhone {
			return ClassPhone // a national number that happens to pass an id check
		}
		return cl
	}
	if d[0] == '0' && (len(d) == 10 || len(d) == 11) {
		return ClassPhone
	}
	return ClassNumber
}

// classifyRunAt classifies the token run s[i:j] (and what follows it for
// JWTs and ids in groups) and returns the end of the match and its class,
// or NumClasses.
func classifyRunAt(s string, i, j int) (int, Class) {
	run := s[i:j]
	if n := len(run); n < 8 && n != 2 && n != 4 {
		return 0, NumClasses // shorter than every class but ids in groups
	}
	if end := matchJWT(s, i, j); end > 0 {
		return end, ClassSecret
	}
	if isAWSKeyID(run) || hasSecretPrefix(run) {
		return j, ClassSecret
	}
	n := len(run)
	hasDigit, hasLetter := false, false
	for k := 0; k < n; k++ {
		if isDigit(run[k]) {
			hasDigit = true
		} else if isAlpha(run[k]) {
			hasLetter = true
		}
	}
	if hasDigit && hasLetter {
		if n >= 15 && n <= 34 && isAlpha(run[0]) && isAlpha(run[1]) && isIBAN(run) {
			return j, ClassIBAN
		}
		if n >= 8 && n <= 17 {
			var buf [17]byte
			id := buf[:0]
			for k := 0; k < n; k++ {
				if run[k] != '-' {
					id = append(id, run[k])
				}
			}
			if cl := classifyIDRun(unsafeString(id)); cl != NumClasses {
				return j, cl
			}
		}
	}
	if ((n == 4 && isAlpha(run[0]) && isAlpha(run[1]) && isDigit(run[2]) && isDigit(run[3])) || (n == 2 && isAlpha(run[0]) && isAlpha(run[1]))) &&
		groupContinues(s, j) {
		if end, cl := matchGroupedID(s, i); cl != NumClasses {
			return end, cl
		}
	}
	if n >= minTokenLen && looksLikeToken(run) {
		return j, ClassToken
	}
	if n >= minHexTokenLen && hasDigit && hasLetter && isHexRun(run) {
		return j, ClassToken
	}
	return 0, NumClasses
}

// groupContinues reports a separator at s[j] followed by a digit: an id
// written in groups goes on.
func groupContinues(s string, j int) bool {
	if j >= len(s) {
		return false
	}
	w := spaceWidth(s, j)
	if s[j] == '-' {
		w = 1
	}
	return w > 0 && j+w < len(s) && isDigit(s[j+w])
}

// matchGroupedID matches an IBAN ("FR76 3000 6000 …") or UK NINO ("AB 12 34
// 56 C") written in groups from s[i], returning its end and class.
func matchGroupedID(s string, i int) (int, Class) {
	want := ibanLength(s[i:])
	if i+2 >= len(s) || !isDigit(s[i+2]) || want == 0 {
		want = 9 // NINO
	}
	var buf [34]byte
	id, j := collectGrouped(buf[:0], s, i, want)
	if len(id) != want || (j < len(s) && isTokenByte(s[j])) {
		return 0, NumClasses
	}
	v := unsafeString(id)
	switch {
	case want == 9 && isNINO(v):
		return j, ClassNationalID
	case want != 9 && isIBAN(v):
		return j, ClassIBAN
	}
	return 0, NumClasses
}

// matchGroupedNIR matches a French NIR of Corsica written in groups ("2 85
// 05 2A 006 084 82"; the all-digit ones are number spans) from s[i].
func matchGroupedNIR(s string, i int) int {
	var buf [15]byte
	id, j := collectGrouped(buf[:0], s, i, 15)
	if len(id) != 15 || (j < len(s) && isTokenByte(s[j])) || !(upper(id[6]) == 'A' || upper(id[6]) == 'B') || !isNIR(unsafeString(id)) {
		return 0
	}
	return j
}

// collectGrouped appends up to want letters and digits from s[i], crossing
// single separators (space, no-break space, '-') between them, and returns
// them and the end of the last one.
func collectGrouped(id []byte, s string, i, want int) ([]byte, int) {
	j := i
	for j < len(s) && len(id) < want {
		switch {
		case isAlnum(s[j]):
			id = append(id, s[j])
			j++
			continue
		case len(id) > 0 && j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isAlnum(s[j+1]):
			j++
			continue
		case len(id) > 0:
			if w := spaceWidth(s, j); w > 0 && j+w < len(s) && isAlnum(s[j+w]) {
				j += w
				continue
			}
		}
		break
	}
	return id, j
}

// spaceWidth is the width of a space-like separator at s[i] (space,
// no-break space, narrow no-break space, thin space), or 0.
func spaceWidth(s string, i int) int {
	switch {
	case s[i] == ' ':
		return 1
	case s[i] == 0xC2 && i+1 < len(s) && s[i+1] == 0xA0:
		return 2
	case s[i] == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xAF || s[i+2] == 0x89 || s[i+2] == 0x8A):
		return 3
	}
	return 0
}

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

func isHexRun(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
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
		if !isHex(c) {
			return false
		}
	}
	return true
}

// matchIPv6 matches an IPv6 address starting at s[i] (hex digit or ':'),
// with an optional zone, and with the brackets around it when there are;
// it returns the span to replace.
func matchIPv6(s string, i int) (start, end int, ok bool) {
	// Cheap shape test first: a ':' within the first five bytes.
	if k := strings.IndexByte(s[i:min(len(s), i+5)], ':'); k < 0 {
		return 0, 0, false
	}
	j, colons, double, group, hex := i, 0, false, 0, 0
	for j < len(s) && j-i < 46 {
		c := s[j]
		switch {
		case c == ':':
			colons++
			if j > i && s[j-1] == ':' {
				double = true
			}
			group = 0
		case isHex(c):
			group++
			hex++
			if group > 4 {
				return 0, 0, false
			}
		case c == '.':
			group = 0 // an IPv4 tail: ParseAddr judges it
		default:
			goto done
		}
		j++
	}
done:
	for j > i && (s[j-1] == '.' || (s[j-1] == ':' && !(j-2 >= i && s[j-2] == ':'))) {
		j-- // sentence punctuation, a lone trailing ':'
	}
	if colons < 2 || hex < 4 || (!double && colons != 7 && !(colons == 6 && strings.IndexByte(s[i:j], '.') >= 0)) {
		return 0, 0, false // also "a::b", "::1", "::": not an address of anyone
	}
	cand := s[i:j]
	end = j
	if j < len(s) && s[j] == '%' { // zone
		k := j + 1
		for k < len(s) && k-j < 16 && isTokenByte(s[k]) {
			k++
		}
		if k > j+1 {
			end = k
		}
	}
	if end < len(s) && (isTokenByte(s[end]) || s[end] == ':') {
		return 0, 0, false
	}
	if _, err := netip.ParseAddr(cand); err != nil {
		return 0, 0, false
	}
	start = i
	if i > 0 && s[i-1] == '[' && end < len(s) && s[end] == ']' {
		start, end = i-1, end+1
	}
	return start, end, true
}

// ---- phone numbers and other digit spans ----

// Separator kinds in a number span.
const (
	sepSpace = 1 << iota
	sepDot
	sepDash
	sepSlash
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
// and its class, or, when the span is none of those, the end of the span,
// NumClasses and where the scan may try again (the next group). A last
// group glued to a letter or marker is left out of the span. A span that
// fails as a whole is tried without its last groups, so that a number
// glued to unrelated digits ("0 4111 1111 1111 1111 0") is still found;
// inside a rejected span (inside), only IP addresses and checksum-confirmed
// classes count.
func matchNumberSpan(s string, i int, inside bool, c *Counts) (end int, cl Class, retry int) {
	n := len(s)
	j := i
	plus := s[j] == '+'
	if plus {
		j++
	}
	var groups [20]numGroup
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
			if g.len == 1 && s[j+1] == '0' {
				g.val = 0 // "(0)": a trunk prefix after a country code
			}
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
		w := 1
		kind := 0
		switch c {
		case '.':
			kind = sepDot
		case '-':
			kind = sepDash
		case '/':
			kind = sepSlash
		default:
			if w = spaceWidth(s, j); w > 0 {
				kind = sepSpace
			}
		}
		next := byte(0)
		if j+w < n {
			next = s[j+w]
		}
		if kind != 0 && (isDigit(next) || next == '(') {
			sep, dotAdj = 0, false
			if !g.paren && next != '(' {
				sep = kind
			} else if c == '.' {
				dotAdj = true
			}
			j += w
			continue
		}
		if g.paren && isDigit(c) {
			sep, dotAdj = 0, false
			continue
		}
		break
	}
	if ng == 0 {
		return i + 1, NumClasses, i + 1
	}
	retry, spanEnd := groups[0].end, groups[ng-1].end
	// A last group glued to a word, token or marker is not part of the span.
	for ng > 0 && groups[ng-1].end < n && (isTokenByte(s[groups[ng-1].end]) || s[groups[ng-1].end] == '[') {
		ng--
	}
	if ng == 0 {
		return spanEnd, NumClasses, retry
	}
	// The digits of the span, for the checksum and phone checks; cum[k] is
	// how many belong to the first k groups.
	var buf [maxNumberSpan]byte
	var cum [len(groups) + 1]int
	digits := buf[:0]
	for k := range ng {
		g := groups[k]
		start := g.end - g.len
		if g.paren {
			start--
		}
		digits = append(digits, s[start:start+g.len]...)
		cum[k+1] = len(digits)
	}
	trim := maxSpanTrim
	if cum[ng] < 4 {
		trim = 0 // no class has fewer digits
	}
	for k := ng; k >= 1 && k >= ng-trim; k-- {
		if k < ng && k < 2 && !plus {
			break // a prefix of one group is a digit run, handled elsewhere
		}
		end = groups[k-1].end
		ds := unsafeString(digits[:cum[k]])
		cl = classifyNumberSpan(groups[:k], ds, plus, s[i], c)
		if inside {
			switch cl {
			case ClassIP, ClassCard, ClassNationalID:
				return end, cl, 0
			}
			continue
		}
		if cl == NumClasses {
			for _, g := range groups[:k] {
				if g.len >= minNumberRun {
					cl = ClassNumber
				}
			}
		}
		switch cl {
		case ClassPhone:
			return phoneExtension(s, end), cl, 0
		case NumClasses:
			continue
		}
		return end, cl, 0
	}
	return spanEnd, NumClasses, retry
}

// isDateSpan reports groups starting with a calendar date: Y-M-D (years
// 19xx and 20xx), D-M-Y or M/D/Y, one separator kind between the three;
// digits are the span's digits.
func isDateSpan(groups []numGroup, digits string) bool {
	if len(groups) < 3 || groups[0].paren || groups[1].paren || groups[2].paren ||
		groups[1].sep == 0 || groups[1].sep != groups[2].sep {
		return false
	}
	a, b, c := groups[0], groups[1], groups[2]
	switch {
	case a.len == 4 && b.len <= 2 && c.len <= 2:
		return (digits[:2] == "19" || digits[:2] == "20") && b.val >= 1 && b.val <= 12 && c.val >= 1 && c.val <= 31
	case a.len <= 2 && b.len <= 2 && (c.len == 4 || c.len == 2):
		return a.val >= 1 && b.val >= 1 && ((a.val <= 31 && b.val <= 12) || (a.val <= 12 && b.val <= 31))
	}
	return false
}

// classifyNumberSpan applies the id, card, phone, IP and number rules
// documented on ScrubText to a span's groups and digits.
func classifyNumberSpan(groups []numGroup, digits string, plus bool, first byte, c *Counts) Class {
	nd, seps, singles, paren, dotAdj := 0, 0, 0, false, false
	quad := len(groups) == 4
	for k, g := range groups {
		nd += g.len
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
		if nd >= 8 && nd <= 15 && singles <= 2 && !mixed {
			return ClassPhone
		}
		return confirmE164(e164Digits(groups, digits), c)
	}
	if quad && !paren && !dotAdj {
		return ClassIP
	}
	if len(groups) == 1 {
		if nd < minNumberRun {
			return NumClasses
		}
		return classifyRun(digits, c)
	}
	if !paren && len(groups) == 5 && groups[0].len == 2 && groups[1].len == 2 && groups[2].len == 2 && groups[3].len == 3 &&
		groups[4].len == 2 && isBelgianNN(digits) {
		return ClassNationalID // the Belgian notation, 85.07.30-033.28
	}
	if !paren && !mixed {
		if len(groups) == 3 && groups[0].len == 3 && groups[1].len == 2 && groups[2].len == 4 && seps&(sepDash|sepSpace) != 0 &&
			isSSN(digits[:3], digits[3:5], digits[5:]) {
			return ClassNationalID
		}
		if len(groups) == 2 && groups[0].len == 6 && groups[1].len == 4 && seps == sepDash && isSwedishPN(digits) {
			return ClassNationalID
		}
	}
	if cl := classifyDigits(digits); cl != NumClasses {
		if cl == ClassNationalID && (first == '0' || first == '(') && confirmNational(digits, c) == ClassPhone {
			return ClassPhone // a national number that happens to pass an id check
		}
		return cl
	}
	date := isDateSpan(groups, digits)
	if !date && len(digits) >= 10 && digits[0] == '0' && digits[1] == '0' {
		if cl := confirmE164(digits[2:], c); cl != NumClasses {
			return cl // "00" international prefix
		}
	}
	if mixed || nd < minNumberRun || singles > 0 || (seps == sepDot && groups[0].len == 1) {
		if !date && (first == '0' || first == '(') && nd >= 9 && nd <= 13 {
			return confirmNational(digits, c)
		}
		return NumClasses
	}
	thousands := !paren && len(groups) >= 3 && groups[0].len <= 3
	for _, g := range groups[1:] {
		thousands = thousands && g.len == 3
	}
	if nd > 12 || thousands {
		return ClassNumber
	}
	return ClassPhone
}

// e164Digits leaves a "(0)" trunk group out of an international number's
// digits.
func e164Digits(groups []numGroup, digits string) string {
	off := 0
	for _, g := range groups {
		if g.paren && g.len == 1 && g.val == 0 {
			return digits[:off] + digits[off+1:]
		}
		off += g.len
	}
	return digits
}

// phoneExtension extends a phone span ending at end over an extension:
// "ext. 12", "ext 12", "x12", "#12", ";ext=12", "poste 12".
func phoneExtension(s string, end int) int {
	j := end
	for j < len(s) && s[j] == ' ' {
		j++
	}
	k := j
	switch {
	case hasPrefixFold(s[k:], ";ext="):
		k += 5
	case hasPrefixFold(s[k:], "extension"):
		k += 9
	case hasPrefixFold(s[k:], "ext"):
		k += 3
	case hasPrefixFold(s[k:], "poste"):
		k += 5
	case k < len(s) && (s[k] == 'x' || s[k] == 'X' || s[k] == '#'):
		k++
	default:
		return end
	}
	for k < len(s) && (s[k] == '.' || s[k] == ':' || s[k] == ' ') {
		k++
	}
	d := k
	for k < len(s) && isDigit(s[k]) && k-d < 6 {
		k++
	}
	if k == d || (k < len(s) && isTokenByte(s[k])) {
		return end
	}
	return k
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
