package pipeline

import (
	"encoding/json"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// LimitReader is implemented by a LedgerReader that also knows the
// subject's objection and restriction (GDPR Art. 21 and 18): they apply to
// every event of the subject, whatever consent it carries.
type LimitReader interface {
	// Limits returns the purposes subject objected to on site and whether
	// its processing is restricted.
	Limits(site, subject string) (objected consent.Set, restricted bool)
}

// limit applies the ledger's objection and restriction to d.
func (s *Site) limit(r *Request, subject string, d consent.Decision) consent.Decision {
	lr, ok := r.Ledger.(LimitReader)
	if !ok || subject == "" || d.Outcome != consent.Pseudonymous {
		return d
	}
	obj, restricted := lr.Limits(s.id, subject)
	return consent.Limit(s.policy, d, obj, restricted)
}

// indexTraits are the identify traits put in the blind index, by kind.
var indexTraits = map[string][]string{
	blind.Email: {"email", "Email", "e-mail", "email_address", "emailAddress"},
	blind.Phone: {"phone", "Phone", "mobile", "phone_number", "phoneNumber"},
}

// index fills the blind-index entries and subject links of a pseudonymous
// identify or alias event: keyed MACs of its user id, e-mail and phone
// (never the values), and the link between its user id's and anonymous
// (or previous) id's pseudonyms.
func (p *Pipeline) index(res *Result, s *Site, m *collect.Message, ev *vigiev1.Event) {
	if ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS || ev.GetSubject() == "" || (m.Type != "identify" && m.Type != "alias") {
		return
	}
	if ev.UserId != "" {
		for _, other := range []string{ev.AnonymousId, ev.PreviousId} {
			if other != "" && other != ev.Subject {
				res.Record.Links = append(res.Record.Links, other)
			}
		}
	}
	if p.blind == nil {
		return
	}
	add := func(kind, value string) {
		if e, ok := p.blind.Entry(s.id, kind, value, blind.Region(m.Context.Locale)); ok {
			res.Record.Index = append(res.Record.Index, e)
		}
	}
	add(blind.UserID, m.UserID)
	if m.Type != "identify" || len(m.Traits) == 0 {
		return
	}
	var traits map[string]any
	if json.Unmarshal(m.Traits, &traits) != nil {
		return
	}
	for _, kind := range []string{blind.Email, blind.Phone} {
		for _, name := range indexTraits[kind] {
			if v, ok := traits[name].(string); ok {
				add(kind, v)
				break
			}
		}
	}
}

// Subjects returns the pseudonyms value may have on site under every
// pseudonymization key (active first), for a privacy request to find its
// events across key rotation. kind is pseudonymize.UserID or AnonymousID.
func (s *Site) Subjects(kind pseudonymize.Kind, value string) []string {
	return s.pseudo.IDs(s.id, kind, value)
}
