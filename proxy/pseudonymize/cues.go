package pseudonymize

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Cue words (normalized: lowercase ASCII, '_' and '-' removed) after which
// replaceCued looks for a name or a secret. Names are found only after a
// cue: this is best effort, not a promise.
var (
	// honorifics precede a name: "Mr Smith", "Mme Dupont", "M. Martin".
	honorifics = setOf("mr", "mrs", "ms", "mx", "miss", "dr", "prof", "sir", "madam", "mme", "mlle", "mmes", "m",
		"monsieur", "madame", "mademoiselle", "herr", "frau", "sr", "sra", "srta", "señor", "señora", "señorita",
		"don", "doña", "dona", "signor", "signora", "signore", "sig", "dott", "mevrouw", "meneer", "dhr", "mevr")
	// greetings and closings precede a name: "Dear Jane", "Regards, John".
	greetings = setOf("dear", "hello", "hi", "hey", "bonjour", "bonsoir", "salut", "cher", "chère", "chere", "chers",
		"hallo", "liebe", "lieber", "hola", "estimado", "estimada", "querido", "querida", "ciao", "gentile", "caro",
		"cara", "buongiorno", "beste", "geachte", "hej", "olá", "ola", "regards", "cordialement", "cheers",
		"sincerely", "thanks", "merci", "danke", "gracias", "grazie")
	// labels are followed by ':' or '=' (or "is") and a name, in any case.
	labels = setOf("name", "nom", "prenom", "prénom", "vorname", "nachname", "nombre", "apellido", "apellidos",
		"cognome", "nome", "firstname", "lastname", "fullname", "surname", "givenname", "familyname")
	// intros are followed by a name: "je m'appelle Jane", "me llamo Ana".
	intros = setOf("appelle", "llamo", "chiamo", "heiße", "heisse")
	// notPersonLabel are words before "name" that make it another kind of
	// name ("Product name: Blue Shoes").
	notPersonLabel = setOf("product", "file", "company", "brand", "site", "event", "page", "host", "domain", "app",
		"item", "project", "team", "group", "campaign", "category", "shop", "store", "model", "variant", "plan",
		"package", "device", "browser", "os", "city", "country", "screen", "layer", "field", "class", "tag", "list",
		"segment", "org", "organization", "business", "account", "course", "song", "album", "artist", "game")
	// notNames are capitalized words after a greeting that are not names.
	notNames = setOf("world", "everyone", "everybody", "all", "there", "team", "friends", "folks", "guys", "again",
		"monde", "tous", "tout", "toutes", "welt", "mundo", "todos", "tutti", "beaucoup", "schön", "schoen", "sehr",
		"you", "and", "the", "for", "to")
	// particles join the parts of a name ("Ludwig van Beethoven").
	particles = setOf("de", "du", "des", "da", "di", "del", "della", "van", "von", "der", "den", "le", "la", "ter",
		"ten", "dos", "das", "bin", "ibn", "al", "el", "y")
)

func setOf(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// cueShapes[f][l] has bit n set when some cue word (normalized) of n bytes
// starts with a byte of bucket f and ends with one of bucket l: the
// pre-filter's test, which most words fail. Credential names are found by
// the '=' or ':' after them instead.
var cueShapes = func() (f [32][32]uint32) {
	for _, set := range []map[string]bool{honorifics, greetings, labels, intros, authSchemes} {
		for w := range set {
			f[bucket(w[0])][bucket(w[len(w)-1])] |= 1 << uint(min(len(w), 31))
		}
	}
	return f
}()

// bucket maps a lowercase letter to itself (0–25) and other bytes to 26–31.
func bucket(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a'
	}
	return 26 + c%6
}

// mayBeCue reports whether a word with these normalized first and last
// bytes and length can be a cue word.
func mayBeCue(first, last byte, n int) bool {
	return cueShapes[bucket(first)][bucket(last)]&(1<<uint(min(n, 31))) != 0
}

// unitShape returns the normalized first and last bytes and the length of
// the unit u (lowercase ASCII, '_' and '-' left out).
func unitShape(u string) (first, last byte, n int) {
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c == '_' || c == '-' {
			continue
		}
		c = lowerASCII(c)
		if n == 0 {
			first = c
		}
		last = c
		n++
	}
	return first, last, n
}

// sepAfter reports a '=' or ':' after s[j], past at most three spaces or
// quotes: what follows a credential name.
func sepAfter(s string, j int) bool {
	for k := j; k < len(s) && k-j <= 3; k++ {
		switch s[k] {
		case '=', ':':
			return true
		case ' ', '"', '\'':
			continue
		}
		return false
	}
	return false
}

// isUnitByte reports bytes of the words replaceCued looks at.
func isUnitByte(c byte) bool { return isTokenByte(c) || c >= 0x80 }

// appendNormUnit appends the unit lowercased (ASCII) without '_' and '-'.
func appendNormUnit(dst []byte, u string) []byte {
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c == '_' || c == '-' {
			continue
		}
		dst = append(dst, lowerASCII(c))
	}
	return dst
}

