package sensitive

import (
	"unicode"
	"unicode/utf8"
)

// How a normalizer reads its source.
const (
	// srcPlain is text as it is.
	srcPlain uint8 = iota
	// srcJSON is the content of a JSON string, escapes included.
	srcJSON
	// srcURL is a URL path: %XX escapes are decoded.
	srcURL
)

// Classes of the runes a normalizer emits.
const (
	clsNone  uint8 = iota // start, or after a separator
	clsLower              // lower-case letter (or a letter without case)
	clsUpper              // upper-case letter
	clsDigit              // digit
)

// norm reads a source as normalized bytes: letters folded to lower-case
// ASCII without accents (é → e, ß → ss, œ → oe; other scripts lower-cased,
// kept as UTF-8), digits as they are, and every run of other characters —
// and every camelCase boundary — as one ' ' between tokens (never leading
// or trailing). It is a value: copying it saves its position. It never
// allocates.
type norm struct {
	s    string
	i    int // next source byte
	mode uint8
	prev uint8 // class of the last rune emitted
	sep  bool  // a boundary is due before the next token rune

	out    [8]byte
	no, np uint8 // bytes in out, next to emit

	// curStart and curEnd are the source span of the rune whose bytes are
	// being emitted; prevEnd is where the rune before it ended.
	curStart, curEnd, prevEnd int
}

func newNorm(s string, mode uint8) norm { return norm{s: s, mode: mode} }

// next returns the next normalized byte, or false at the end.
func (n *norm) next() (byte, bool) {
	for {
		if n.np < n.no {
			b := n.out[n.np]
			n.np++
			return b, true
		}
		if n.i >= len(n.s) {
			return 0, false
		}
		start := n.i
		r := n.decode()
		if r < 0 {
			continue // a rune that emits nothing (a combining mark)
		}
		cls, fold := classify(r)
		if cls == clsNone {
			n.sep = n.sep || n.prev != clsNone
			n.prev = clsNone
			continue
		}
		// camelCase: "bloodType" and "HIVStatus" split before the capital.
		if cls == clsUpper && (n.prev == clsLower || n.prev == clsDigit || n.prev == clsUpper && n.nextIsLower()) {
			n.sep = true
		}
		n.no, n.np = 0, 0
		if n.sep {
			n.out[0] = ' '
			n.no = 1
			n.sep = false
		}
		if fold != "" {
			n.no += uint8(copy(n.out[n.no:], fold))
		} else {
			n.no += uint8(utf8.EncodeRune(n.out[n.no:], unicode.ToLower(r)))
		}
		n.prev = cls
		n.prevEnd, n.curStart, n.curEnd = n.curEnd, start, n.i
	}
}

// nextIsLower reports whether the rune after the current position is a
// lower-case letter (without moving).
func (n *norm) nextIsLower() bool {
	if n.i >= len(n.s) {
		return false
	}
	save := n.i
	r := n.decode()
	n.i = save
	if r < 0 {
		return false
	}
	cls, _ := classify(r)
	return cls == clsLower
}

