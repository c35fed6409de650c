package sensitive

// match reports the categories of layer l whose terms occur in n's text,
// trying the trie at every token start. It never allocates.
func (t *trie) match(n norm, l Layer) Categories {
	var got Categories
	atStart := true
	for {
		if atStart {
			w := n
			c, _ := t.walk(&w, l)
			got |= c
		}
		c, ok := n.next()
		if !ok {
			return got
		}
		atStart = c == ' '
	}
}

// walk follows the trie from w's position (a token start) and returns the
// categories of layer l matched there and the source offset where the
// longest match ends (its token's end, for a stem).
func (t *trie) walk(w *norm, l Layer) (Categories, int) {
	var got Categories
	end := -1
	nd := int32(0)
	for {
		c, ok := w.next()
		if nd != 0 {
			x := &t.nodes[nd]
			if x.stem != 0 {
				if m := t.infos[x.stem-1][l]; m != 0 {
					got |= m
					end = tokenEnd(*w, c, ok)
				}
			}
			if x.exact != 0 && (!ok || c == ' ') {
				if m := t.infos[x.exact-1][l]; m != 0 {
					got |= m
					end = max(end, tokenEnd(*w, c, ok))
				}
			}
		}
		if !ok {
			return got, end
		}
		if nd = t.child(nd, c); nd == 0 {
			return got, end
		}
	}
}

// tokenEnd is the source offset where the token being read ends, c (ok)
// being the byte just read.
func tokenEnd(w norm, c byte, ok bool) int {
	for ok && c != ' ' {
		c, ok = w.next()
	}
	if !ok {
		return w.curEnd
	}
	return w.prevEnd
}

// span is a match: the source bytes [start, end) and their categories.
type span struct {
	start, end int
	cats       Categories
}

// spans lists the matches of layer l in n's text, for the redacted
// examples (called only once match found something).
func (t *trie) spans(n norm, l Layer) []span {
	var out []span
	atStart := true
	for {
		if atStart {
			w := n
			probe := w
			if _, ok := probe.next(); ok {
				// The token's first byte is pending (or, at the very start,
				// read now): its rune is where the token starts.
				start := probe.curStart
				if c, end := t.walk(&w, l); c != 0 && end > start {
					out = append(out, span{start: start, end: end, cats: c})
				}
			}
		}
		c, ok := n.next()
		if !ok {
			return out
		}
		atStart = c == ' '
	}
}

// redact replaces every span of s by the marker of its first category
// (spans as spans returns them: in order, possibly overlapping).
func redact(s string, sp []span) string {
	var b []byte
	last := 0
	for _, x := range sp {
		if x.start < last {
			continue
		}
		b = append(b, s[last:x.start]...)
		b = append(b, firstCategory(x.cats).Marker()...)
		last = x.end
	}
	b = append(b, s[last:]...)
	return string(b)
}

// firstCategory is the first category of a non-empty set.
func firstCategory(s Categories) Category {
	for c := Category(0); c < NumCategories; c++ {
		if s.Has(c) {
			return c
		}
	}
	return 0
}

// fastLen is the longest text normalized on the stack; longer texts, and
// texts that are not plain ASCII, go through the norm iterator.
const fastLen = 512

// matchText is match for the text s read in mode: plain ASCII text (the
// usual case) is normalized into buf (the caller's, on its stack) in one
// loop and matched there; other text, and text longer than half of buf,
// with the norm iterator. Both read the same normalized bytes
// (TestFastPathAgrees). It never allocates.
func (t *trie) matchText(buf *[fastLen]byte, s string, mode uint8, l Layer) Categories {
	if n, ok := normalizeASCII(buf, s, mode); ok {
		return t.matchBytes(buf[:n], l)
	}
	return t.match(newNorm(s, mode), l)
}

// asciiNorm maps each ASCII byte to its class (high bits: clsUpper etc.
// shifted by 8) and normalized byte (low byte; 0 for a separator).
var asciiNorm = func() (t [128]uint16) {
	for i := 'a'; i <= 'z'; i++ {
		t[i] = uint16(clsLower)<<8 | uint16(i)
	}
	for i := 'A'; i <= 'Z'; i++ {
		t[i] = uint16(clsUpper)<<8 | uint16(i+'a'-'A')
	}
	for i := '0'; i <= '9'; i++ {
		t[i] = uint16(clsDigit)<<8 | uint16(i)
	}
	return t
}()

// normalizeASCII writes s normalized as norm reads it into buf and
// returns its length, or reports false when s is not plain ASCII in its
// mode (a byte ≥ 0x80, a JSON escape, a %XX escape in a path) or longer
// than half of buf (its normalized form could not fit).
func normalizeASCII(buf *[fastLen]byte, s string, mode uint8) (int, bool) {
	if 2*len(s) > len(buf) {
		return 0, false
	}
	prev := clsNone
	sep := false
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c == '\\' && mode == srcJSON || c == '%' && mode == srcURL {
			return 0, false
		}
		e := asciiNorm[c]
		cls := uint8(e >> 8)
		if cls == clsNone {
			sep = sep || prev != clsNone
			prev = clsNone
			continue
		}
		if cls == clsUpper && (prev == clsLower || prev == clsDigit || prev == clsUpper && i+1 < len(s) && s[i+1] < 0x80 && uint8(asciiNorm[s[i+1]]>>8) == clsLower) {
			sep = true
		}
		if sep {
			buf[n] = ' '
			n++
			sep = false
		}
		buf[n] = byte(e)
		n++
		prev = cls
	}
	return n, true
}

// matchBytes is match over normalized bytes.
func (t *trie) matchBytes(b []byte, l Layer) Categories {
	var got Categories
	for i := 0; i < len(b); {
		got |= t.walkBytes(b[i:], l)
		j := i
		for j < len(b) && b[j] != ' ' {
			j++
		}
		i = j + 1
	}
	return got
}

// walkBytes is walk over normalized bytes starting at a token.
func (t *trie) walkBytes(b []byte, l Layer) Categories {
	var got Categories
	n := t.root[b[0]]
	for k := 1; n != 0; k++ {
		x := &t.nodes[n]
		if x.stem != 0 {
			got |= t.infos[x.stem-1][l]
		}
		end := k == len(b) || b[k] == ' '
		if end && x.exact != 0 {
			got |= t.infos[x.exact-1][l]
		}
		if k == len(b) {
			break
		}
		n = t.child(n, b[k])
	}
	return got
}
