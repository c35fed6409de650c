package proxy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/proxy/console"
	"github.com/vigie-dev/vigie/proxy/privacy"
	"github.com/vigie-dev/vigie/proxy/reaction"
	"github.com/vigie-dev/vigie/storage"
)

// The console's sources that the server itself provides: the overview and
// the e-mail statistics from the rollups, the privacy requests and the
// consent ledger's statistics, the sensitive-data report, the CRM
// destinations when one is configured and the response plugin's model when
// it is enabled. Each reads the server's parts when called, so they may be
// made before those start.

// defaultConsoleSources fills the sources SetConsoleSources left nil with
// the server's own.
func (s *Server) defaultConsoleSources(cs ConsoleSources) ConsoleSources {
	if cs.Overview == nil {
		cs.Overview = overviewSource{s}
	}
	if cs.Email == nil {
		cs.Email = emailSource{s}
	}
	if cs.Privacy == nil {
		cs.Privacy = &privacySource{s: s, stats: map[string]console.LedgerStats{}}
	}
	if cs.Sensitive == nil {
		cs.Sensitive = sensitiveSource{s}
	}
	if cs.Destinations == nil && len(s.destinations()) > 0 {
		cs.Destinations = destinationsSource{s}
	}
	if cs.Response == nil && s.reactions != nil {
		cs.Response = responseSource{s.reactions}
	}
	return cs
}

// errRollupsNotStarted is answered before the rollups started.
var errRollupsNotStarted = fmt.Errorf("%w: rollups", ErrNotStarted)

// overviewSource is the overview from the rollups.
type overviewSource struct{ s *Server }

func (o overviewSource) Overview(ctx context.Context, site string, from, to, cf, ct time.Time) (console.Overview, error) {
	r := o.s.rollups
	if r == nil {
		return console.Overview{}, errRollupsNotStarted
	}
	ov, err := r.agg.Overview(ctx, site, from, to, cf, ct)
	if err != nil {
		return console.Overview{}, err
	}
	return ov, nil
}

// emailSource is the e-mail statistics: the campaign-level counters of
// hits that may not be attributed (storage.EmailCounts) plus the opens
// and clicks stored as events, from the rollups' e-mail lists; neither
// scans events.
type emailSource struct{ s *Server }

