package gpp

import "fmt"

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

// reader reads big-endian bit fields straight from base64url text.
type reader struct {
	s      string
	pos, n int
	err    error
}

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

func (r *reader) bit() uint64 {
	if r.err != nil {
		return 0
	}
	if r.pos >= r.n {
		r.err = fmt.Errorf("%w: truncated at bit %d", ErrInvalid, r.pos)
		return 0
	}
	v := uint64(b64[r.s[r.pos/6]] >> (5 - uint(r.pos%6)) & 1)
	r.pos++
	return v
}

func (r *reader) int(n int) int {
	v := 0
	for range n {
		v = v<<1 | int(r.bit())
	}
	return v
}

func (r *reader) bool() bool { return r.bit() == 1 }

// maxFibBits bounds a Fibonacci code (fib(30) > 1e6, far above any id).
const maxFibBits = 30

// fib reads a Fibonacci-coded positive integer: bit i adds F(i+2)
// (1, 2, 3, 5, ...) and the code ends with two consecutive 1 bits.
func (r *reader) fib() int {
	v, a, b := 0, 1, 2
	prev := uint64(0)
	for i := 0; i < maxFibBits; i++ {
		bit := r.bit()
		if r.err != nil {
			return 0
		}
		if bit == 1 && prev == 1 {
			return v
		}
		if bit == 1 {
			v += a
		}
		prev = bit
		a, b = b, a+b
	}
	r.err = fmt.Errorf("%w: Fibonacci code longer than %d bits", ErrInvalid, maxFibBits)
	return 0
}
