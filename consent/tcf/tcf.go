package tcf

import (
	"fmt"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/consent/internal/bitfield"
)

// MaxLen bounds the length of a TC string accepted by Decode. The longest
// well-formed string (two 65535-vendor bitfields in the core segment plus
// full disclosed- and allowed-vendor bitfields) is about 44,000 characters.
const MaxLen = 64 << 10

// maxVendorID is the largest vendor id a 16-bit field can hold.
const maxVendorID = 1<<16 - 1

// PurposeSet is a set of small TCF ids (purposes, special features,
// publisher custom purposes): id n is bit n-1, for 1 <= n <= 64.
type PurposeSet uint64

// Has reports whether id is in the set.
func (s PurposeSet) Has(id int) bool { return id >= 1 && id <= 64 && s>>(id-1)&1 == 1 }

// IDs returns the ids in ascending order (nil for the empty set).
func (s PurposeSet) IDs() []int {
	var out []int
	for id := 1; id <= 64; id++ {
		if s.Has(id) {
			out = append(out, id)
		}
	}
	return out
}

// Encoding is how a vendor set was encoded in the string.
type Encoding uint8

// Vendor set encodings (the encoder picks the shorter one).
const (
	// BitField lists one bit per vendor id from 1 to MaxID.
	BitField Encoding = iota
	// Range lists ranges of vendor ids.
	Range
)

// String returns "bitfield" or "range".
func (e Encoding) String() string {
	if e == Range {
		return "range"
	}
	return "bitfield"
}

// idRange is an inclusive range of vendor ids.
type idRange struct{ start, end uint16 }

// VendorSet is a set of vendor ids as encoded in a TC string. The zero
// value is an empty set that is not Present. A bitfield set reads its bits
// straight from the decoded string, without a copy.
type VendorSet struct {
	present bool
	enc     Encoding
	maxID   int
	field   string // BitField: the segment text
	off     int    // BitField: bit offset of vendor 1
	ranges  []idRange
}

// Present reports whether the set was in the string (an optional segment
// that is absent gives a set that is not present).
func (v VendorSet) Present() bool { return v.present }

// Encoding returns how the set was encoded.
func (v VendorSet) Encoding() Encoding { return v.enc }

// MaxID returns the MaxVendorId field of the set (for publisher
// restrictions, which have none, the largest id listed).
func (v VendorSet) MaxID() int { return v.maxID }

// Has reports whether vendor id is in the set.
func (v VendorSet) Has(id int) bool {
	if id < 1 || id > v.maxID {
		return false
	}
	if v.enc == BitField {
		return bitfield.BitAt(v.field, v.off+id-1)
	}
	for _, r := range v.ranges {
		if int(r.start) <= id && id <= int(r.end) {
			return true
		}
	}
	return false
}

// IDs returns the vendor ids in ascending order (nil for an empty set). It
// allocates in proportion to the set; use Has on hot paths.
func (v VendorSet) IDs() []int {
	var out []int
	for id := 1; id <= v.maxID; id++ {
		if v.Has(id) {
			out = append(out, id)
		}
	}
	return out
}

// RestrictionType is a publisher restriction on a vendor's purpose.
type RestrictionType uint8

// Restriction types of the TCF v2 specification (3 is undefined and
// rejected by Decode).
const (
	// NotAllowed: the purpose is not allowed for the vendor.
	NotAllowed RestrictionType = 0
	// RequireConsent: the vendor must have consent (not legitimate
	// interest) for the purpose.
	RequireConsent RestrictionType = 1
	// RequireLI: the vendor must rely on legitimate interest.
	RequireLI RestrictionType = 2
)

// String returns "not_allowed", "require_consent" or "require_li".
func (t RestrictionType) String() string {
	switch t {
	case NotAllowed:
		return "not_allowed"
	case RequireConsent:
		return "require_consent"
	case RequireLI:
		return "require_li"
	}
	return fmt.Sprintf("restriction(%d)", uint8(t))
}

