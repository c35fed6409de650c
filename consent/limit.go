package consent

// Limit applies a subject's objection and restriction (GDPR Art. 21 and
// 18, recorded in the consent ledger) to d, whatever the event's own
// signals granted: objected purposes are denied, and a restricted subject's
// event is not pseudonymous. An event left with no identifying purpose gets
// the policy's unconsented outcome (anonymous or drop), like Decide.
func Limit(p Policy, d Decision, objected Set, restricted bool) Decision {
	if d.Outcome != Pseudonymous || (objected.bits == 0 && !restricted) {
		return d
	}
	d.Granted.bits &^= objected.bits &^ necessaryBit
	ident := p.Identifying.bits &^ necessaryBit
	switch {
	case restricted:
		d.Granted.bits = necessaryBit
		d.Reason = reasonRestricted
	case d.Granted.bits&ident != 0:
		return d
	default:
		d.Reason = reasonObjected
	}
	d.Outcome = Anonymous
	if p.Unconsented == Drop {
		d.Outcome = Drop
	}
	return d
}

// Reasons of Limit.
const (
	reasonObjected   = "objection"
	reasonRestricted = "restriction"
)
