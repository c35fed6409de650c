package pseudonymize

// Class is a kind of personal datum the scrubbers remove.
type Class uint8

// Classes of removed data, in the order of Counts.
const (
	// ClassEmail is an e-mail address, in any encoding ("[email]").
	ClassEmail Class = iota
	// ClassPhone is a telephone number ("[phone]").
	ClassPhone
	// ClassCard is a payment card number that passes Luhn ("[card]").
	ClassCard
	// ClassIBAN is an IBAN that passes its mod-97 check ("[iban]").
	ClassIBAN
	// ClassNationalID is a national identity or tax number that passes its
	// check ("[national_id]").
	ClassNationalID
	// ClassNumber is any other long number ("[number]").
	ClassNumber
	// ClassIP is an IPv4 or IPv6 address ("[ip]"; "ip.invalid" as a URL host).
	ClassIP
	// ClassSecret is a password, credential or API key ("[secret]").
	ClassSecret
	// ClassToken is a random-looking identifier ("[token]").
	ClassToken
	// ClassName is a person's name found after a cue word ("[name]").
	ClassName
	// ClassTrackerID is another tracker's visitor id or an identifier-like
	// referral code ("[id]", or the parameter or member dropped).
	ClassTrackerID
	// ClassPersonalKey is a property or trait dropped for its name.
	ClassPersonalKey
	// ClassQueryParam is a URL query parameter dropped because it is not on
	// the allowlist.
	ClassQueryParam
	// ClassIdentifier is an identifier-like part of an anonymous event's
	// path (a long digit run, a hex id, a site's own pattern: "[id]", see
	// MarkPathIDs).
	ClassIdentifier
	// NumClasses is the number of classes.
	NumClasses
)

var classNames = [NumClasses]string{
	"email", "phone", "card", "iban", "national_id", "number", "ip", "secret", "token", "name",
	"tracker_id", "personal_key", "query_param", "identifier",
}

// markers are the texts that replace an item of each class ("" for the
// classes that are dropped rather than replaced).
var markers = [NumClasses]string{
	"[email]", "[phone]", "[card]", "[iban]", "[national_id]", "[number]", "[ip]", "[secret]", "[token]", "[name]",
	"[id]", "", "", "[id]",
}

// String is the class's name ("email", "national_id", …).
func (c Class) String() string {
	if c < NumClasses {
		return classNames[c]
	}
	return "unknown"
}

// Counts tallies what the scrubbers removed, by class, never the values.
// The scrubbing functions take a *Counts (nil: not counted) and add to it;
// the zero value is ready to use and costs nothing when nothing matched.
//
// A Counts also bounds the work of confirming phone numbers with the
// phone-number parser for everything scrubbed with it (one hit):
// maxPhoneParses parses; past them, a candidate that would need one is
// replaced as "[number]" unconfirmed, so that text made of thousands of
// phone-like numbers costs no more than a hit with a few.
type Counts struct {
	n      [NumClasses]uint32
	parses int
}

// maxPhoneParses is the phone-number parser calls one Counts allows.
const maxPhoneParses = 48

func (c *Counts) add(cl Class) {
	if c != nil {
		c.n[cl]++
	}
}

// spend reports whether n more parser calls fit in c's budget, and counts
// them.
func (c *Counts) spend(n int) bool {
	if c.parses+n > maxPhoneParses {
		return false
	}
	c.parses += n
	return true
}

// Of is the number of items of class cl removed.
func (c *Counts) Of(cl Class) int {
	if cl >= NumClasses {
		return 0
	}
	return int(c.n[cl])
}

// Total is the number of items removed, all classes together.
func (c *Counts) Total() int {
	n := 0
	for _, v := range c.n {
		n += int(v)
	}
	return n
}