// PublisherRestriction restricts one purpose for a set of vendors.
type PublisherRestriction struct {
	// PurposeID is the TCF purpose restricted.
	PurposeID int
	// Type is the restriction.
	Type RestrictionType
	// Vendors are the vendors restricted (range encoded).
	Vendors VendorSet
}

// PublisherTC is the optional publisher transparency and consent segment
// (segment type 3).
type PublisherTC struct {
	// Consents are the TCF purposes the publisher has consent for.
	Consents PurposeSet
	// LITransparency are the purposes the publisher relies on legitimate
	// interest for.
	LITransparency PurposeSet
	// NumCustomPurposes is the number of publisher custom purposes (0-63).
	NumCustomPurposes int
	// CustomConsents are the custom purposes consented to.
	CustomConsents PurposeSet
	// CustomLITransparency are the custom purposes under legitimate
	// interest.
	CustomLITransparency PurposeSet
}

// TCString is a decoded TCF v2 transparency and consent string. Field
// names follow the specification.
type TCString struct {
	// Version is the encoding version (always 2).
	Version int
	// Created and LastUpdated have decisecond precision, in UTC.
	Created, LastUpdated time.Time
	// CmpID and CmpVersion identify the consent management platform.
	CmpID, CmpVersion int
	// ConsentScreen is the CMP screen where consent was given.
	ConsentScreen int
	// ConsentLanguage is a two-letter upper-case language code.
	ConsentLanguage string
	// VendorListVersion is the GVL version used.
	VendorListVersion int
	// PolicyVersion is the TCF policy version (4 for TCF v2.2).
	PolicyVersion int
	// IsServiceSpecific is set when the string applies to one service only.
	IsServiceSpecific bool
	// UseNonStandardTexts is set when the CMP customised the standard texts.
	UseNonStandardTexts bool
	// SpecialFeatureOptins are the special features opted in (ids 1-12).
	SpecialFeatureOptins PurposeSet
	// PurposesConsent are the purposes consented to (ids 1-24).
	PurposesConsent PurposeSet
	// PurposesLITransparency are the purposes whose legitimate interest
	// was disclosed and not objected to (ids 1-24).
	PurposesLITransparency PurposeSet
	// PurposeOneTreatment is set when purpose 1 was not disclosed.
	PurposeOneTreatment bool
	// PublisherCC is the publisher's two-letter country code.
	PublisherCC string
	// VendorConsents are the vendors consented to.
	VendorConsents VendorSet
	// VendorLegitimateInterests are the vendors whose legitimate interest
	// was disclosed and not objected to.
	VendorLegitimateInterests VendorSet
	// PublisherRestrictions are the publisher's restrictions, in order.
	PublisherRestrictions []PublisherRestriction
	// DisclosedVendors is the optional disclosed-vendors segment (type 1).
	DisclosedVendors VendorSet
	// AllowedVendors is the optional allowed-vendors segment (type 2,
	// deprecated in TCF v2.2 but still decoded).
	AllowedVendors VendorSet
	// Publisher is the optional publisher TC segment (type 3), nil when
	// absent.
	Publisher *PublisherTC
}

// PurposeConsent reports whether TCF purpose id has consent.
func (t *TCString) PurposeConsent(id int) bool { return t.PurposesConsent.Has(id) }

// PurposeLI reports whether TCF purpose id has legitimate-interest
// transparency (and no objection).
func (t *TCString) PurposeLI(id int) bool { return t.PurposesLITransparency.Has(id) }

// VendorConsent reports whether vendor id has consent.
func (t *TCString) VendorConsent(id int) bool { return t.VendorConsents.Has(id) }

// VendorLI reports whether vendor id has legitimate-interest transparency.
func (t *TCString) VendorLI(id int) bool { return t.VendorLegitimateInterests.Has(id) }

