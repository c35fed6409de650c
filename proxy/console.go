package proxy

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/proxy/console"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/privacy"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// ConsolePath is where the console is served.
const ConsolePath = console.Path

// ConsoleSources are the sources of the console's pages whose data other
// parts of Vigie give. The server provides Overview, Email (the rollups),
// Privacy (the requests and the ledger's statistics), Sensitive and,
// when a CRM destination is configured or the response plugin enabled,
// Destinations and Response itself (nil: the page says what it waits
// for). Set them with SetConsoleSources before Start; a nil field keeps
// the server's own.
type ConsoleSources struct {
	Overview     console.OverviewSource
	Privacy      console.PrivacySource
	Sensitive    console.SensitiveSource
	Email        console.EmailSource
	Destinations console.DestinationsSource
	Response     console.ResponseSource
}

// SetConsoleSources gives the console the sources of its pages.
func (s *Server) SetConsoleSources(cs ConsoleSources) { s.consoleSources = cs }

// startConsole makes the console (after the store, before the routes).
func (s *Server) startConsole() error {
	cs := s.defaultConsoleSources(s.consoleSources)
	c, err := console.New(console.Config{
		Server:      consoleServer{s},
		Decisions:   console.NewDecisionLog(0),
		SessionIdle: time.Duration(s.cfg.Console.SessionIdle),
		SessionMax:  time.Duration(s.cfg.Console.SessionMax),
		DemoPath:    s.cfg.DemoPath,
		SnippetPath: s.cfg.SnippetPath,
		PublicURL:   s.cfg.PublicURL,
		Overview:    cs.Overview, Privacy: cs.Privacy, Sensitive: cs.Sensitive, Email: cs.Email,
		Destinations: cs.Destinations, Response: cs.Response,
		Logger: s.log.With("component", "console"),
	})
	if err != nil {
		return err
	}
	s.console = c
	return nil
}

// consoleRoutes registers the console's pages, the overview and sites
// APIs and / (which leads to the console's sign-in).
func (s *Server) consoleRoutes(mux *http.ServeMux) {
	s.console.Register(mux)
	mux.Handle("GET /admin/v1/overview", s.admin(s.handleAdminOverview))
	mux.Handle("GET /admin/v1/sites", s.admin(s.handleAdminSites))
	mux.Handle("POST /admin/v1/sites", s.admin(s.handleAdminAddSite))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, ConsolePath, http.StatusFound)
	})
}

// recordDecision notes in the console's decision log why one hit was
// kept the way it was (stored events, drops, bots). Nothing personal: the
// pseudonym only of a stored pseudonymous event (shown to admins only).
func (s *Server) recordDecision(st *site, res *pipeline.Result) {
	if s.console == nil {
		return
	}
	d := console.Decision{Reason: res.Decision.Reason, Mode: res.Decision.Outcome.String()}
	switch res.Outcome {
	case pipeline.Stored:
		d.Kind, d.EventID, d.Type = console.KindStored, res.Record.ID, res.Record.Type
		if res.Decision.Outcome == consent.Pseudonymous {
			d.Purposes = res.Decision.Granted.Names()
			d.Subject = res.Record.Subject
			d.KeyID = st.pipe.KeyID()
		}
	case pipeline.Dropped:
		d.Kind = console.KindDropped
	case pipeline.Bot:
		d.Kind, d.Reason = console.KindBot, "bot user agent"
	default:
		return
	}
	for _, sig := range res.Signals() {
		if sig.Granted.Len()+sig.Denied.Len() == 0 {
			continue
		}
		d.Signals = append(d.Signals, console.Signal{Source: string(sig.Source), Granted: sig.Granted.Names(), Denied: sig.Denied.Names()})
	}
	if res.Scrubbed.Total() > 0 {
		d.Scrubbed = map[string]int{}
		for cl := pseudonymize.Class(0); cl < pseudonymize.NumClasses; cl++ {
			if n := res.Scrubbed.Of(cl); n > 0 {
				d.Scrubbed[cl.String()] = n
			}
		}
	}
	s.console.Decisions().Add(st.cfg.ID, d)
}

// recordRejection notes a refused request (or some of a batch's events)
// with its reason and route; st nil when the site is not known.
func (s *Server) recordRejection(r *http.Request, st *site, reason string, n int) {
	if s.console == nil {
		return
	}
	id := console.NoSite
	if st != nil {
		id = st.cfg.ID
	}
	d := console.Decision{Kind: console.KindRejected, Reason: reason, Count: n}
	if r != nil {
		d.Route = routeName(r)
	}
	s.console.Decisions().Add(id, d)
}

