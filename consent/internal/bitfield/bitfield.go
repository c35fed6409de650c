// Package bitfield reads big-endian bit fields straight from base64url
// text, as IAB TCF and GPP strings encode them, so decoding needs no
// intermediate byte buffer. It is shared by consent/tcf and consent/gpp.
package bitfield

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

// BitAt returns bit i (0 = most significant bit of the first character) of
// the base64url text s, whose characters are already validated.
func BitAt(s string, i int) bool {
	return b64[s[i/6]]>>(5-uint(i%6))&1 == 1
}

// Reader reads one segment. Reads past its end record a truncation error
// in Err and return zeros; after an error every read returns zero.
type Reader struct {
	// S is the segment, validated base64url.
	S string
	// Pos is the next bit; N the number of bits, 6*len(S).
	Pos, N int
	// Err is the first error, wrapping the Invalid sentinel given to New.
	Err     error
	invalid error
}

// New validates seg and returns a reader over it; errors (and later read
// errors) wrap invalid.
func New(seg string, invalid error) (Reader, error) {
	if seg == "" {
		return Reader{}, fmt.Errorf("%w: empty segment", invalid)
	}
	for i := 0; i < len(seg); i++ {
		if b64[seg[i]] == 0xff {
			return Reader{}, fmt.Errorf("%w: byte %d is not base64url", invalid, i)
		}
	}
	return Reader{S: seg, N: 6 * len(seg), invalid: invalid}, nil
}

// Uint reads an n-bit unsigned integer (n <= 64).
func (r *Reader) Uint(n int) uint64 {
	if r.Err != nil {
		return 0
	}
	if r.Pos+n > r.N {
		r.truncated(n)
		return 0
	}
	var v uint64
	for range n {
		v <<= 1
		if BitAt(r.S, r.Pos) {
			v |= 1
		}
		r.Pos++
	}
	return v
}

// Int reads an n-bit unsigned integer as an int.
func (r *Reader) Int(n int) int { return int(r.Uint(n)) }

// Bool reads one bit.
func (r *Reader) Bool() bool { return r.Uint(1) == 1 }

// Skip advances n bits.
func (r *Reader) Skip(n int) {
	if r.Err == nil && r.Pos+n > r.N {
		r.truncated(n)
		return
	}
	r.Pos += n
}

// truncated records that n bits were asked for past the end.
func (r *Reader) truncated(n int) {
	r.Err = fmt.Errorf("%w: truncated at bit %d (need %d more bits)", r.invalid, r.Pos, r.Pos+n-r.N)
	r.Pos = r.N
}

// Fail records a format error unless an error is already recorded.
func (r *Reader) Fail(format string, args ...any) {
	if r.Err == nil {
		r.Err = fmt.Errorf("%w: "+format, append([]any{r.invalid}, args...)...)
	}
}
