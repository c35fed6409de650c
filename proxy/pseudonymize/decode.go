package pseudonymize

import (
	"html"
	"strings"
	"unicode/utf8"
)

// maxDecodeRounds bounds repeated decoding ("%252540" is three rounds).
const maxDecodeRounds = 16

// mayBeEncoded reports the cheap signs of an encoded character: a '%'
// before two hex digits, a backslash escape (\u, \x), an HTML character
// reference (& before '#' or a letter), or a full-width or small at sign.
func mayBeEncoded(s string, i int) bool {
	switch s[i] {
	case '%':
		return i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2])
	case '\\':
		return i+1 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U' || s[i+1] == 'x')
	case '&':
		return i+1 < len(s) && (s[i+1] == '#' || isAlpha(s[i+1]))
	case 0xEF: // U+FF20 FULLWIDTH COMMERCIAL AT (EF BC A0), U+FE6B SMALL COMMERCIAL AT (EF B9 AB)
		return i+2 < len(s) && ((s[i+1] == 0xBC && s[i+2] == 0xA0) || (s[i+1] == 0xB9 && s[i+2] == 0xAB))
	}
	return false
}

// decodeAll decodes s repeatedly (percent escapes, \uXXXX, \u{X…} and \xXX
// escapes, however many times their backslash is escaped, HTML character
// references, full-width and small at signs) until
// it is stable, and reports whether anything was decoded. The result is
// valid UTF-8 (bytes that decode to invalid sequences become U+FFFD).
func decodeAll(s string) (string, bool) {
	cur := s
	for range maxDecodeRounds {
		next, ok := decodeOnce(cur)
		if !ok {
			break
		}
		cur = next
	}
	if cur == s {
		return s, false
	}
	if !utf8.ValidString(cur) {
		cur = strings.ToValidUTF8(cur, "\uFFFD")
	}
	return cur, true
}

// decodeOnce applies one round of every decoding.
func decodeOnce(s string) (string, bool) {
	var b []byte
	changed := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = lazyCopy(b, s, i)
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			changed = true
			continue
		case c == '\\' && i+2 < len(s) && s[i+1] == '\\' && (s[i+2] == 'u' || s[i+2] == 'U' || s[i+2] == 'x'):
			// An escaped backslash before an escape (JSON in JSON:
			// "\\u0040"): one level off, the next round decodes the rest.
			b = lazyCopy(b, s, i)
			b = append(b, '\\')
			i++
			changed = true
			continue
		case c == '\\' && i+1 < len(s):
			if r, n := backslashEscape(s[i+1:]); n > 0 {
				b = lazyCopy(b, s, i)
				b = utf8.AppendRune(b, r)
				i += n
				changed = true
				continue
			}
		case c == 0xEF && i+2 < len(s) && ((s[i+1] == 0xBC && s[i+2] == 0xA0) || (s[i+1] == 0xB9 && s[i+2] == 0xAB)):
			b = lazyCopy(b, s, i)
			b = append(b, '@')
			i += 2
			changed = true
			continue
		}
		if b != nil {
			b = append(b, c)
		}
	}
	out := s
	if changed {
		out = string(b)
	}
	if strings.IndexByte(out, '&') >= 0 {
		if u := html.UnescapeString(out); u != out {
			out, changed = u, true
		}
	}
	return out, changed
}

// lazyCopy starts the output buffer with s[:i] the first time it is needed.
func lazyCopy(b []byte, s string, i int) []byte {
	if b == nil {
		b = make([]byte, 0, len(s))
		b = append(b, s[:i]...)
	}
	return b
}

// backslashEscape decodes the escape after a backslash (\uXXXX, \u{X…},
// \xXX) and returns the rune and the bytes consumed after the backslash, or
// 0, 0.
func backslashEscape(s string) (rune, int) {
	switch s[0] {
	case 'u', 'U':
		if len(s) >= 3 && s[1] == '{' {
			end := strings.IndexByte(s[:min(len(s), 10)], '}')
			if end < 3 {
				return 0, 0
			}
			r, ok := hexRune(s[2:end])
			if !ok {
				return 0, 0
			}
			return r, end + 1
		}
		if len(s) >= 5 {
			if r, ok := hexRune(s[1:5]); ok {
				return r, 5
			}
		}
	case 'x':
		if len(s) >= 3 {
			if r, ok := hexRune(s[1:3]); ok {
				return r, 3
			}
		}
	}
	return 0, 0
}

func hexRune(h string) (rune, bool) {
	var r rune
	for i := 0; i < len(h); i++ {
		if !isHex(h[i]) {
			return 0, false
		}
		r = r<<4 | rune(unhex(h[i]))
	}
	if r > utf8.MaxRune {
		return 0, false
	}
	return r, true
}