// replaceCued replaces secrets after credential names and authorization
// schemes, and names after cue words (see ScrubText).
func replaceCued(s string, c *Counts) (string, bool) {
	r := replacer{s: s}
	var curBuf, prevBuf [40]byte
	prevStart, prevEnd := 0, 0 // the previous unit
	for i := 0; i < len(s); {
		if !isUnitByte(s[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && isUnitByte(s[j]) {
			j++
		}
		first, last, n := unitShape(s[i:j])
		sep := sepAfter(s, j)
		if i < r.last || j-i > len(curBuf) || n == 0 || !(sep || mayBeCue(first, last, n)) {
			prevStart, prevEnd, i = i, j, j
			continue
		}
		w := unsafeString(appendNormUnit(curBuf[:0], s[i:j]))
		prev := ""
		if prevEnd-prevStart <= len(prevBuf) && strings.TrimSpace(s[prevEnd:i]) == "" {
			prev = unsafeString(appendNormUnit(prevBuf[:0], s[prevStart:prevEnd]))
		}
		if a, b, cl := matchCue(s, j, w, prev, sep); b > 0 {
			r.replace(a, b, cl, c)
			prevStart, prevEnd, i = b, b, b
			continue
		}
		prevStart, prevEnd, i = i, j, j
	}
	return r.result()
}

// matchCue matches what follows the cue w ending at s[j] (sep: a '=' or
// ':' follows): the span to replace and its class, or 0, 0.
func matchCue(s string, j int, w, prev string, sep bool) (int, int, Class) {
	if len(w) == 0 || len(w) >= 32 {
		return 0, 0, NumClasses
	}
	if sep && isSecretKey(w) {
		if a, b := matchSecretValue(s, j); b > 0 {
			return a, b, ClassSecret
		}
	}
	if j < len(s) && s[j] == ' ' && authSchemes[w] {
		if a, b := matchAuthScheme(s, j, w); b > 0 {
			return a, b, ClassSecret
		}
	}
	switch {
	case honorifics[w]:
		k := j
		dot := k < len(s) && s[k] == '.'
		if dot {
			k++
		} else if w == "m" {
			return 0, 0, NumClasses // "M." only
		}
		sp := skipSpaces(s, k, 2)
		if sp == k && !dot {
			return 0, 0, NumClasses
		}
		if e := matchNames(s, sp, true, 3); e > 0 {
			return sp, e, ClassName
		}
	case greetings[w]:
		k := j
		for n := 0; k < len(s) && n < 4 && strings.IndexByte(" ,\n\r\t", s[k]) >= 0; n++ {
			k++
		}
		if k == j {
			return 0, 0, NumClasses
		}
		if e := matchNames(s, k, true, 3); e > 0 {
			return k, e, ClassName
		}
	case labels[w] && !notPersonLabel[prev]:
		k := skipSpaces(s, j, 2)
		switch {
		case k < len(s) && (s[k] == ':' || s[k] == '='):
			k++
		case k > j && hasPrefixFold(s[k:], "is "):
			k += 3
		default:
			return 0, 0, NumClasses
		}
		k = skipSpaces(s, k, 2)
		for k < len(s) && (s[k] == '"' || s[k] == '\'') {
			k++
		}
		if e := matchNames(s, k, false, 3); e > 0 {
			return k, e, ClassName
		}
	case intros[w]:
		if k := skipSpaces(s, j, 2); k > j {
			if e := matchNames(s, k, false, 2); e > 0 {
				return k, e, ClassName
			}
		}
	}
	return 0, 0, NumClasses
}

// skipSpaces skips at most n spaces (no-break spaces too) from s[i].
func skipSpaces(s string, i, n int) int {
	for ; n > 0 && i < len(s); n-- {
		w := spaceWidth(s, i)
		if w == 0 {
			break
		}
		i += w
	}
	return i
}

// matchNames matches up to max name words from s[i] (capitalized ones when
// capital is set; particles between them), separated by single spaces, and
// returns the end of the last one, or 0.
func matchNames(s string, i int, capital bool, max int) int {
	end, words, k := 0, 0, i
	for words < max && k < len(s) {
		e, upper := nameWord(s, k)
		if e == 0 {
			break
		}
		word := s[k:e]
		lw := strings.ToLower(word)
		switch {
		case words > 0 && particles[lw]:
			// counts only when a name word follows
		case capital && !upper:
			return end
		default:
			if words == 0 && (notNames[lw] || honorifics[lw] || greetings[lw]) {
				return 0
			}
			if e < len(s) && s[e] == '.' && utf8.RuneCountInString(word) == 1 {
				e++ // an initial: "J."
			}
			end, words = e, words+1
		}
		if e >= len(s) {
			break
		}
		n := spaceWidth(s, e)
		if n == 0 {
			break
		}
		k = e + n
	}
	return end
}

// nameWord returns the end of the word of letters (with inner hyphens and
// apostrophes, straight or curly) at s[i] and whether it starts with an
// uppercase letter; 0 when s[i] starts no word. A single letter is a word
// only as an initial.
func nameWord(s string, i int) (int, bool) {
	r, size := utf8.DecodeRuneInString(s[i:])
	if !unicode.IsLetter(r) {
		return 0, false
	}
	upper := unicode.IsUpper(r)
	j, letters := i+size, 1
	for j < len(s) {
		r, size = utf8.DecodeRuneInString(s[j:])
		if unicode.IsLetter(r) {
			j += size
			letters++
			continue
		}
		if (r == '-' || r == '\'' || r == '’') && j+size < len(s) {
			if next, _ := utf8.DecodeRuneInString(s[j+size:]); unicode.IsLetter(next) {
				j += size
				continue
			}
		}
		break
	}
	if letters == 1 && !(upper && j < len(s) && s[j] == '.') {
		return 0, false
	}
	return j, upper
}
