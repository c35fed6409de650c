package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Stored profiles are binary since profileV1; a value starting with '{' is
// a profile written before as JSON (profileJSONOpts) and is still read.
//
// profileV1 layout, integers as Go varints (zig-zag, "v") or uvarints
// ("u"), strings and byte strings as u length then bytes:
//
//	0x01 FirstSeenMs:v LastSeenMs:v
//	len(Purposes):u Purposes...
//	len(Counters):u { key len(buckets):u { hourDelta:v N:v }... }...
//	campaign flag (0 none, 1 present) [Name Source Medium Term Content]
//	Country Score:v len(Segments):u Segments... Attributes
//	[len(Events):u Events:8... len(Outcomes):u Outcomes:8...]
//
// The last part only when there are markers (portable profiles).
// Hours are deltas from the previous bucket of the key (the first from 0).
const profileV1 = 0x01

// errShort reports a truncated or inconsistent binary profile.
var errShort = errors.New("truncated or inconsistent binary profile")

// decodeProfile decodes a stored profile of site and subject.
func decodeProfile(v []byte, site, subject string) (*Profile, error) {
	if len(v) > 0 && v[0] == profileV1 {
		return decodeProfileV1(v[1:], site, subject)
	}
	return decodeProfileJSON(v, site, subject)
}

// encodeProfile encodes p for storage (profileV1).
func encodeProfile(p *Profile) ([]byte, error) {
	n := 32 + len(p.Attributes) + len(p.Country)
	for _, s := range p.Purposes {
		n += len(s) + 1
	}
	for _, s := range p.Segments {
		n += len(s) + 1
	}
	for k, bs := range p.Counters {
		n += len(k) + 2 + 4*len(bs)
	}
	b := make([]byte, 0, n)
	b = append(b, profileV1)
	b = binary.AppendVarint(b, p.FirstSeenMs)
	b = binary.AppendVarint(b, p.LastSeenMs)
	b = appendStrings(b, p.Purposes)
	b = binary.AppendUvarint(b, uint64(len(p.Counters)))
	for k, bs := range p.Counters {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(bs)))
		prev := int64(0)
		for _, x := range bs {
			b = binary.AppendVarint(b, x.Hour-prev)
			b = binary.AppendVarint(b, x.N)
			prev = x.Hour
		}
	}
	if c := p.Campaign; c == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		for _, s := range [...]string{c.GetName(), c.GetSource(), c.GetMedium(), c.GetTerm(), c.GetContent()} {
			b = appendString(b, s)
		}
	}
	b = appendString(b, p.Country)
	b = binary.AppendVarint(b, p.Score)
	b = appendStrings(b, p.Segments)
	b = appendString(b, string(p.Attributes))
	if len(p.Events) > 0 || len(p.Outcomes) > 0 {
		b = appendMarkers(b, p.Events)
		b = appendMarkers(b, p.Outcomes)
	}
	return b, nil
}

// appendString appends a length-prefixed string.
func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendStrings appends a count, then the strings.
func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// appendMarkers appends a count, then each marker as 8 bytes little
// endian.
func appendMarkers(b []byte, ms []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = binary.LittleEndian.AppendUint64(b, m)
	}
	return b
}

// markers reads what appendMarkers wrote.
func (r *profileReader) markers() []uint64 {
	n := r.count(8)
	if n == 0 {
		return nil
	}
	ms := make([]uint64, n)
	for i := range ms {
		ms[i] = binary.LittleEndian.Uint64(r.b[8*i:])
	}
	r.b = r.b[8*n:]
	return ms
}

// profileReader decodes profileV1 fields; the first failure sticks.
type profileReader struct {
	b   []byte
	err error
}

func (r *profileReader) fail() {
	if r.err == nil {
		r.err = errShort
	}
	r.b = nil
}

func (r *profileReader) varint() int64 {
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *profileReader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// count reads a uvarint count of items that each take at least min bytes,
// so corrupt input cannot make the decoder allocate more than it holds.
func (r *profileReader) count(min int) int {
	x, n := binary.Uvarint(r.b)
	if n <= 0 || x > uint64(len(r.b)-n)/uint64(min) {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return int(x)
}

// bytes returns the next length-prefixed bytes (not copied).
func (r *profileReader) bytes() []byte {
	n := r.count(1)
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// string returns the next string; invalid UTF-8 is replaced (as the JSON
// format did), since profiles feed protobuf string fields.
func (r *profileReader) string() string {
	v := r.bytes()
	if len(v) == 0 {
		return ""
	}
	if !utf8.Valid(v) {
		return strings.ToValidUTF8(string(v), "\uFFFD")
	}
	return string(v)
}

func (r *profileReader) strings() []string {
	n := r.count(1)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = r.string()
	}
	return ss
}

// decodeProfileV1 decodes v (after the version byte).
func decodeProfileV1(v []byte, site, subject string) (*Profile, error) {
	r := profileReader{b: v}
	p := &Profile{Site: site, Subject: subject}
	p.FirstSeenMs = r.varint()
	p.LastSeenMs = r.varint()
	p.Purposes = r.strings()
	if nk := r.count(2); nk > 0 {
		p.Counters = make(map[string][]Bucket, nk)
		for range nk {
			k := r.string()
			bs := make([]Bucket, r.count(2))
			h := int64(0)
			for i := range bs {
				h += r.varint()
				bs[i] = Bucket{Hour: h, N: r.varint()}
			}
			p.Counters[k] = bs
		}
	}
	switch flag := r.byte(); {
	case r.err != nil:
	case flag == 1:
		var f [5]string
		for i := range f {
			f[i] = r.string()
		}
		p.Campaign = &vigiev1.Campaign{Name: f[0], Source: f[1], Medium: f[2], Term: f[3], Content: f[4]}
	case flag != 0:
		r.fail()
	}
	p.Country = r.string()
	p.Score = r.varint()
	p.Segments = r.strings()
	if a := r.bytes(); len(a) > 0 {
		p.Attributes = append([]byte(nil), a...)
	}
	if r.err == nil && len(r.b) != 0 {
		p.Events = r.markers()
		p.Outcomes = r.markers()
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errShort
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: profile: %w", ErrCorrupt, r.err)
	}
	return p, nil
}
