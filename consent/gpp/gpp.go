// Package gpp reads IAB Global Privacy Platform (GPP) strings far enough
// for a consent decision: the TCF EU v2 section and the US opt-outs.
//
// # Format
//
// A GPP string is '~'-separated base64url sections (no padding). The first
// is the header: Type (6 bits, = 3), Version (6 bits, = 1) and SectionIds,
// a Fibonacci-coded integer range (12-bit count, then per entry an IsRange
// bit and one or two Fibonacci-coded deltas from the previous id, each
// ending in "11"). One section follows per id, in the same order. A
// section may hold '.'-separated subsections.
//
// Sections read (ids from the GPP section registry, field layouts from
// the IAB reference implementation @iabgpp/cmpapi):
//
//   - 2 tcfeuv2: the section is a TC string, decoded by tcf.Decode;
//   - 7 usnat, 8 usca, 9 usva, 10 usco, 11 usut, 12 usct: the core
//     subsection's SaleOptOut, SharingOptOut and TargetedAdvertisingOptOut
//     (2 bits each: 0 not applicable, 1 opted out, 2 did not opt out;
//     usca has no targeted-advertising field, the state laws of VA, CO, UT
//     and CT no sharing field) and, in usnat/usca/usco/usct, the optional
//     GPC subsection (2-bit SubsectionType = 1, then the Gpc bit).
//
// Other sections (uspv1, tcfcav1, other states) are skipped unread. The
// testdata directory holds gen.mjs, which encodes fixtures with
// @iabgpp/cmpapi; the tests decode them all.
package gpp

import (
	"fmt"
	"strings"

	"github.com/vigie-dev/vigie/consent/tcf"
)

// MaxLen bounds the length of a GPP string accepted by Parse.
const MaxLen = 128 << 10

// maxSectionID bounds section ids (the registry is far below it).
const maxSectionID = 1023

// Section ids read by Parse.
const (
	// SectionTCFEUv2 is the TCF EU v2 section.
	SectionTCFEUv2 = 2
	// SectionUSNat is the US National section.
	SectionUSNat = 7
	// SectionUSCA is the California section.
	SectionUSCA = 8
	// SectionUSVA is the Virginia section.
	SectionUSVA = 9
	// SectionUSCO is the Colorado section.
	SectionUSCO = 10
	// SectionUSUT is the Utah section.
	SectionUSUT = 11
	// SectionUSCT is the Connecticut section.
	SectionUSCT = 12
)

// usLayout gives the bit offsets (from the start of the core subsection,
// version included) of the opt-out fields of a US section; -1 when the
// section has no such field.
type usLayout struct {
	sale, sharing, targeted int
	gpc                     bool
}

var usLayouts = map[int]usLayout{
	SectionUSNat: {sale: 18, sharing: 20, targeted: 22, gpc: true},
	SectionUSCA:  {sale: 12, sharing: 14, targeted: -1, gpc: true},
	SectionUSVA:  {sale: 12, sharing: -1, targeted: 14},
	SectionUSCO:  {sale: 12, sharing: -1, targeted: 14, gpc: true},
	SectionUSUT:  {sale: 14, sharing: -1, targeted: 16},
	SectionUSCT:  {sale: 12, sharing: -1, targeted: 14, gpc: true},
}

// USOptOuts are the opt-outs of one US section. A field the section does
// not have is false.
type USOptOuts struct {
	// Section is the section id (7-12).
	Section int
	// SaleOptOut: the consumer opted out of the sale of personal data.
	SaleOptOut bool
	// SharingOptOut: opted out of sharing (cross-context behavioural ads).
	SharingOptOut bool
	// TargetedAdvertisingOptOut: opted out of targeted advertising.
	TargetedAdvertisingOptOut bool
	// Gpc: the GPC subsection is present and signals Global Privacy Control.
	Gpc bool
}

// OptedOut reports whether any opt-out (or GPC) is signalled.
func (u USOptOuts) OptedOut() bool {
	return u.SaleOptOut || u.SharingOptOut || u.TargetedAdvertisingOptOut || u.Gpc
}

// GPP is a parsed GPP string.
type GPP struct {
	// Sections are the section ids of the header, ascending.
	Sections []int
	// TCF is the decoded TCF EU v2 section, nil when absent.
	TCF *tcf.TCString
	// US are the US sections read, in header order.
	US []USOptOuts
}

// Has reports whether the header lists section id.
func (g *GPP) Has(id int) bool {
	for _, s := range g.Sections {
		if s == id {
			return true
		}
	}
	return false
}