// Restriction returns the publisher restriction on purpose for vendor; ok
// is false when there is none. When several apply, the first (in string
// order) wins; NotAllowed beats the others wherever it appears.
func (t *TCString) Restriction(purpose, vendor int) (rt RestrictionType, ok bool) {
	for i := range t.PublisherRestrictions {
		r := &t.PublisherRestrictions[i]
		if r.PurposeID != purpose || !r.Vendors.Has(vendor) {
			continue
		}
		if r.Type == NotAllowed {
			return NotAllowed, true
		}
		if !ok {
			rt, ok = r.Type, true
		}
	}
	return rt, ok
}

// Segment types of the optional segments.
const (
	segDisclosed = 1
	segAllowed   = 2
	segPublisher = 3
)

// Decode decodes a TCF v2 TC string: base64url segments without padding,
// separated by '.', the core segment first. It is strict: every error
// wraps ErrInvalid and the string is then to be treated as no consent.
// Allocation is bounded by the input length (at most MaxLen bytes).
func Decode(s string) (*TCString, error) {
	if len(s) > MaxLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLen)
	}
	core, rest, more := strings.Cut(s, ".")
	t := new(TCString)
	if err := decodeCore(core, t); err != nil {
		return nil, err
	}
	var seen [4]bool
	for more {
		var seg string
		seg, rest, more = strings.Cut(rest, ".")
		r, err := newReader(seg)
		if err != nil {
			return nil, err
		}
		typ := r.Int(3)
		if typ < segDisclosed || typ > segPublisher {
			return nil, fmt.Errorf("%w: unexpected segment type %d", ErrInvalid, typ)
		}
		if seen[typ] {
			return nil, fmt.Errorf("%w: repeated segment type %d", ErrInvalid, typ)
		}
		seen[typ] = true
		switch typ {
		case segDisclosed:
			t.DisclosedVendors = r.vendorSet()
		case segAllowed:
			t.AllowedVendors = r.vendorSet()
		case segPublisher:
			p := &PublisherTC{
				Consents:       r.set(24),
				LITransparency: r.set(24),
			}
			p.NumCustomPurposes = r.Int(6)
			p.CustomConsents = r.set(p.NumCustomPurposes)
			p.CustomLITransparency = r.set(p.NumCustomPurposes)
			t.Publisher = p
		}
		if r.Err != nil {
			return nil, fmt.Errorf("segment type %d: %w", typ, r.Err)
		}
	}
	return t, nil
}

// decodeCore decodes the core segment into t.
func decodeCore(seg string, t *TCString) error {
	r, err := newReader(seg)
	if err != nil {
		return err
	}
	t.Version = r.Int(6)
	if r.Err == nil && t.Version != 2 {
		return fmt.Errorf("%w: unsupported version %d", ErrInvalid, t.Version)
	}
	t.Created = deciseconds(r.Uint(36))
	t.LastUpdated = deciseconds(r.Uint(36))
	t.CmpID = r.Int(12)
	t.CmpVersion = r.Int(12)
	t.ConsentScreen = r.Int(6)
	t.ConsentLanguage = r.letters()
	t.VendorListVersion = r.Int(12)
	t.PolicyVersion = r.Int(6)
	t.IsServiceSpecific = r.Bool()
	t.UseNonStandardTexts = r.Bool()
	t.SpecialFeatureOptins = r.set(12)
	t.PurposesConsent = r.set(24)
	t.PurposesLITransparency = r.set(24)
	t.PurposeOneTreatment = r.Bool()
	t.PublisherCC = r.letters()
	t.VendorConsents = r.vendorSet()
	t.VendorLegitimateInterests = r.vendorSet()
	t.PublisherRestrictions = r.restrictions()
	if r.Err != nil {
		return fmt.Errorf("core segment: %w", r.Err)
	}
	return nil
}

