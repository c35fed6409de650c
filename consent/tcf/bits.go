package tcf

import "github.com/vigie-dev/vigie/consent/internal/bitfield"

// reader reads one segment of a TC string.
type reader struct{ bitfield.Reader }

// newReader validates seg and returns a reader over it.
func newReader(seg string) (reader, error) {
	br, err := bitfield.New(seg, ErrInvalid)
	return reader{br}, err
}
