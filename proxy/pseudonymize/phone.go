package pseudonymize

import (
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// Phone numbers are confirmed with github.com/nyaruka/phonenumbers (the Go
// port of Google's libphonenumber, with its number-plan metadata), and only
// for candidates the cheap scanner in text.go has already found: parsing
// costs tens of microseconds. A table of the possible national lengths per
// country calling code, built once from the same metadata, rejects most
// candidates (timestamps, ids) before the parser is called.

// nationalRegions are tried, in order, for a candidate written in national
// form (a leading trunk 0, or a US-style "(area)"). Regions keeping their
// 0 in the number (Italy) are included.
var nationalRegions = []string{"FR", "DE", "GB", "BE", "NL", "CH", "AT", "IT", "IE", "LU", "SE", "US"}

var callingCodes struct {
	once sync.Once
	// lengths[cc] has bit n set when a national number of n digits is
	// possible for calling code cc.
	lengths [1000]uint32
	// regions holds, per nationalRegions entry, its national (trunk)
	// prefix and possible national lengths.
	regions []regionInfo
}

type regionInfo struct {
	prefix  string
	lengths uint32
}

func loadCallingCodes() {
	callingCodes.regions = make([]regionInfo, len(nationalRegions))
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		return // no metadata: every candidate is refused below
	}
	for _, md := range coll.GetMetadata() {
		cc := md.GetCountryCode()
		if cc <= 0 || cc >= 1000 {
			continue
		}
		var mask uint32
		for _, l := range md.GetGeneralDesc().GetPossibleLength() {
			if l > 0 && l < 32 {
				mask |= 1 << uint(l)
			}
		}
		callingCodes.lengths[cc] |= mask
		for k, r := range nationalRegions {
			if md.GetId() == r {
				callingCodes.regions[k] = regionInfo{prefix: md.GetNationalPrefix(), lengths: mask}
			}
		}
	}
}

// possibleE164 reports whether the digit string d (country code first, no
// '+') has a known calling code and a possible national length for it.
func possibleE164(d string) bool {
	if len(d) < 8 || len(d) > 15 || d[0] == '0' {
		return false
	}
	callingCodes.once.Do(loadCallingCodes)
	cc := 0
	for k := 1; k <= 3; k++ {
		cc = cc*10 + int(d[k-1]-'0')
		if n := len(d) - k; callingCodes.lengths[cc]&(1<<uint(n)) != 0 {
			return true
		}
	}
	return false
}

// confirmE164 says whether the digit string d is a valid international
// number (country code first, no '+'): ClassPhone, NumClasses when it is
// not, ClassNumber when it is possible but c's parse budget is spent.
func confirmE164(d string, c *Counts) Class {
	if !possibleE164(d) {
		return NumClasses
	}
	if !c.spend(1) {
		return ClassNumber
	}
	var buf [16]byte
	num, err := phonenumbers.Parse(string(append(append(buf[:0], '+'), d...)), "ZZ")
	if err == nil && phonenumbers.IsValidNumber(num) {
		return ClassPhone
	}
	return NumClasses
}

// confirmNational says whether the digit string d is a valid number in
// national form in one of nationalRegions, like confirmE164.
func confirmNational(d string, c *Counts) Class {
	if len(d) < 7 || len(d) > 15 {
		return NumClasses
	}
	callingCodes.once.Do(loadCallingCodes)
	var own string
	for k, r := range nationalRegions {
		// Only regions where d, less the trunk prefix, has a possible length.
		info := callingCodes.regions[k]
		nsn := len(d)
		if info.prefix != "" && strings.HasPrefix(d, info.prefix) {
			nsn -= len(info.prefix)
		}
		if info.lengths&(1<<uint(nsn)) == 0 {
			continue
		}
		if !c.spend(1) {
			return ClassNumber
		}
		if own == "" {
			own = strings.Clone(d) // d may view the caller's stack buffer
		}
		if num, err := phonenumbers.Parse(own, r); err == nil && phonenumbers.IsValidNumberForRegion(num, r) {
			return ClassPhone
		}
	}
	return NumClasses
}
