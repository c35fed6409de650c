// Package pipeline turns one decoded hit into what Vigie may keep: it asks
// consent what is allowed, pseudonymizes identifiers, truncates the IP,
// reduces the user agent, scrubs URLs and properties, splits personal traits
// off for the vault, and encodes the event as the SDK's protobuf message,
// ready for one storage transaction and for NATS.
//
// Nothing personal leaves Process in clear except Record.Vault, which the
// storage layer encrypts before it is written.
package pipeline

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins/geoip/geodb"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/proxy/sensitive"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// ErrUnknownSite is returned for a site id the pipeline was not given.
var ErrUnknownSite = errors.New("pipeline: unknown site")

// SiteConfig is what the pipeline needs to know of one site.
type SiteConfig struct {
	// ID of the site.
	ID string
	// Policy is its consent policy.
	Policy consent.Policy
	// AllowParams, ClickIDParams and PIIKeys tune scrubbing; empty means
	// the pseudonymize package's defaults.
	AllowParams, ClickIDParams, PIIKeys []string
	// ExportClickIDs are the click ids stored as they came (for an ads
	// integration); the others are stored as pseudonyms. Default none.
	ExportClickIDs []string
	// Rotation rotates the pseudonyms of analytics-only events (granting
	// neither personalization nor marketing). Default never.
	Rotation pseudonymize.Rotation
	// CNILExempt enforces the CNIL audience-measurement exemption on every
	// event: decisions limited to consent.ExemptPurposes, no userId,
	// groupId, previousId or traits, identify/group/alias not kept, the IP
	// prefix of pseudonymous events cut to /16 (IPv6 /32), e-mail hits only
	// counted.
	CNILExempt bool
	// TimeGranularity is what the times of anonymous events are rounded
	// down to (UTC). 0: DefaultTimeGranularity.
	TimeGranularity time.Duration
	// Region keeps the GeoIP region of anonymous events besides the
	// country.
	Region bool
	// IDPathPatterns are the site's own identifier patterns (Go regular
	// expressions) replaced by [id] in anonymous paths, see
	// pseudonymize.MarkPathIDs.
	IDPathPatterns []string
	// Sensitive is its handling of special categories of data (see
	// sensitive.go); nil means sensitive.DefaultPolicy().
	Sensitive *sensitive.Policy
}

// DefaultTimeGranularity is SiteConfig.TimeGranularity's default: the
// times of anonymous events are kept to the hour.
const DefaultTimeGranularity = time.Hour

// Config configures a Pipeline.
type Config struct {
	// Keys are the pseudonymization keys, active first (required).
	Keys []pseudonymize.Key
	// Sites known to the pipeline (required).
	Sites []SiteConfig
	// Retention per purpose name plus "anonymous"; 0 or absent = forever.
	Retention map[string]time.Duration
	// StoreBots keeps bot hits as events (default false: counted only).
	StoreBots bool
	// Blind, when set, fills the blind index of identify and alias events
	// (rights.go). Default: none.
	Blind *blind.Index
	// GeoIP, when set, gives anonymous events their country (and region,
	// per site), looked up in memory from the truncated address; the
	// address is never kept with them.
	GeoIP *geodb.DB
}

// Site is a configured site, ready for Process.
type Site struct {
	id       string
	policy   consent.Policy
	pseudo   *pseudonymize.Pseudonymizer
	rotation pseudonymize.Rotation
	cnil     bool
	gran     time.Duration
	region   bool
	idRules  []*regexp.Regexp
	sens     *sensitive.Detector
}

// ID is the site's id.
func (s *Site) ID() string { return s.id }

// Policy is the site's consent policy.
func (s *Site) Policy() consent.Policy { return s.policy }

// KeyID is the id of the key the site's pseudonyms are made with now.
func (s *Site) KeyID() string { return s.pseudo.KeyID() }

