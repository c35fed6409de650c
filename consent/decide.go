package consent

import "strings"

// Source names where a signal came from.
type Source string

// Signal sources.
const (
	// SourcePayload is Vigie's own context.consent object.
	SourcePayload Source = "payload"
	// SourceSegment is Segment's context.consent.categoryPreferences.
	SourceSegment Source = "segment"
	// SourcePixel is the no-JS pixel's consent query parameter.
	SourcePixel Source = "pixel"
	// SourceGPC is the Sec-GPC request header (Global Privacy Control).
	SourceGPC Source = "gpc"
	// SourceDNT is the DNT request header (Do Not Track).
	SourceDNT Source = "dnt"
	// SourceLedger is the stored consent ledger of a subject.
	SourceLedger Source = "ledger"
	// SourceTCF is an IAB TCF v2.2 consent string.
	SourceTCF Source = "tcf"
	// SourceConsentMode is Google Consent Mode v2.
	SourceConsentMode Source = "consent_mode"
	// SourceGPP is an IAB Global Privacy Platform string.
	SourceGPP Source = "gpp"
	// SourceConsentManagement is RudderStack's context.consentManagement
	// (allowed and denied consent ids of the site's consent manager).
	SourceConsentManagement Source = "consent_management"
)

// Signal is one consent source's opinion: the purposes it grants and those
// it denies.
type Signal struct {
	// Source is where the signal came from; it decides its precedence.
	Source Source
	// Granted are the purposes the source grants (ignored for gpc/dnt).
	Granted Set
	// Denied are the purposes the source denies.
	Denied Set
}

// Decision is the result for one event.
type Decision struct {
	// Outcome is what happens to the event.
	Outcome Outcome
	// Granted are the purposes the event may be processed for; it always
	// holds necessary.
	Granted Set
	// Reason is a short constant naming the main factor (see the package
	// documentation); it never contains personal data.
	Reason string
}

// Reasons (see the package documentation).
const (
	reasonExplicitGrant = "explicit grant"
	reasonDefaultGrant  = "default grant"
	reasonExplicitDeny  = "explicit denial"
	reasonGPC           = "gpc denial"
	reasonDNT           = "dnt denial"
	reasonNoSignal      = "no consent signal"
	reasonNoIdentifying = "no identifying grant"
)

// String returns e.g. `pseudonymous granted=analytics,necessary reason="explicit grant"`.
func (d Decision) String() string {
	var b strings.Builder
	b.WriteString(d.Outcome.String())
	b.WriteString(" granted=")
	b.WriteString(d.Granted.String())
	b.WriteString(` reason="`)
	b.WriteString(d.Reason)
	b.WriteByte('"')
	return b.String()
}

// Decide combines signals under policy p by the precedence rules of the
// package documentation. It does not allocate.
func Decide(p Policy, signals ...Signal) Decision {
	var grant, deny, gpc, dnt uint64
	explicit := false
	for i := range signals {
		s := &signals[i]
		switch s.Source {
		case SourceGPC:
			if p.HonorGPC {
				gpc |= s.Denied.bits
			}
		case SourceDNT:
			if p.HonorDNT {
				dnt |= s.Denied.bits
			}
		default:
			grant |= s.Granted.bits
			deny |= s.Denied.bits
			explicit = explicit || s.Granted.bits|s.Denied.bits != 0
		}
	}
	ident := p.Identifying.bits &^ necessaryBit
	base := p.Defaults.bits | grant              // rules 1-2: defaults + grants
	afterDeny := base &^ deny                    // rule 2: explicit denials
	final := afterDeny&^(gpc|dnt) | necessaryBit // rules 3-4

	d := Decision{Granted: Set{final}}
	switch {
	case final&ident != 0:
		d.Outcome = Pseudonymous
		d.Reason = reasonDefaultGrant
		if grant&final&ident != 0 {
			d.Reason = reasonExplicitGrant
		}
		return d
	case base&deny&ident != 0:
		d.Reason = reasonExplicitDeny
	case afterDeny&gpc&ident != 0:
		d.Reason = reasonGPC
	case afterDeny&dnt&ident != 0:
		d.Reason = reasonDNT
	case !explicit:
		d.Reason = reasonNoSignal
	default:
		d.Reason = reasonNoIdentifying
	}
	d.Outcome = Anonymous
	if p.Unconsented == Drop {
		d.Outcome = Drop
	}
	return d
}

// reasonLimited is the reason of a decision Limit made anonymous.
const reasonLimited = "purpose not allowed on this site"

// Limit returns d with its granted purposes restricted to allowed
// (necessary is always kept). A pseudonymous decision left with no
// identifying purpose of p becomes p's unconsented outcome (anonymous or
// drop). A site in CNIL exemption mode limits every decision to necessary
// and analytics this way.
func (d Decision) Limit(p Policy, allowed Set) Decision {
	d.Granted.bits &= allowed.bits | necessaryBit
	if d.Outcome == Pseudonymous && d.Granted.bits&p.Identifying.bits&^necessaryBit == 0 {
		d.Outcome, d.Reason = Anonymous, reasonLimited
		if p.Unconsented == Drop {
			d.Outcome = Drop
		}
	}
	return d
}
