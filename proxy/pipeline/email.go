package pipeline

import (
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// Names of the events recorded for e-mails.
const (
	EmailOpened  = "Email Opened"
	EmailClicked = "Email Link Clicked"
)

// EmailHit is an e-mail open or click, already classified (human, privacy
// proxy, scanner) and consent-checked by package email.
type EmailHit struct {
	// Click is true for a click, false for an open.
	Click bool
	// Campaign and Link come from the signed token.
	Campaign, Link string
	// Recipient is the recipient's pseudonym, as package email verified it
	// from a signed token or recipient value (never from an unsigned
	// parameter); empty for an anonymous hit.
	Recipient string
	// Granted are the recipient's purposes (from the consent ledger); the
	// hit is pseudonymous only with Recipient set and marketing granted.
	Granted consent.Set
	// Class and Reason are the machine/human classification.
	Class, Reason string
	// Time is when the hit arrived.
	Time time.Time
	// ClientIP and UserAgent are reduced here, never kept as they are.
	ClientIP, UserAgent string
}

// ProcessEmail turns an e-mail hit into an event record: pseudonymous (the
// recipient's pseudonym as user id and subject) when the recipient's
// consent grants marketing, else anonymous (campaign-level: no identifier,
// device class and IP prefix only). The link is scrubbed like a page URL.
func (p *Pipeline) ProcessEmail(s *Site, h EmailHit) Result {
	var res Result
	prefix, _ := pseudonymize.TruncateIP(h.ClientIP)
	dev := s.pseudo.Device(h.UserAgent)
	name := EmailOpened
	if h.Click {
		name = EmailClicked
	}
	ev := &vigiev1.Event{
		Id:           ulid.MustNew(ulid.Timestamp(h.Time), ulid.DefaultEntropy()).String(),
		Site:         s.id,
		Type:         "track",
		Name:         name,
		TimestampMs:  h.Time.UnixMilli(),
		ReceivedAtMs: h.Time.UnixMilli(),
		Source:       "email",
		IpPrefix:     prefix,
		Email:        &vigiev1.Email{Campaign: pseudonymize.ScrubText(h.Campaign, &res.Scrubbed), Class: h.Class, Reason: h.Reason},
	}
	pseudonymous := h.Recipient != "" && h.Granted.Has(consent.Marketing)
	if h.Link != "" {
		ev.Email.Link = s.pseudo.ScrubURL(h.Link, pseudonymous, &res.Scrubbed).URL
	}
	d := consent.Decision{Outcome: consent.Anonymous}
	if pseudonymous {
		d = consent.Decision{Outcome: consent.Pseudonymous, Granted: h.Granted}
		ev.Mode = vigiev1.Mode_MODE_PSEUDONYMOUS
		ev.Purposes = h.Granted.Names()
		ev.KeyId = s.pseudo.KeyID()
		ev.UserId, ev.Subject = h.Recipient, h.Recipient
		ev.Device = &vigiev1.Device{Browser: dev.Browser, BrowserMajor: dev.BrowserMajor, Os: dev.OS, Class: dev.Class, Bot: dev.Bot}
	} else {
		ev.Mode = vigiev1.Mode_MODE_ANONYMOUS
		ev.Device = &vigiev1.Device{Class: dev.Class, Bot: dev.Bot}
	}
	res.Decision = d
	p.finish(&res, s, ev, d)
	return res
}

// UserPseudonym is the pseudonym of a user id on s (as identify's userId
// gets), for e-mail recipients.
func (s *Site) UserPseudonym(userID string) string {
	return s.pseudo.ID(s.id, pseudonymize.UserID, userID)
}