// Pipeline processes hits. It is safe for concurrent use.
type Pipeline struct {
	keys      []pseudonymize.Key
	sites     map[string]*Site
	retention map[string]time.Duration
	storeBots bool
	blind     *blind.Index
	geo       *geodb.DB
}

// New builds the per-site pseudonymizers once.
func New(cfg Config) (*Pipeline, error) {
	if len(cfg.Keys) == 0 {
		return nil, fmt.Errorf("pipeline: no pseudonymization key")
	}
	p := &Pipeline{keys: cfg.Keys, sites: map[string]*Site{}, retention: cfg.Retention, storeBots: cfg.StoreBots, blind: cfg.Blind, geo: cfg.GeoIP}
	for _, sc := range cfg.Sites {
		st, err := p.NewSite(sc)
		if err != nil {
			return nil, err
		}
		p.sites[sc.ID] = st
	}
	return p, nil
}

// NewSite builds a site that was not in Config.Sites (one added while the
// server runs), with the pipeline's keys. The pipeline does not keep it:
// Site does not find it, the caller holds it.
func (p *Pipeline) NewSite(sc SiteConfig) (*Site, error) {
	ps, err := pseudonymize.New(pseudonymize.Config{
		Keys:           p.keys,
		AllowParams:    sc.AllowParams,
		ClickIDParams:  sc.ClickIDParams,
		ExportClickIDs: sc.ExportClickIDs,
		PIIKeys:        sc.PIIKeys,
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: site %s: %w", sc.ID, err)
	}
	rules, err := pseudonymize.CompilePathPatterns(sc.IDPathPatterns)
	if err != nil {
		return nil, fmt.Errorf("pipeline: site %s: id path patterns: %w", sc.ID, err)
	}
	gran := sc.TimeGranularity
	if gran <= 0 {
		gran = DefaultTimeGranularity
	}
	sens, err := newDetector(sc.Sensitive)
	if err != nil {
		return nil, fmt.Errorf("pipeline: site %s: %w", sc.ID, err)
	}
	return &Site{id: sc.ID, policy: sc.Policy, pseudo: ps, rotation: sc.Rotation,
		cnil: sc.CNILExempt, gran: gran, region: sc.Region, idRules: rules, sens: sens}, nil
}

// Site returns the configured site with id.
func (p *Pipeline) Site(id string) (*Site, error) {
	s, ok := p.sites[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSite, id)
	}
	return s, nil
}

// Request is what the pipeline needs from the HTTP request a hit came in.
// RemoteIP and UserAgent are personal data: they live only in memory and only
// their reduced forms leave Process.
type Request struct {
	// ReceivedAt is when the request arrived.
	ReceivedAt time.Time
	// RemoteIP is the client address (after trusted-proxy handling).
	RemoteIP string
	// UserAgent is the request's User-Agent header.
	UserAgent string
	// Source names the entry point: segment, pixel, snippet, email.
	Source string
	// Signals are request-wide consent signals (Sec-GPC, DNT, pixel).
	Signals []consent.Signal
	// Explicit says Signals hold an explicit choice (the pixel's consent
	// parameters), not only browser-wide headers.
	Explicit bool
	// Ledger, when set, gives the subject's recorded choice for events that
	// carry no explicit consent signal of their own.
	Ledger LedgerReader
	// KeepBots stores the hit even if it comes from a bot, as StoreBots
	// does for every hit (a test client the site vouched for).
	KeepBots bool
	// Subject, when set, is the user id pseudonym the caller already
	// resolved (an import by e-mail, through the blind index): it is used
	// as is, and the message's UserID is not pseudonymized.
	Subject string
}

// LedgerReader reads the consent ledger.
type LedgerReader interface {
	// Consent returns the last explicit choice recorded for subject on
	// site, as a signal, and whether there is one.
	Consent(site, subject string) (consent.Signal, bool)
}

// RequestSignals reads the request-wide consent signals of h for site.
func (s *Site) RequestSignals(h http.Header) []consent.Signal {
	return consent.FromHeaders(h, s.policy)
}

// Outcome says what happened to one hit.
type Outcome uint8

