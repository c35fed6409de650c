package pseudonymize

import (
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// unsafeString views b as a string without copying. The caller must not
// modify b while the string is in use, nor retain the string.
func unsafeString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// matcher matches names against exact entries and '*'-suffixed prefixes.
type matcher struct {
	exact    map[string]struct{}
	prefixes []string
	fold     bool      // compare ASCII case-insensitively (entries are lowercased)
	firsts   [256]bool // first bytes of the entries (all, after an empty prefix)
}

func newMatcher(entries []string, fold bool) matcher {
	m := matcher{exact: make(map[string]struct{}, len(entries)), fold: fold}
	for _, e := range entries {
		if fold {
			e = strings.ToLower(e)
		}
		if e == "" || e == "*" {
			for i := range m.firsts {
				m.firsts[i] = true
			}
		} else {
			m.firsts[e[0]] = true
		}
		if p, ok := strings.CutSuffix(e, "*"); ok {
			m.prefixes = append(m.prefixes, p)
			continue
		}
		m.exact[e] = struct{}{}
	}
	return m
}

// match reports whether name matches. name must already be lowercased when
// fold is set.
func (m *matcher) match(name string) bool {
	if name != "" && !m.firsts[name[0]] {
		return false
	}
	if _, ok := m.exact[name]; ok {
		return true
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// matchFold lowercases name (ASCII) into scratch when needed and matches it.
func (m *matcher) matchFold(scratch []byte, name string) ([]byte, bool) {
	if name != "" && !m.firsts[lowerASCII(name[0])] {
		return scratch, false
	}
	if !hasUpperASCII(name) {
		return scratch, m.match(name)
	}
	scratch = appendLowerASCII(scratch[:0], name)
	_, ok := m.exact[string(scratch)]
	if !ok {
		for _, p := range m.prefixes {
			if strings.HasPrefix(string(scratch), p) {
				ok = true
				break
			}
		}
	}
	return scratch, ok
}

func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func appendLowerASCII(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// piiMatcher decides whether a property/trait name is personal.
type piiMatcher struct {
	m matcher
}

// piiSubstrings make any name containing them personal.
var piiSubstrings = []string{"email", "phone", "courriel", "useragent"}

// trackerKeys are other trackers' and devices' identifiers as normalized
// property names (the raw forms, "_ga", "_pk_id.1.abcd", are in
// trackerParams).
var trackerKeys = map[string]bool{
	"visitorid": true, "pkvid": true, "pkid": true, "gaclientid": true, "googleclientid": true, "fbp": true, "fbc": true,
	"ajsanonymousid": true, "ajsuserid": true, "hubspotutk": true, "hstc": true, "mktok": true, "hjid": true,
	"deviceid": true, "advertisingid": true, "idfa": true, "idfv": true, "gaid": true, "adid": true, "aaid": true,
}

// phoneDevices are words containing "phone" that are not about phone numbers.
var phoneDevices = []string{"iphone", "smartphone", "headphone", "microphone", "earphone"}

func newPIIMatcher(entries []string) piiMatcher {
	normalized := make([]string, 0, len(entries))
	for _, e := range entries {
		prefix := strings.HasSuffix(e, "*")
		n := string(appendNormalizedName(nil, strings.TrimSuffix(e, "*")))
		if prefix {
			n += "*"
		}
		normalized = append(normalized, n)
	}
	return piiMatcher{m: newMatcher(normalized, false)}
}

// appendNormalizedName appends name lowercased with everything but letters
// and digits removed and accents folded ("E-Mail" → "email", "first_Name"
// → "firstname", "Prénom" → "prenom").
func appendNormalizedName(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			// Rare: fold accents (NFD, drop combining marks) first.
			name, _, _ = transform.String(transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC), name)
			break
		}
	}
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
				dst = append(dst, c)
			case 'A' <= c && c <= 'Z':
				dst = append(dst, c+'a'-'A')
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(name[i:])
		i += size
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
		}
	}
	return dst
}

// isPII reports whether name is personal (PII-named, a credential or a
// tracker id); scratch is reused and returned.
func (pm *piiMatcher) isPII(scratch []byte, name string) ([]byte, bool) {
	scratch, cl := pm.classify(scratch, name)
	return scratch, cl != NumClasses
}

// classify says why name is personal: ClassSecret for a credential name,
// ClassTrackerID for a tracker's id, ClassPersonalKey for a PII name, or
// NumClasses when it is not; scratch is reused and returned.
func (pm *piiMatcher) classify(scratch []byte, name string) ([]byte, Class) {
	scratch = appendNormalizedName(scratch[:0], name)
	n := unsafeString(scratch) // read-only view; not retained
	if isSecretKey(n) {
		return scratch, ClassSecret
	}
	if trackerKeys[n] {
		return scratch, ClassTrackerID
	}
	if _, ok := pm.m.exact[n]; ok {
		return scratch, ClassPersonalKey
	}
	for _, p := range pm.m.prefixes {
		if strings.HasPrefix(n, p) {
			return scratch, ClassPersonalKey
		}
	}
	for _, sub := range piiSubstrings {
		idx := strings.Index(n, sub)
		if idx < 0 {
			continue
		}
		if sub != "phone" {
			return scratch, ClassPersonalKey
		}
		// "phone" counts unless every occurrence is part of a device word.
		for idx >= 0 {
			if !partOfDeviceWord(n, idx) {
				return scratch, ClassPersonalKey
			}
			next := strings.Index(n[idx+1:], sub)
			if next < 0 {
				break
			}
			idx += 1 + next
		}
	}
	return scratch, NumClasses
}

func partOfDeviceWord(n string, idx int) bool {
	for _, w := range phoneDevices {
		off := len(w) - len("phone")
		if idx >= off && strings.HasPrefix(n[idx-off:], w) {
			return true
		}
	}
	return false
}