// Parse parses a GPP string. Every error wraps ErrInvalid; the string is
// then to be treated as carrying no consent.
func Parse(s string) (*GPP, error) {
	if len(s) > MaxLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLen)
	}
	header, rest, more := strings.Cut(s, "~")
	ids, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	g := &GPP{Sections: ids}
	for i, id := range ids {
		if !more {
			return nil, fmt.Errorf("%w: header lists %d sections, string has %d", ErrInvalid, len(ids), i)
		}
		var sec string
		sec, rest, more = strings.Cut(rest, "~")
		if sec == "" {
			return nil, fmt.Errorf("%w: section %d is empty", ErrInvalid, id)
		}
		switch l, ok := usLayouts[id]; {
		case id == SectionTCFEUv2:
			t, err := tcf.Decode(sec)
			if err != nil {
				return nil, fmt.Errorf("%w: section %d: %w", ErrInvalid, id, err)
			}
			g.TCF = t
		case ok:
			u, err := parseUS(id, l, sec)
			if err != nil {
				return nil, err
			}
			g.US = append(g.US, u)
		}
	}
	if more {
		return nil, fmt.Errorf("%w: more sections than the header lists", ErrInvalid)
	}
	return g, nil
}

// parseHeader reads the header section and returns its section ids.
func parseHeader(h string) ([]int, error) {
	r, err := newReader(h)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if typ, ver := r.Int(6), r.Int(6); r.Err == nil && (typ != 3 || ver != 1) {
		return nil, fmt.Errorf("%w: header type %d version %d, want 3 and 1", ErrInvalid, typ, ver)
	}
	n := r.Int(12)
	if r.Err == nil && n*3 > r.N-r.Pos { // an entry takes at least 3 bits
		return nil, fmt.Errorf("%w: %d header entries cannot fit", ErrInvalid, n)
	}
	var ids []int
	last := 0
	for range n {
		isRange := r.Bool()
		start := last + r.fib()
		end := start
		if isRange {
			end = start + r.fib()
		}
		if r.Err != nil {
			return nil, fmt.Errorf("header: %w", r.Err)
		}
		if end > maxSectionID {
			return nil, fmt.Errorf("%w: section id above %d", ErrInvalid, maxSectionID)
		}
		for id := start; id <= end; id++ {
			ids = append(ids, id)
		}
		last = end
	}
	if r.Err != nil {
		return nil, fmt.Errorf("header: %w", r.Err)
	}
	return ids, nil
}

// parseUS reads the opt-outs of a US section.
func parseUS(id int, l usLayout, sec string) (USOptOuts, error) {
	u := USOptOuts{Section: id}
	core, sub, hasSub := strings.Cut(sec, ".")
	r, err := newReader(core)
	if err != nil {
		return u, fmt.Errorf("section %d: %w", id, err)
	}
	if v := r.Int(6); r.Err == nil && v == 0 {
		return u, fmt.Errorf("%w: section %d version 0", ErrInvalid, id)
	}
	optOut := func(off int) bool {
		if off < 0 {
			return false
		}
		r.Pos = off
		return r.Int(2) == 1
	}
	u.SaleOptOut = optOut(l.sale)
	u.SharingOptOut = optOut(l.sharing)
	u.TargetedAdvertisingOptOut = optOut(l.targeted)
	if r.Err != nil {
		return u, fmt.Errorf("section %d: %w", id, r.Err)
	}
	for hasSub {
		var seg string
		seg, sub, hasSub = strings.Cut(sub, ".")
		sr, err := newReader(seg)
		if err != nil {
			return u, fmt.Errorf("section %d: %w", id, err)
		}
		if typ := sr.Int(2); typ == 1 && l.gpc {
			u.Gpc = sr.Bool()
		}
		if sr.Err != nil {
			return u, fmt.Errorf("section %d: %w", id, sr.Err)
		}
	}
	return u, nil
}

// ParseSID parses a gpp_sid value: section ids separated by commas (blanks
// ignored), e.g. "2,7". An empty value gives nil. A non-numeric or
// out-of-range id is an error wrapping ErrInvalid.
func ParseSID(v string) ([]int, error) {
	var out []int
	for tok := range strings.SplitSeq(v, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		n := 0
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if c < '0' || c > '9' || n > maxSectionID {
				return nil, fmt.Errorf("%w: gpp_sid is not a list of section ids", ErrInvalid)
			}
			n = n*10 + int(c-'0')
		}
		if n > maxSectionID {
			return nil, fmt.Errorf("%w: gpp_sid is not a list of section ids", ErrInvalid)
		}
		if len(out) >= 64 {
			return nil, fmt.Errorf("%w: gpp_sid lists more than 64 sections", ErrInvalid)
		}
		out = append(out, n)
	}
	return out, nil
}