// Outcomes of Process.
const (
	// Stored means Record is ready to be appended.
	Stored Outcome = iota + 1
	// Dropped means consent allowed nothing.
	Dropped
	// Bot means the hit came from a bot and bots are not stored.
	Bot
	// NotKept means the site keeps no event of this kind (identify, group
	// and alias on a site in CNIL exemption mode).
	NotKept
	// Counted means an anonymous e-mail hit became Result.Count, a
	// campaign-level counter, instead of an event.
	Counted
	// DroppedSensitive means a special category of data was detected
	// whose action is drop_event (Result.Sensitive says which).
	DroppedSensitive
)

// Result is Process's answer.
type Result struct {
	Outcome  Outcome
	Decision consent.Decision
	// Applied is what was done with the hit: Decision after the subject's
	// objection or restriction and the sensitive-data action (which may
	// keep it anonymous or drop it). Decision stays the visitor's own
	// choice, for the ledger, the cookie and the consent rates.
	Applied consent.Decision
	// ConsentErr is set when the payload's consent object was invalid (it
	// was then treated as absent).
	ConsentErr error
	// Explicit says the hit carried an explicit consent choice (payload or
	// pixel parameters): the caller records Decision in the ledger.
	Explicit bool
	// Subject is the hit's subject pseudonym when it has an identifier,
	// computed for the ledger even when the event is anonymous (it is then
	// never stored).
	Subject string
	// Scrubbed counts, by class, what the scrubbers removed from the
	// stored event (never the values).
	Scrubbed pseudonymize.Counts
	// Sensitive are the special categories of data detected (sensitive.go).
	Sensitive sensitive.Findings
	Record    storage.Record
	// Count is the counter an anonymous e-mail hit adds to (Counted).
	Count storage.EmailCount

	// signals are the consent signals Decide saw (Signals).
	signals []consent.Signal
}

// Signals returns the consent signals the decision was made from, in the
// order they were read (request, payload, consent manager, ledger). The
// slice is shared: do not modify it.
func (r *Result) Signals() []consent.Signal { return r.signals }

