package pipeline

import (
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
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

// The reasons of e-mail hits' decisions (the console's live events and
// overview show them).
const (
	reasonEmailGranted = "e-mail recipient granted marketing"
	reasonEmailCounted = "e-mail hit counted per campaign only"
)

// ProcessEmail turns an e-mail hit into an event record when the
// recipient's consent grants marketing (the recipient's pseudonym as user
// id and subject), else into a campaign-level counter (Counted,
// Result.Count: campaign × link × open/click × class × hour, kept for the
// anonymous retention), never an event: a campaign sent to one person
// does not become that person's trail. The link is scrubbed like a page
// URL, and for a counter also loses its identifier-like path parts. On a
// site in CNIL exemption mode every hit is only counted.
func (p *Pipeline) ProcessEmail(s *Site, h EmailHit) Result {
	var res Result
	pseudonymous := h.Recipient != "" && h.Granted.Has(consent.Marketing) && !s.cnil
	campaign := pseudonymize.ScrubText(h.Campaign, &res.Scrubbed)
	var link string
	if h.Link != "" {
		u := s.pseudo.ScrubURL(h.Link, pseudonymous, &res.Scrubbed)
		link = u.URL
		if !pseudonymous && u.Path != "" {
			// URL is scheme://host, then Path, then Search.
			origin := u.URL[:len(u.URL)-len(u.Path)-len(u.Search)]
			link = origin + pseudonymize.MarkPathIDs(u.Path, s.idRules, &res.Scrubbed) + u.Search
		}
	}
	if !pseudonymous {
		res.Decision = consent.Decision{Outcome: consent.Anonymous, Reason: reasonEmailCounted}
		kind := storage.EmailOpen
		if h.Click {
			kind = storage.EmailClick
		}
		res.Count = storage.EmailCount{Site: s.id, Campaign: campaign, Kind: kind, Class: h.Class, Link: link,
			Hour: h.Time.UTC().Truncate(time.Hour), TTL: p.retention["anonymous"]}
		res.Outcome = Counted
		res.Applied = res.Decision
		return res
	}
	prefix := s.ipPrefix(h.ClientIP)
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
		Email:        &vigiev1.Email{Campaign: campaign, Link: link, Class: h.Class, Reason: h.Reason},
		Mode:         vigiev1.Mode_MODE_PSEUDONYMOUS,
		Purposes:     h.Granted.Names(),
		KeyId:        s.pseudo.KeyID(),
		UserId:       h.Recipient,
		Subject:      h.Recipient,
		Device:       &vigiev1.Device{Browser: dev.Browser, BrowserMajor: dev.BrowserMajor, Os: dev.OS, Class: dev.Class, Bot: dev.Bot},
	}
	d := consent.Decision{Outcome: consent.Pseudonymous, Granted: h.Granted, Reason: reasonEmailGranted}
	res.Decision = d
	p.finish(&res, s, ev, d)
	return res
}

// UserPseudonym is the pseudonym of a user id on s (as identify's userId
// gets), for e-mail recipients.
func (s *Site) UserPseudonym(userID string) string {
	return s.pseudo.ID(s.id, pseudonymize.UserID, userID)
}

// AnonymousPseudonym is the stable pseudonym of an anonymous id on s (the
// snippet's cookie value): the subject its consent choices are recorded
// under in the ledger, whatever pseudonyms its events get.
func (s *Site) AnonymousPseudonym(anonymousID string) string {
	return s.pseudo.ID(s.id, pseudonymize.AnonymousID, anonymousID)
}
