package gpp

import "github.com/vigie-dev/vigie/consent/internal/bitfield"

// reader reads one segment of a GPP string.
type reader struct{ bitfield.Reader }

// newReader validates seg and returns a reader over it.
func newReader(seg string) (reader, error) {
	br, err := bitfield.New(seg, ErrInvalid)
	return reader{br}, err
}

// maxFibBits bounds a Fibonacci code (fib(30) > 1e6, far above any id).
const maxFibBits = 30

// fib reads a Fibonacci-coded positive integer: bit i adds F(i+2)
// (1, 2, 3, 5, ...) and the code ends with two consecutive 1 bits.
func (r *reader) fib() int {
	v, a, b := 0, 1, 2
	prev := uint64(0)
	for i := 0; i < maxFibBits; i++ {
		bit := r.Uint(1)
		if r.Err != nil {
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
	r.Fail("Fibonacci code longer than %d bits", maxFibBits)
	return 0
}