// Process decides, pseudonymizes and encodes one message.
func (p *Pipeline) Process(s *Site, m *collect.Message, r *Request) Result {
	var res Result
	signals := r.Signals
	res.Explicit = r.Explicit
	if len(m.Context.Consent) > 0 {
		// A consent string that does not decode is reported and counts as
		// no consent from its platform; the other signals still apply.
		ps, err := consent.FromPayload(m.Context.Consent, s.policy)
		if err != nil {
			res.ConsentErr = err
		}
		if len(ps) > 0 {
			signals = append(append(make([]consent.Signal, 0, len(signals)+len(ps)), signals...), ps...)
			// GPC and DNT reported in the payload are browser settings, not
			// a choice to record in the ledger.
			for _, sig := range ps {
				res.Explicit = res.Explicit || (sig.Source != consent.SourceGPC && sig.Source != consent.SourceDNT)
			}
		}
	}
	if len(m.Context.ConsentManagement) > 0 {
		// RudderStack's allowed and denied consent ids, as undecodable
		// consent strings: an invalid object counts as no signal.
		sig, err := consent.FromConsentManagement(m.Context.ConsentManagement, s.policy)
		if err != nil {
			res.ConsentErr = errors.Join(res.ConsentErr, err)
		}
		if sig.Granted.Len()+sig.Denied.Len() > 0 {
			signals = append(append(make([]consent.Signal, 0, len(signals)+1), signals...), sig)
			res.Explicit = true
		}
	}
	// A site in CNIL exemption mode keeps no user id of any kind.
	userID, groupID, previousID := m.UserID, m.GroupID, m.PreviousID
	if s.cnil {
		userID, groupID, previousID = "", "", ""
	}
	// Each pseudonym is computed once: here when the ledger needs the
	// subject, otherwise only below for a pseudonymous event. The ledger
	// is keyed by the stable pseudonym, even when events get rotated ones.
	var uid, aid string
	var uidDone, aidDone bool
	if r.Subject != "" {
		uid, uidDone = r.Subject, true
		res.Subject = uid
	} else if r.Ledger != nil || res.Explicit {
		uid, uidDone = s.pseudo.ID(s.id, pseudonymize.UserID, userID), true
		res.Subject = uid
		if uid == "" {
			aid, aidDone = s.pseudo.ID(s.id, pseudonymize.AnonymousID, m.AnonymousID), true
			res.Subject = aid
		}
	}
	if !res.Explicit && r.Ledger != nil && res.Subject != "" {
		if sig, ok := r.Ledger.Consent(s.id, res.Subject); ok {
			signals = append(append(make([]consent.Signal, 0, len(signals)+1), signals...), sig)
		}
	}
	d := consent.Decide(s.policy, signals...)
	if s.cnil {
		d = d.Limit(s.policy, consent.ExemptPurposes())
	}
	res.Decision = d
	res.signals = signals
	// An objection or restriction beats what the event says; Decision
	// stays the subject's choice, for the ledger.
	d = s.limit(r, res.Subject, d)
	res.Applied = d
	if d.Outcome == consent.Drop {
		res.Outcome = Dropped
		return res
	}
	if s.cnil && (m.Type == "identify" || m.Type == "group" || m.Type == "alias") {
		res.Outcome = NotKept
		return res
	}
	ua := m.Context.UserAgent
	if ua == "" {
		ua = r.UserAgent
	}
	// A server-side SDK without context.userAgent tells nothing of the
	// visitor's device; an empty UA on a browser hit is a bot's.
	dev := pseudonymize.Device{Class: "unknown"}
	if ua != "" || r.Source == "pixel" {
		dev = s.pseudo.Device(ua)
	}
	if dev.Bot && !p.storeBots && !r.KeepBots {
		res.Outcome = Bot
		return res
	}
	// Special categories of data: the site's action may drop the event,
	// keep it anonymous (d; Decision stays the visitor's choice, for the
	// ledger) or drop what matched (m is then a copy).
	var drop bool
	if m, d, drop = s.sensitive(m, d, &res); drop {
		res.Outcome = DroppedSensitive
		res.Applied = consent.Decision{Outcome: consent.Drop, Granted: d.Granted, Reason: reasonSensitive}
		return res
	}
	ip := m.Context.IP
	if ip == "" {
		ip = r.RemoteIP
	}
	pseudonymous := d.Outcome == consent.Pseudonymous
	marketing := pseudonymous && d.Granted.Has(consent.Marketing)

	now := r.ReceivedAt
	ev := &vigiev1.Event{Site: s.id, Type: m.Type, Source: r.Source}
	if pseudonymous {
		ev.Id = ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String()
		ev.TimestampMs, ev.ReceivedAtMs = m.EventTime(now).UnixMilli(), now.UnixMilli()
		ev.IpPrefix = s.ipPrefix(ip)
	} else {
		p.anonymousTimeAndPlace(s, ev, m.EventTime(now), now, ip)
	}
	sc := &res.Scrubbed
	ev.Library = library(m, sc)
	switch m.Type {
	case "track":
		ev.Name = pseudonymize.ScrubText(m.Event, sc)
	case "page", "screen":
		ev.Name = pseudonymize.ScrubText(m.Name, sc)
	}
	var urlCampaign pseudonymize.Campaign
	ev.Page, urlCampaign = page(s.pseudo, m, marketing, pseudonymous, sc)
	if pseudonymous {
		// Analytics-only events get the pseudonyms of the rotation period;
		// personalization and marketing need a stable subject.
		var period string
		if s.rotation != pseudonymize.RotateNever && !d.Granted.Has(consent.Personalization) && !marketing {
			period = s.rotation.Period(now)
		}
		pid := func(k pseudonymize.Kind, v string) string { return s.pseudo.PeriodID(s.id, k, v, period) }
		ev.Mode = vigiev1.Mode_MODE_PSEUDONYMOUS
		ev.Purposes = d.Granted.Names()
		ev.KeyId = s.pseudo.PeriodKeyID(period)
		if !uidDone || period != "" {
			uid = pid(pseudonymize.UserID, userID)
		}
		if !aidDone || period != "" {
			aid = pid(pseudonymize.AnonymousID, m.AnonymousID)
		}
		ev.AnonymousId, ev.UserId = aid, uid
		ev.GroupId = pid(pseudonymize.GroupID, groupID)
		// previousId only means something on alias, where it is usually
		// the anonymous id being merged into the user id.
		ev.PreviousId = pid(pseudonymize.AnonymousID, previousID)
		ev.Subject = ev.UserId
		if ev.Subject == "" {
			ev.Subject = ev.AnonymousId
		}
		ev.Device = &vigiev1.Device{Browser: dev.Browser, BrowserMajor: dev.BrowserMajor, Os: dev.OS, Class: dev.Class, Bot: dev.Bot}
		ev.Locale = pseudonymize.ScrubText(m.Context.Locale, sc)
		ev.Campaign = campaign(s, m, urlCampaign, sc)
		if props, err := s.pseudo.ScrubProperties(nil, m.Properties, sc); err == nil {
			ev.Properties = props
		}
		if len(m.Traits) > 0 && !s.cnil {
			clean, personal, names, err := s.pseudo.SplitTraits(m.Traits, sc)
			if err == nil {
				ev.Traits = clean
				// A rotated subject has no lasting vault entry: its
				// personal traits are not kept.
				if len(personal) > 0 && ev.Subject != "" && period == "" {
					ev.VaultedTraits = names
					res.Record.Vault = personal
				}
			}
		}
	} else {
		ev.Mode = vigiev1.Mode_MODE_ANONYMOUS
		ev.Device = &vigiev1.Device{Class: dev.Class, Bot: dev.Bot}
		if ev.Page != nil {
			ev.Page.Path = pseudonymize.MarkPathIDs(ev.Page.Path, s.idRules, sc)
		}
	}
	if m.MessageID != "" {
		res.Record.Dedup = []byte(s.pseudo.ID(s.id, pseudonymize.MessageID, m.MessageID))
	}
	markSensitive(ev, &res.Sensitive)
	p.index(&res, s, m, ev)
	p.finish(&res, s, ev, d)
	return res
}