// markCommitted updates the decision log once recs are committed (err
// nil: dups says which were already stored) or failed.
func (s *Server) markCommitted(recs []storage.Record, dups []bool, err error) {
	if s.console == nil {
		return
	}
	for i := range recs {
		switch {
		case err != nil:
			s.console.Decisions().Mark(recs[i].Site, recs[i].ID, console.KindFailed, "not stored: storage unavailable (503, the client retries)")
		case i < len(dups) && dups[i]:
			s.console.Decisions().Mark(recs[i].Site, recs[i].ID, console.KindDuplicate, "messageId already stored")
		}
	}
}

// tokenActor names id in the audit trail.
func tokenActor(id access.Identity) string { return privacy.TokenActor(id.TokenID, id.Role) }

// audit appends e to the audit trail, its actor from ctx's identity when
// not set; a failure is logged (the action itself is done).
func (s *Server) audit(ctx context.Context, e storage.AuditEntry) {
	if e.Actor == "" {
		e.Actor = "unknown"
		if id, ok := access.IdentityFrom(ctx); ok {
			e.Actor = tokenActor(id)
		}
	}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.log.Warn("audit entry not written", "action", e.Action, "err", err)
	}
}

// authConsole names console sign-ins in the authentication metrics.
const authConsole = "console"

// decodeEvent decodes a stored event.
func decodeEvent(b []byte) (*vigiev1.Event, error) {
	ev := &vigiev1.Event{}
	return ev, proto.Unmarshal(b, ev)
}

// consoleServer is the server as the console sees it (console.Server).
type consoleServer struct{ s *Server }

func (c consoleServer) SignIn(r *http.Request, tok string) (access.Identity, error) {
	s := c.s
	if _, ok := s.authLim.admit(s.clientNet(r), time.Now()); !ok {
		s.metrics.authThrottled.WithLabelValues(authConsole).Inc()
		return access.Identity{}, console.ErrThrottled
	}
	t, ok := s.checkToken(tok)
	if !ok {
		s.authFailed(r, authConsole)
		return access.Identity{}, console.ErrWrongToken
	}
	return identity(t), nil
}

func (c consoleServer) Token(id string) (access.Identity, bool) {
	t, ok := c.s.tokenByID(id)
	return identity(t), ok
}

func (c consoleServer) IsHTTPS(r *http.Request) bool { return c.s.isHTTPS(r) }

func (c consoleServer) Sites() []console.Site {
	list := c.s.sites.Load().list
	out := make([]console.Site, 0, len(list))
	for _, st := range list {
		out = append(out, consoleSite(st))
	}
	return out
}

func (c consoleServer) AddSite(ctx context.Context, ns console.NewSite) (console.Site, error) {
	st, err := c.s.addSite(ctx, ns)
	if err != nil {
		return console.Site{}, err
	}
	return consoleSite(st), nil
}

func (c consoleServer) Events(ctx context.Context, site string, limit int) ([]*vigiev1.Event, error) {
	var out []*vigiev1.Event
	_, _, err := c.s.store.ListEvents(ctx, site, storage.EventQuery{Limit: limit, Keep: func(b []byte) bool {
		ev, err := decodeEvent(b)
		if err != nil {
			return false
		}
		out = append(out, ev)
		return true
	}})
	return out, err
}

func (c consoleServer) Segments(ctx context.Context, site string) ([]console.Segment, error) {
	sizes, err := c.s.store.SegmentSizes(ctx, site)
	if err != nil {
		return nil, err
	}
	var out []console.Segment
	for _, v := range c.s.segmentDefinitions(site) {
		out = append(out, console.Segment{Name: v.Name, Plugin: v.Plugin, Description: v.Description, When: v.When, Size: sizes[v.Name]})
		delete(sizes, v.Name)
	}
	for name, n := range sizes {
		out = append(out, console.Segment{Name: name, Size: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (c consoleServer) SegmentChanges(ctx context.Context, site string, limit int) ([]*vigiev1.SegmentChange, error) {
	return c.s.store.RecentSegmentChanges(ctx, site, limit)
}

func (c consoleServer) SegmentMembers(ctx context.Context, site, segment string, limit int) ([]string, error) {
	return c.s.store.SegmentMembers(ctx, site, segment, limit, 0)
}

func (c consoleServer) Plugins(ctx context.Context) []plugins.Status {
	if c.s.plugins == nil {
		return nil
	}
	return c.s.plugins.Status(ctx)
}

func (c consoleServer) Replay(ctx context.Context, name string) (int, error) {
	if c.s.plugins == nil {
		return 0, plugins.ErrUnknownPlugin
	}
	n, err := c.s.plugins.Replay(ctx, name)
	if err == nil || !errors.Is(err, plugins.ErrUnknownPlugin) {
		c.s.audit(ctx, storage.AuditEntry{Action: "plugin.replay", Count: n})
	}
	return n, err
}

func (c consoleServer) Audit(ctx context.Context, q storage.AuditQuery) ([]storage.AuditEntry, string, error) {
	return c.s.store.ListAudit(ctx, q)
}

func (c consoleServer) Audited(ctx context.Context, e storage.AuditEntry) { c.s.audit(ctx, e) }