// decode reads one rune of the source in its mode: -1 for a rune that
// emits nothing, ' ' for an escape that stands for a separator.
func (n *norm) decode() rune {
	s, i := n.s, n.i
	switch {
	case n.mode == srcJSON && s[i] == '\\' && i+1 < len(s):
		if s[i+1] == 'u' && i+6 <= len(s) {
			v, ok := hex4(s[i+2 : i+6])
			n.i = i + 6
			if !ok || v >= 0xD800 && v < 0xE000 {
				return ' ' // a surrogate (emoji, rare scripts): a separator
			}
			return v
		}
		n.i = i + 2
		switch s[i+1] {
		case '"', '\\', '/':
			return rune(s[i+1])
		}
		return ' ' // \n, \t…
	case n.mode == srcURL && s[i] == '%':
		var buf [utf8.UTFMax]byte
		k := 0
		for k < len(buf) && n.i+2 < len(s) && s[n.i] == '%' {
			b, ok := hex2(s[n.i+1 : n.i+3])
			if !ok || k > 0 && b&0xC0 != 0x80 {
				break
			}
			buf[k] = b
			k++
			n.i += 3
			if utf8.FullRune(buf[:k]) {
				break
			}
		}
		if k == 0 {
			n.i = i + 1
			return '%'
		}
		r, _ := utf8.DecodeRune(buf[:k])
		return r
	}
	if c := s[i]; c < utf8.RuneSelf {
		n.i = i + 1
		return rune(c)
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	n.i = i + size
	if unicode.Is(unicode.Mn, r) {
		return -1 // "e" + U+0301 reads as "e"
	}
	return r
}

func hex4(s string) (rune, bool) {
	var v rune
	for i := 0; i < 4; i++ {
		d, ok := unhex(s[i])
		if !ok {
			return 0, false
		}
		v = v<<4 | rune(d)
	}
	return v, true
}

func hex2(s string) (byte, bool) {
	a, ok1 := unhex(s[0])
	b, ok2 := unhex(s[1])
	return a<<4 | b, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// classify returns r's class and, for Latin letters and digits, its
// folded ASCII form ("" otherwise: the caller emits r lower-cased).
func classify(r rune) (uint8, string) {
	switch {
	case 'a' <= r && r <= 'z':
		return clsLower, asciiLetters[r-'a' : r-'a'+1]
	case 'A' <= r && r <= 'Z':
		return clsUpper, asciiLetters[r-'A' : r-'A'+1]
	case '0' <= r && r <= '9':
		return clsDigit, digits[r-'0' : r-'0'+1]
	case r < utf8.RuneSelf:
		return clsNone, ""
	case r >= 0xC0 && r < 0x180:
		f := latinFold[r-0xC0]
		if f == "" {
			return clsNone, "" // × ÷
		}
		if unicode.IsUpper(r) {
			return clsUpper, f
		}
		return clsLower, f
	case unicode.IsLetter(r):
		if unicode.IsUpper(r) {
			return clsUpper, ""
		}
		return clsLower, ""
	case unicode.IsDigit(r):
		return clsDigit, ""
	}
	return clsNone, ""
}

const (
	asciiLetters = "abcdefghijklmnopqrstuvwxyz"
	digits       = "0123456789"
)

// latinFold folds U+00C0–U+017F (Latin-1 Supplement letters and Latin
// Extended-A) to lower-case ASCII.
var latinFold = [0x180 - 0xC0]string{
	// U+00C0
	"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
	"d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "ss",
	// U+00E0
	"a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
	"d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "y",
	// U+0100
	"a", "a", "a", "a", "a", "a", "c", "c", "c", "c", "c", "c", "c", "c", "d", "d",
	"d", "d", "e", "e", "e", "e", "e", "e", "e", "e", "e", "e", "g", "g", "g", "g",
	// U+0120
	"g", "g", "g", "g", "h", "h", "h", "h", "i", "i", "i", "i", "i", "i", "i", "i",
	"i", "i", "ij", "ij", "j", "j", "k", "k", "k", "l", "l", "l", "l", "l", "l", "l",
	// U+0140
	"l", "l", "l", "n", "n", "n", "n", "n", "n", "n", "n", "n", "o", "o", "o", "o",
	"o", "o", "oe", "oe", "r", "r", "r", "r", "r", "r", "s", "s", "s", "s", "s", "s",
	// U+0160
	"s", "s", "t", "t", "t", "t", "t", "t", "u", "u", "u", "u", "u", "u", "u", "u",
	"u", "u", "u", "u", "w", "w", "y", "y", "y", "z", "z", "z", "z", "z", "z", "s",
}

// Normalize returns s as the matcher reads it: lower-case, accents folded,
// tokens separated by single spaces (for tests and tools).
func Normalize(s string) string {
	n := newNorm(s, srcPlain)
	var b []byte
	for {
		c, ok := n.next()
		if !ok {
			return string(b)
		}
		b = append(b, c)
	}
}