// ipPrefix is the network kept of a pseudonymous event's address: its /24
// (IPv6 /48), or its /16 (IPv6 /32) on a site in CNIL exemption mode (the
// CNIL's guidance masks at least two bytes). "" for no address.
func (s *Site) ipPrefix(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	if s.cnil {
		return pseudonymize.NetworkBits(addr, 16, 32).String()
	}
	return pseudonymize.Network(addr).String()
}

// anonymousTimeAndPlace fills what an anonymous event keeps of its time and
// address: times rounded down to the site's granularity, an id whose time
// part is that rounded receipt time and whose random part is not monotonic
// (so ids do not tell the order of events within a period), and, with a
// GeoIP database, the country (and region if the site asks) of the
// address's network. The address itself is not kept.
func (p *Pipeline) anonymousTimeAndPlace(s *Site, ev *vigiev1.Event, eventTime, received time.Time, ip string) {
	received = received.Truncate(s.gran)
	ev.Id = ulid.MustNew(ulid.Timestamp(received), rand.Reader).String()
	ev.TimestampMs, ev.ReceivedAtMs = eventTime.Truncate(s.gran).UnixMilli(), received.UnixMilli()
	if p.geo == nil {
		return
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	var rec geodb.Record
	if found, err := p.geo.Lookup(pseudonymize.Network(addr).Addr(), &rec); err != nil || !found || rec.Country == "" {
		return
	}
	ev.Geo = &vigiev1.Geo{Country: rec.Country}
	if s.region {
		ev.Geo.Region = rec.Region
	}
}

// finish fills the record fields every event has, encodes ev into it and
// marks res Stored.
func (p *Pipeline) finish(res *Result, s *Site, ev *vigiev1.Event, d consent.Decision) {
	res.Record.Site = s.id
	res.Record.ID = ev.Id
	res.Record.Time = time.UnixMilli(ev.TimestampMs)
	res.Record.Type = ev.Type
	res.Record.Subject = ev.Subject
	res.Record.Topic = streams.EventSubject(s.id, ev.Type)
	res.Record.TTL = p.ttl(d)
	data, err := proto.Marshal(ev)
	if err != nil {
		// Marshal of a well-formed message cannot fail; treat as a drop.
		res.Outcome = Dropped
		return
	}
	res.Record.Data = data
	res.Outcome = Stored
	res.Applied = d
}

// ttl is the retention of an event: anonymous events get "anonymous", a
// pseudonymous event the longest retention among its purposes.
func (p *Pipeline) ttl(d consent.Decision) time.Duration {
	if d.Outcome != consent.Pseudonymous {
		return p.retention["anonymous"]
	}
	var ttl time.Duration
	for _, name := range d.Granted.Names() {
		if name == string(consent.Sensitive) {
			continue // a condition on the other purposes, with no retention of its own
		}
		r, ok := p.retention[name]
		if !ok || r == 0 {
			return 0
		}
		ttl = max(ttl, r)
	}
	return ttl
}

func library(m *collect.Message, sc *pseudonymize.Counts) string {
	l := m.Context.Library
	if l.Name == "" {
		return ""
	}
	return pseudonymize.ScrubText(strings.TrimSpace(l.Name+" "+l.Version), sc)
}

// page builds the scrubbed page context: anonymous events keep the path and
// the referrer's host only.
func page(ps *pseudonymize.Pseudonymizer, m *collect.Message, marketing, full bool, sc *pseudonymize.Counts) (*vigiev1.Page, pseudonymize.Campaign) {
	cp, _ := pageContext(m)
	if noPage(cp) {
		return nil, pseudonymize.Campaign{}
	}
	pg := &vigiev1.Page{}
	var u pseudonymize.URLParts
	if cp.URL != "" {
		u = ps.ScrubURL(cp.URL, marketing, sc)
	}
	pg.Path = u.Path
	if cp.Path != "" {
		pg.Path = ps.ScrubURL(cp.Path, false, sc).Path
	}
	if cp.Referrer != "" {
		ref := ps.ScrubURL(cp.Referrer, false, sc)
		pg.ReferrerHost = ref.Host
		if full {
			pg.Referrer = ref.URL
		}
	}
	if full {
		pg.Url = u.URL
		pg.Search = u.Search
		pg.Title = pseudonymize.ScrubText(cp.Title, sc)
	}
	return pg, u.Campaign
}

// campaign merges context.campaign over the utm_* parameters of the page
// URL (click ids there are present only with marketing consent, and stored
// as pseudonyms unless the site exports them).
func campaign(s *Site, m *collect.Message, fromURL pseudonymize.Campaign, sc *pseudonymize.Counts) *vigiev1.Campaign {
	c := m.Context.Campaign
	pick := func(a, b string) string {
		if a != "" {
			return pseudonymize.ScrubText(a, sc)
		}
		return b
	}
	source := fromURL.Source
	if c.Source != "" {
		source = pseudonymize.ScrubSource(c.Source, sc)
	}
	out := &vigiev1.Campaign{
		Name:     pick(c.Name, fromURL.Name),
		Source:   source,
		Medium:   pick(c.Medium, fromURL.Medium),
		Term:     pick(c.Term, fromURL.Term),
		Content:  pick(c.Content, fromURL.Content),
		ClickIds: s.pseudo.ClickIDs(s.id, fromURL.ClickIDs),
	}
	if out.Name == "" && out.Source == "" && out.Medium == "" && out.Term == "" && out.Content == "" && len(out.ClickIds) == 0 {
		return nil
	}
	return out
}