// set reads an n-bit field whose first bit is id 1 (n <= 64).
func (r *reader) set(n int) PurposeSet {
	v := r.Uint(n)
	var out PurposeSet
	for i := range n {
		if v>>(n-1-i)&1 == 1 {
			out |= 1 << i
		}
	}
	return out
}

func deciseconds(v uint64) time.Time { return time.UnixMilli(int64(v) * 100).UTC() }

// pairs holds every two-letter upper-case code, so letters never allocates.
var pairs = func() string {
	b := make([]byte, 0, 26*26*2)
	for a := byte('A'); a <= 'Z'; a++ {
		for c := byte('A'); c <= 'Z'; c++ {
			b = append(b, a, c)
		}
	}
	return string(b)
}()

// letters reads a two-letter code (6 bits per letter, 0 = 'A').
func (r *reader) letters() string {
	a, b := r.Int(6), r.Int(6)
	if r.Err != nil {
		return ""
	}
	if a > 25 || b > 25 {
		r.Fail("letter code out of range at bit %d", r.Pos-12)
		return ""
	}
	i := (a*26 + b) * 2
	return pairs[i : i+2]
}

// vendorSet reads MaxVendorId, IsRangeEncoding and the bitfield or range
// entries (the TCF v2 vendor-consent layout, shared by the disclosed- and
// allowed-vendors segments).
func (r *reader) vendorSet() VendorSet {
	v := VendorSet{present: true, maxID: r.Int(16)}
	if r.Bool() {
		v.enc = Range
		v.ranges = r.ranges(v.maxID)
		return v
	}
	v.field, v.off = r.S, r.Pos
	r.Skip(v.maxID)
	return v
}

// entryBits is the minimum size of a range entry (IsRange + one id).
const entryBits = 1 + 16

// ranges reads NumEntries and the range entries; ids must be in
// 1..maxID with start <= end.
func (r *reader) ranges(maxID int) []idRange {
	n := r.Int(12)
	if r.Err != nil {
		return nil
	}
	if n*entryBits > r.N-r.Pos {
		r.Fail("%d range entries cannot fit in the remaining %d bits", n, r.N-r.Pos)
		return nil
	}
	out := make([]idRange, 0, n)
	for range n {
		isRange := r.Bool()
		start := r.Int(16)
		end := start
		if isRange {
			end = r.Int(16)
		}
		if r.Err != nil {
			return nil
		}
		if start < 1 || end < start || end > maxID {
			r.Fail("bad vendor range %d-%d (max id %d)", start, end, maxID)
			return nil
		}
		out = append(out, idRange{uint16(start), uint16(end)})
	}
	return out
}

// restrictionBits is the minimum size of a publisher restriction.
const restrictionBits = 6 + 2 + 12

// restrictions reads the publisher restrictions section.
func (r *reader) restrictions() []PublisherRestriction {
	n := r.Int(12)
	if r.Err != nil || n == 0 {
		return nil
	}
	if n*restrictionBits > r.N-r.Pos {
		r.Fail("%d publisher restrictions cannot fit in the remaining %d bits", n, r.N-r.Pos)
		return nil
	}
	out := make([]PublisherRestriction, 0, n)
	for range n {
		pr := PublisherRestriction{PurposeID: r.Int(6), Type: RestrictionType(r.Uint(2))}
		if r.Err != nil {
			return nil
		}
		if pr.PurposeID < 1 || pr.Type > RequireLI {
			r.Fail("bad publisher restriction (purpose %d, type %d)", pr.PurposeID, pr.Type)
			return nil
		}
		rs := r.ranges(maxVendorID)
		if r.Err != nil {
			return nil
		}
		hi := 0 // entries are not required to be sorted
		for _, x := range rs {
			if int(x.end) > hi {
				hi = int(x.end)
			}
		}
		pr.Vendors = VendorSet{present: true, enc: Range, maxID: hi, ranges: rs}
		out = append(out, pr)
	}
	return out
}
