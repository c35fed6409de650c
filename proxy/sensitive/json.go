package sensitive

import (
	"unsafe"

	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

// maxDepth bounds the names kept for field paths (collect.MaxDepth is 64;
// deeper values are still scanned, their names not recorded).
const maxDepth = 66

// keySpan is a key's content s[start:end]; start < 0 for an array element.
type keySpan struct{ start, end int }

// jscan walks a raw JSON value (already validated by collect) without
// decoding it: member names through the names layer, strings and numbers
// through the values layer. Its first pass (collect false) only gathers
// the categories found; the second records hits and members.
type jscan struct {
	d       *Detector
	s       string
	found   [NumLayers]Categories
	collect bool
	root    string
	hits    []Hit
	members []member

	keys   [maxDepth]keySpan
	mstart [maxDepth]int
	mcats  [maxDepth]Categories
	buf    [fastLen]byte
}

func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func skipWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at s[i] == '"'.
func stringEnd(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(s)
}

// value scans the value at s[i] (at depth: keys[:depth] are its path) and
// returns the index after it.
func (j *jscan) value(i, depth int) int {
	s := j.s
	i = skipWS(s, i)
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '{':
		i++
		for {
			i = skipWS(s, i)
			if i >= len(s) {
				return i
			}
			if s[i] == '}' {
				return i + 1
			}
			if s[i] == ',' {
				i++
				continue
			}
			if s[i] != '"' {
				return len(s) // not JSON: stop
			}
			ks, ke := i, stringEnd(s, i)
			i = skipWS(s, ke)
			if i < len(s) && s[i] == ':' {
				i++
			}
			j.member(ks, ke, depth)
			i = j.value(i, depth+1)
			if j.collect && depth < maxDepth && j.mcats[depth] != 0 {
				j.members = append(j.members, member{start: ks, cats: j.mcats[depth]})
			}
		}
	case '[':
		if depth < maxDepth {
			j.keys[depth] = keySpan{-1, -1}
		}
		i++
		for {
			i = skipWS(s, i)
			if i >= len(s) {
				return i
			}
			switch s[i] {
			case ']':
				return i + 1
			case ',':
				i++
				continue
			}
			i = j.value(i, depth+1)
		}
	case '"':
		end := stringEnd(s, i)
		if j.d.policy.Values && end-1 > i+1 {
			j.scalar(s[i+1:end-1], true, depth)
		}
		return end
	default:
		end := i
		for end < len(s) && s[end] != ',' && s[end] != '}' && s[end] != ']' && s[end] != ' ' && s[end] != '\n' && s[end] != '\t' && s[end] != '\r' {
			end++
		}
		if j.d.policy.Values && (s[i] == '-' || '0' <= s[i] && s[i] <= '9') {
			j.scalar(s[i:end], false, depth)
		}
		if end == i {
			end++ // never stall on a stray byte
		}
		return end
	}
}

// member scans the name s[ks:ke] (quotes included) of a member at depth.
func (j *jscan) member(ks, ke, depth int) {
	if depth < maxDepth {
		j.keys[depth] = keySpan{ks + 1, ke - 1}
		j.mstart[depth], j.mcats[depth] = ks, 0
	}
	if !j.d.policy.Names || ke-1 <= ks+1 {
		return
	}
	name := j.s[ks+1 : ke-1]
	c := j.d.t.matchText(&j.buf, name, srcJSON, LayerNames)
	if c == 0 {
		return
	}
	j.found[LayerNames] |= c
	if !j.collect || depth >= maxDepth {
		return
	}
	j.mcats[depth] |= c
	field := pseudonymize.ScrubText(jsonPath(j.root, j.s, j.keys[:depth+1]), nil)
	red := redact(name, j.d.t.spans(newNorm(name, srcJSON), LayerNames))
	parent := jsonPath(j.root, j.s, j.keys[:depth])
	ex := example(parent + "." + red)
	for k := Category(0); k < NumCategories; k++ {
		if c.Has(k) {
			j.hits = append(j.hits, Hit{Category: k, Layer: LayerNames, Field: field, Example: ex})
		}
	}
}

// scalar scans a string's content (str) or a number's literal at depth.
func (j *jscan) scalar(v string, str bool, depth int) {
	var c Categories
	if str {
		c = j.d.t.matchText(&j.buf, v, srcJSON, LayerValues)
	}
	if nationalID(v, str) {
		c = c.With(NationalID)
	}
	if c == 0 {
		return
	}
	j.found[LayerValues] |= c
	if !j.collect {
		return
	}
	d := min(depth, maxDepth)
	field := pseudonymize.ScrubText(jsonPath(j.root, j.s, j.keys[:d]), nil)
	// The innermost member holding the value goes with DropField.
	for k := d - 1; k >= 0; k-- {
		if j.keys[k].start >= 0 {
			j.mcats[k] |= c
			break
		}
	}
	for k := Category(0); k < NumCategories; k++ {
		if c.Has(k) {
			j.hits = append(j.hits, Hit{Category: k, Layer: LayerValues, Field: field, Example: k.Marker()})
		}
	}
}