func (e emailSource) Campaigns(ctx context.Context, site string, from, to time.Time) ([]console.Campaign, error) {
	r := e.s.rollups
	if r == nil {
		return nil, errRollupsNotStarted
	}
	type linkKey struct{ campaign, link string }
	camps := map[string]*console.Campaign{}
	links := map[linkKey]*console.LinkStats{}
	add := func(campaign, kind, class, link string, n uint64) {
		c := camps[campaign]
		if c == nil {
			c = &console.Campaign{Name: campaign}
			camps[campaign] = c
		}
		counts := &c.Opens
		if kind == storage.EmailClick {
			counts = &c.Clicks
			k := linkKey{campaign, link}
			l := links[k]
			if l == nil {
				l = &console.LinkStats{URL: link}
				links[k] = l
			}
			addClass(&l.Clicks, class, n)
		}
		addClass(counts, class, n)
	}
	counters, err := e.s.store.EmailCounts(ctx, site, "")
	if err != nil {
		return nil, err
	}
	for _, c := range counters {
		if !c.Hour.Before(from) && c.Hour.Before(to) && c.N > 0 {
			add(c.Campaign, c.Kind, c.Class, c.Link, uint64(c.N))
		}
	}
	st, err := r.agg.Email(ctx, site, from, to)
	if err != nil {
		return nil, err
	}
	for _, row := range st.Rows {
		add(row.Campaign, row.Kind, row.Class, row.Link, row.Count)
	}
	for k, l := range links {
		c := camps[k.campaign]
		c.Links = append(c.Links, *l)
	}
	out := make([]console.Campaign, 0, len(camps))
	for _, c := range camps {
		slices.SortFunc(c.Links, func(a, b console.LinkStats) int {
			return cmp.Or(cmp.Compare(b.Clicks.Total(), a.Clicks.Total()), strings.Compare(a.URL, b.URL))
		})
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b console.Campaign) int {
		return cmp.Or(cmp.Compare(b.Opens.Total()+b.Clicks.Total(), a.Opens.Total()+a.Clicks.Total()), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// addClass adds n hits of an e-mail class (email.Class names) to c.
func addClass(c *console.EmailCounts, class string, n uint64) {
	switch class {
	case "human":
		c.Human += n
	case "privacy_proxy":
		c.PrivacyProxy += n
	case "scanner":
		c.Scanner += n
	default:
		c.Unknown += n
	}
}

// ledgerStatsFresh is how long the consent ledger's statistics are kept:
// counting reads every entry of the site (about 1 s a million entries).
const ledgerStatsFresh = 5 * time.Minute

// privacySource is the privacy requests (proxy/privacy) and the consent
// ledger's statistics, counted from the ledger at most every
// ledgerStatsFresh per site.
type privacySource struct {
	s *Server
	// mu serializes the counts (one scan at a time) and guards stats.
	mu    sync.Mutex
	stats map[string]console.LedgerStats
}

// view converts a request as the API shows it (a JSON round trip: the
// console's type is the API's answer).
func consoleRequest(r *privacy.Request) (console.PrivacyRequest, error) {
	var out console.PrivacyRequest
	b, err := json.Marshal(r.View(time.Now(), true))
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	return out, err
}

func (p *privacySource) Requests(ctx context.Context, site string) ([]console.PrivacyRequest, error) {
	if p.s.privacy == nil {
		return nil, ErrNotStarted
	}
	reqs, err := p.s.privacy.List(ctx, "", "")
	if err != nil {
		return nil, err
	}
	out := make([]console.PrivacyRequest, 0, len(reqs))
	for i := len(reqs) - 1; i >= 0; i-- { // newest first
		if (site != "" && reqs[i].Site != site) || reqs[i].Origin != "" { // a part of another node's request is listed there
			continue
		}
		v, err := consoleRequest(reqs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (p *privacySource) Request(ctx context.Context, id string) (console.PrivacyRequest, error) {
	if p.s.privacy == nil {
		return console.PrivacyRequest{}, ErrNotStarted
	}
	r, err := p.s.privacy.Status(ctx, id) // in cluster mode, any node's request
	if errors.Is(err, privacy.ErrNotFound) {
		return console.PrivacyRequest{}, console.ErrNotFound
	}
	if err != nil {
		return console.PrivacyRequest{}, err
	}
	return consoleRequest(r)
}

// Create checks the request with the API's own rules (privacy
// ParseRequest, from the JSON the API would take) and records it, with
// the console user's token as its actor.
func (p *privacySource) Create(ctx context.Context, nr console.NewPrivacyRequest) (console.PrivacyRequest, error) {
	svc := p.s.privacy
	if svc == nil {
		return console.PrivacyRequest{}, ErrNotStarted
	}
	body := map[string]any{"type": nr.Type, "identifier": map[string]string{"kind": nr.IdentifierKind, "value": nr.Identifier}}
	if nr.Site != "" {
		body["site"] = nr.Site
	}
	if nr.Suppress {
		body["suppress"] = true
	}
	if nr.Lift {
		body["lift"] = true
	}
	if len(nr.Purposes) > 0 {
		body["purposes"] = nr.Purposes
	}
	if nr.Traits != "" {
		if !json.Valid([]byte(nr.Traits)) {
			return console.PrivacyRequest{}, fmt.Errorf("%w: traits: not valid JSON; write an object such as {\"email\": \"jane@example.com\"}", console.ErrInvalidRequest)
		}
		body["traits"] = json.RawMessage(nr.Traits)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return console.PrivacyRequest{}, err
	}
	in, err := svc.ParseRequest(b)
	var fe *privacy.FieldError
	if errors.As(err, &fe) {
		return console.PrivacyRequest{}, fmt.Errorf("%w: %s", console.ErrInvalidRequest, fe.Message)
	}
	if err != nil {
		return console.PrivacyRequest{}, err
	}
	if id, ok := access.IdentityFrom(ctx); ok {
		in.Actor = tokenActor(id)
	}
	r, err := svc.Create(ctx, in)
	if err != nil {
		return console.PrivacyRequest{}, err
	}
	return consoleRequest(r)
}

func (p *privacySource) LedgerStats(ctx context.Context, site string) (console.LedgerStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.stats[site]; ok && time.Since(st.At) < ledgerStatsFresh {
		return st, nil
	}
	lifetime := time.Duration(0)
	if st := p.s.siteByID(site); st != nil {
		lifetime = st.cfg.CookieLifetime()
	}
	start := time.Now()
	cs, err := p.s.store.ConsentStats(ctx, site, lifetime, start)
	if err != nil {
		return console.LedgerStats{}, err
	}
	out := console.LedgerStats{Site: site, At: start.UTC(), Entries: cs.Entries, Choices: cs.Choices, Expired: cs.Expired,
		Lifetime: lifetime, Objections: cs.Objections, Restricted: cs.Restricted}
	var purposes []string
	for _, pi := range p.s.cfg.Purposes {
		purposes = append(purposes, string(pi.Name))
	}
	for name := range cs.Granted {
		if !slices.Contains(purposes, name) {
			purposes = append(purposes, name)
		}
	}
	for name := range cs.Denied {
		if !slices.Contains(purposes, name) {
			purposes = append(purposes, name)
		}
	}
	for _, name := range purposes {
		if g, d := cs.Granted[name], cs.Denied[name]; g+d > 0 {
			out.Purposes = append(out.Purposes, console.PurposeChoice{Purpose: name, Granted: g, Denied: d})
		}
	}
	for name, n := range cs.Objected {
		out.Objected = append(out.Objected, console.PurposeCount{Purpose: name, Count: n})
	}
	slices.SortFunc(out.Objected, func(a, b console.PurposeCount) int { return strings.Compare(a.Purpose, b.Purpose) })
	err = p.s.store.Suppressions(ctx, func(s string, _ storage.IndexEntry, _ storage.Suppression) {
		if s == site {
			out.Suppressed++
		}
	})
	if err != nil {
		return console.LedgerStats{}, err
	}
	out.Took = time.Since(start)
	p.stats[site] = out
	return out, nil
}

// Retention is the server's retention outlook (RetentionOutlook, cached
// there), the console's type being its answer's.
func (p *privacySource) Retention(ctx context.Context) (console.Retention, error) {
	out, err := p.s.RetentionOutlook(ctx)
	if err != nil {
		return console.Retention{}, err
	}
	return out, nil
}

// sensitiveSource is the sensitive-data report (SensitiveReport; the
// console shares its types).
type sensitiveSource struct{ s *Server }

func (ss sensitiveSource) Sensitive(ctx context.Context, site string, from, to time.Time) (console.SensitiveReport, error) {
	return ss.s.SensitiveReport(ctx, site, from, to)
}

// responseSource is the response plugin's model (GET
// /admin/v1/response/model; the console shares its types).
type responseSource struct{ m reaction.Model }

func (rs responseSource) ResponseModel(ctx context.Context, site string) (console.ResponseTable, error) {
	return rs.m.Table(ctx, site)
}

// destinationsSource is the CRM destinations (GET
// /admin/v1/destinations), as a JSON round trip: the console's type is
// that answer without the recent dead letters, which name subjects.
type destinationsSource struct{ s *Server }

func (ds destinationsSource) Destinations(ctx context.Context) ([]console.Destination, error) {
	if ds.s.plugins == nil {
		return nil, ErrNotStarted
	}
	rt := ds.s.plugins.Status(ctx)
	out := []console.Destination{}
	for _, v := range ds.s.destinations() {
		v = ds.s.destinationView(ctx, v, rt)
		v.RecentDead = nil
		var d console.Destination
		b, err := json.Marshal(v)
		if err == nil {
			err = json.Unmarshal(b, &d)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (ds destinationsSource) Resync(ctx context.Context, name string) error {
	if ds.s.plugins == nil {
		return ErrNotStarted
	}
	for _, v := range ds.s.destinations() {
		if v.Name == name {
			_, err := ds.s.plugins.Resync(ctx, name)
			return err
		}
	}
	return console.ErrNotFound
}
