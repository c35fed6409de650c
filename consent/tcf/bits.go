package tcf

import "fmt"

// b64 maps a base64url byte to its 6-bit value, or 0xff.
var b64 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// bitAt returns bit i (0 = most significant bit of the first character) of
// the base64url text s, whose characters are already validated.
func bitAt(s string, i int) bool {
	return b64[s[i/6]]>>(5-uint(i%6))&1 == 1
}

// reader reads big-endian bit fields straight from base64url text, so
// decoding needs no intermediate byte buffer.
type reader struct {
	s   string // one segment, validated base64url
	pos int    // next bit
	n   int    // total bits: 6*len(s)
	err error
}

// newReader validates seg and returns a reader over it.
func newReader(seg string) (reader, error) {
	if seg == "" {
		return reader{}, fmt.Errorf("%w: empty segment", ErrInvalid)
	}
	for i := 0; i < len(seg); i++ {
		if b64[seg[i]] == 0xff {
			return reader{}, fmt.Errorf("%w: byte %d is not base64url", ErrInvalid, i)
		}
	}
	return reader{s: seg, n: 6 * len(seg)}, nil
}

// uint reads an n-bit unsigned integer (n <= 64). After the end of the
// segment it records a truncation error and returns 0.
func (r *reader) uint(n int) uint64 {
	if r.err != nil {
		return 0
	}
	if r.pos+n > r.n {
		r.err = fmt.Errorf("%w: truncated at bit %d (need %d more bits)", ErrInvalid, r.pos, r.pos+n-r.n)
		r.pos = r.n
		return 0
	}
	var v uint64
	for range n {
		v <<= 1
		if bitAt(r.s, r.pos) {
			v |= 1
		}
		r.pos++
	}
	return v
}

func (r *reader) int(n int) int { return int(r.uint(n)) }

func (r *reader) bool() bool { return r.uint(1) == 1 }

// skip advances n bits, recording truncation.
func (r *reader) skip(n int) {
	if r.err == nil && r.pos+n > r.n {
		r.err = fmt.Errorf("%w: truncated at bit %d (need %d more bits)", ErrInvalid, r.pos, r.pos+n-r.n)
		r.pos = r.n
		return
	}
	r.pos += n
}

// fail records err unless an error is already recorded.
func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
}