// nationalID reports whether v holds a national identification number
// the scrubber recognises (by its check digits: NIR, SSN, NINO, DNI/NIE,
// codice fiscale, Steuer-ID, Belgian number, PESEL, personnummer): the
// scrubber decides, behind a shape filter so that the usual long values
// (timestamps, UUIDs, international phone numbers, order numbers as JSON
// numbers) never reach it. A JSON number is a national id only with 11 or
// 15 digits (Belgian, German, PESEL; NIR), as the scrubber reads numbers.
func nationalID(v string, str bool) bool {
	d, l := 0, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case '0' <= c && c <= '9':
			d++
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			l++
		}
	}
	if !str {
		if d != 11 && d != 15 {
			return false
		}
	} else if len(v) > 24 || d < 6 || d > 15 || l > 10 || v[0] == '+' || v[0] == '(' {
		return false
	}
	var c pseudonymize.Counts
	pseudonymize.ScrubText(v, &c)
	return c.Of(pseudonymize.ClassNationalID) > 0
}

// strip copies raw without the members of ms whose categories meet cats
// (compact JSON; raw itself when nothing goes).
func strip(raw []byte, ms []member, cats Categories) []byte {
	var drop map[int]bool
	for _, m := range ms {
		if m.cats&cats != 0 {
			if drop == nil {
				drop = map[int]bool{}
			}
			drop[m.start] = true
		}
	}
	if drop == nil {
		return raw
	}
	out := make([]byte, 0, len(raw))
	out, _ = copyValue(out, bytesString(raw), 0, drop)
	return out
}

// copyValue appends the value at s[i] to out, leaving out the members
// starting at an offset in drop, and returns the index after it.
func copyValue(out []byte, s string, i int, drop map[int]bool) ([]byte, int) {
	i = skipWS(s, i)
	if i >= len(s) {
		return out, i
	}
	switch s[i] {
	case '{', '[':
		obj := s[i] == '{'
		closer := byte('}')
		if !obj {
			closer = ']'
		}
		out = append(out, s[i])
		i++
		first := true
		for {
			i = skipWS(s, i)
			if i >= len(s) {
				return out, i
			}
			if s[i] == closer {
				return append(out, closer), i + 1
			}
			if s[i] == ',' {
				i++
				continue
			}
			if obj {
				ks, ke := i, stringEnd(s, i)
				i = skipWS(s, ke)
				if i < len(s) && s[i] == ':' {
					i++
				}
				if drop[ks] {
					_, i = copyValue(nil, s, i, nil) // skipped
					continue
				}
				if !first {
					out = append(out, ',')
				}
				out = append(out, s[ks:ke]...)
				out = append(out, ':')
			} else if !first {
				out = append(out, ',')
			}
			first = false
			out, i = copyValue(out, s, i, drop)
		}
	case '"':
		end := stringEnd(s, i)
		return append(out, s[i:end]...), end
	default:
		end := i
		for end < len(s) && s[end] != ',' && s[end] != '}' && s[end] != ']' && s[end] != ' ' && s[end] != '\n' && s[end] != '\t' && s[end] != '\r' {
			end++
		}
		if end == i {
			end++
		}
		return append(out, s[i:end]...), end
	}
}

// DropMembers returns the JSON object raw without its top-level members
// named in names (compact), or raw itself when it has none of them.
func DropMembers(raw []byte, names ...string) []byte {
	s := bytesString(raw)
	i := skipWS(s, 0)
	if i >= len(s) || s[i] != '{' {
		return raw
	}
	var drop map[int]bool
	for i++; ; {
		i = skipWS(s, i)
		if i >= len(s) || s[i] == '}' {
			break
		}
		if s[i] == ',' {
			i++
			continue
		}
		if s[i] != '"' {
			return raw
		}
		ks, ke := i, stringEnd(s, i)
		for _, n := range names {
			if s[ks+1:ke-1] == n {
				if drop == nil {
					drop = map[int]bool{}
				}
				drop[ks] = true
			}
		}
		i = skipWS(s, ke)
		if i < len(s) && s[i] == ':' {
			i++
		}
		_, i = copyValue(nil, s, i, nil)
	}
	if drop == nil {
		return raw
	}
	out, _ := copyValue(make([]byte, 0, len(raw)), s, 0, drop)
	return out
}
