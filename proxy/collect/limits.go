package collect

import (
	"bytes"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
)

// MaxDepth is how deep objects and arrays may nest in any member value of
// an event (properties, traits, context.consent, integrations, …),
// counting the value itself as level 1: {"a":{"b":1}} has 2 levels.
const MaxDepth = 64

// MaxNumberLength is the longest number, in characters, accepted anywhere
// in an event. Every number must also be finite as a float64. Together
// they keep out numbers that common JSON parsers refuse: 1e400 overflows
// float64 (Go's encoding/json rejects it, JavaScript reads Infinity) and
// Python refuses integers of more than 4,300 digits. An integer of up to
// 32 characters is stored as sent; a parser reading it as a float64 may
// round it.
const MaxNumberLength = 32

// Problems reported for values that break the limits.
var (
	problemDepth  = "nests deeper than " + strconv.Itoa(MaxDepth) + " levels"
	problemNumber = "number must be finite as a 64-bit float and at most " + strconv.Itoa(MaxNumberLength) + " characters long"
)

// maxPathName bounds each member name quoted in a reported field path.
const maxPathName = 64

// withinLimits reports whether v, a syntactically valid JSON value,
// respects MaxDepth and the number rules. It is the fast path: one scan
// over the bytes, no allocation; only numbers with an exponent are parsed
// (a number of at most MaxNumberLength characters without one is always
// finite).
func withinLimits(v []byte) bool {
	depth := 0
	for i := 0; i < len(v); i++ {
		switch scanClass[v[i]] {
		case scanQuote:
			// v is valid JSON: the string ends at the first unescaped quote.
			for i++; v[i] != '"'; i++ {
				if v[i] == '\\' {
					i++
				}
			}
		case scanOpen:
			if depth++; depth > MaxDepth {
				return false
			}
		case scanClose:
			depth--
		case scanNumber:
			j, exp := i+1, false
			for ; j < len(v) && scanClass[v[j]] >= scanNumber; j++ {
				exp = exp || scanClass[v[j]] == scanExponent
			}
			if !numberOK(v[i:j], exp) {
				return false
			}
			i = j - 1
		}
	}
	return true
}

// Byte classes of withinLimits.
const (
	scanOther = iota
	scanQuote
	scanOpen
	scanClose
	scanNumber   // - and digits: a number starts; also inside one
	scanExponent // e, E: inside a number only
	scanNumPart  // . and +: inside a number only
)

var scanClass = func() (t [256]uint8) {
	t['"'] = scanQuote
	t['{'], t['['] = scanOpen, scanOpen
	t['}'], t[']'] = scanClose, scanClose
	t['-'] = scanNumber
	for c := '0'; c <= '9'; c++ {
		t[c] = scanNumber
	}
	t['e'], t['E'] = scanExponent, scanExponent
	t['.'], t['+'] = scanNumPart, scanNumPart
	return t
}()

// numberOK applies the number rules to the text of one JSON number.
func numberOK(n []byte, exp bool) bool {
	if len(n) > MaxNumberLength {
		return false
	}
	if !exp {
		return true
	}
	_, err := strconv.ParseFloat(unsafe.String(&n[0], len(n)), 64)
	return err == nil
}

// locate is the slow path after withinLimits failed: it walks v, the value
// of field, and returns the path of the first place that breaks a limit
// (e.g. "properties.a.b[2]") and the problem.
func locate(field string, v []byte) (string, string) {
	dec := jsontext.NewDecoder(bytes.NewReader(v))
	var names []string // names[l-1]: the last member name read at level l
	path := func(upto int) string {
		p := []byte(field)
		for l := 1; l <= upto; l++ {
			switch k, n := dec.StackIndex(l); k {
			case '{':
				name := ""
				if l <= len(names) {
					name = names[l-1]
				}
				if len(name) > maxPathName {
					cut := maxPathName
					for cut > 0 && !utf8.RuneStart(name[cut]) {
						cut--
					}
					name = name[:cut] + "…"
				}
				p = append(append(p, '.'), name...)
			case '[':
				p = append(append(append(p, '['), strconv.FormatInt(n-1, 10)...), ']')
			}
		}
		return string(p)
	}
	for {
		if dec.PeekKind() == '0' {
			n, err := dec.ReadValue()
			if err != nil {
				break
			}
			if !numberOK(n, bytes.ContainsAny(n, "eE")) {
				return path(dec.StackDepth()), problemNumber
			}
			continue
		}
		tok, err := dec.ReadToken()
		if err != nil {
			break
		}
		depth := dec.StackDepth()
		switch tok.Kind() {
		case '{', '[':
			if depth > MaxDepth {
				return path(depth - 1), problemDepth
			}
		case '"':
			if k, n := dec.StackIndex(depth); k == '{' && n%2 == 1 {
				for len(names) < depth {
					names = append(names, "")
				}
				names[depth-1] = tok.String()
			}
		}
	}
	return field, problemNumber // unreachable when withinLimits failed
}
