// Package console is Vigie's web console at /console/: sign-in with an API
// token, a server-side session (HttpOnly, SameSite=Strict cookie, CSRF
// token on every state-changing request, Origin and Sec-Fetch-Site
// checked), and html/template pages with a little JavaScript (uPlot for
// time series), every asset embedded, served under a strict Content
// Security Policy (script-src 'self', no inline script).
//
// What each role may open is decided by proxy/access, the one table of
// roles; pages that would show a person's data show aggregates to roles
// other than admin. The console needs from the server only the Server
// interface; pages whose data comes from other parts take the optional
// OverviewSource, PrivacySource, SensitiveSource, EmailSource,
// DestinationsSource and ResponseSource and say what they are waiting for
// while nil.
package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Path is where the console is served.
const Path = "/console/"

// Server is what the console needs from the Vigie server.
type Server interface {
	// SignIn checks a token typed on the sign-in page (the client
	// network's failure budget first): ErrThrottled, ErrWrongToken.
	SignIn(r *http.Request, token string) (access.Identity, error)
	// Token returns the current identity of token id, false once it was
	// revoked: a session lives only as long as its token.
	Token(id string) (access.Identity, bool)
	// IsHTTPS reports whether r reached Vigie over HTTPS (Secure cookie).
	IsHTTPS(r *http.Request) bool
	// Sites lists the sites, configured ones first.
	Sites() []Site
	// AddSite adds a site (stored in Badger); ErrInvalidSite names the
	// problem.
	AddSite(ctx context.Context, ns NewSite) (Site, error)
	// Events returns site's latest stored events, newest first.
	Events(ctx context.Context, site string, limit int) ([]*vigiev1.Event, error)
	// Segments lists site's segments with their rules and sizes.
	Segments(ctx context.Context, site string) ([]Segment, error)
	// SegmentChanges returns site's latest segment changes, newest first.
	SegmentChanges(ctx context.Context, site string, limit int) ([]*vigiev1.SegmentChange, error)
	// SegmentMembers returns up to limit subjects of a segment.
	SegmentMembers(ctx context.Context, site, segment string, limit int) ([]string, error)
	// Plugins reports every plugin.
	Plugins(ctx context.Context) []plugins.Status
	// Replay re-queues a plugin's dead letters.
	Replay(ctx context.Context, plugin string) (int, error)
	// Audit lists the audit trail.
	Audit(ctx context.Context, q storage.AuditQuery) ([]storage.AuditEntry, string, error)
	// Audited records a console action in the audit trail.
	Audited(ctx context.Context, e storage.AuditEntry)
}

// Site is a site as the console shows it.
type Site struct {
	ID        string   `json:"id"`
	WriteKeys []string `json:"write_keys"`
	Origins   []string `json:"origins"`
	// Source is "config" (the YAML file) or "console" (stored in Badger).
	Source  string    `json:"source"`
	Created time.Time `json:"created,omitzero"`
}

// NewSite is a site to add.
type NewSite struct {
	ID      string   `json:"id"`
	Origins []string `json:"origins"`
	// WriteKey is its write key; empty: a random one is made.
	WriteKey string `json:"write_key,omitempty"`
}

// Segment is one segment with its rule as written.
type Segment struct {
	Name        string `json:"name"`
	Plugin      string `json:"plugin,omitempty"`
	Description string `json:"description,omitempty"`
	When        string `json:"when,omitempty"`
	Size        int64  `json:"size"`
}

// Config configures a Console. Zero values select the documented
// defaults.
type Config struct {
	// Server is the Vigie server (required).
	Server Server
	// Decisions are the recent decisions shown on the live events page.
	// Default: an empty log.
	Decisions *DecisionLog
	// SessionIdle ends a session after this long without a request.
	// Default 12h.
	SessionIdle time.Duration
	// SessionMax ends a session this long after sign-in, used or not.
	// Default 7 days.
	SessionMax time.Duration
	// MaxSessions bounds the sessions held; past it the least recently
	// used is ended. Default 1000.
	MaxSessions int
	// DemoPath is the demo site's path, linked from the sign-in page
	// ("" or "off": none).
	DemoPath string
	// SnippetPath is the browser snippet's path, for the first-run
	// snippets. Default /s.js.
	SnippetPath string
	// PublicURL is Vigie's public base URL for the snippets. Default: the
	// request's own scheme and host.
	PublicURL string
	// The sources of the pages whose data other parts of Vigie give; nil
	// shows the page's waiting state.
	Overview     OverviewSource
	Privacy      PrivacySource
	Sensitive    SensitiveSource
	Email        EmailSource
	Destinations DestinationsSource
	Response     ResponseSource
	// Logger receives errors. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Console serves the console's pages.
type Console struct {
	cfg      Config
	srv      Server
	log      *slog.Logger
	sessions *Sessions
	pages    *pages
}

// New checks cfg and parses the templates.
func New(cfg Config) (*Console, error) {
	if cfg.Server == nil {
		return nil, ErrNoServer
	}
	if cfg.Decisions == nil {
		cfg.Decisions = NewDecisionLog(0)
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = DefaultSessionIdle
	}
	if cfg.SessionMax <= 0 {
		cfg.SessionMax = DefaultSessionMax
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.SnippetPath == "" {
		cfg.SnippetPath = "/s.js"
	}
	if cfg.DemoPath == "off" {
		cfg.DemoPath = ""
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	return &Console{
		cfg: cfg, srv: cfg.Server, log: cfg.Logger, pages: p,
		sessions: newSessions(cfg.SessionIdle, cfg.SessionMax, cfg.MaxSessions, cfg.Now),
	}, nil
}

// Decisions is the console's decision log (Config.Decisions).
func (c *Console) Decisions() *DecisionLog { return c.cfg.Decisions }

// SessionIdentity returns the identity of r's session cookie, if it names
// a live session whose token still exists. For a state-changing request it
// also checks the CSRF token and SameOrigin: csrfOK false means refuse.
// The admin middleware uses it, so the admin API takes console sessions as
// it takes bearer tokens.
func (c *Console) SessionIdentity(r *http.Request) (id access.Identity, csrfOK, ok bool) {
	ss, id, ok := c.session(r)
	if !ok {
		return access.Identity{}, false, false
	}
	if safeMethod(r.Method) {
		return id, true, true
	}
	return id, SameOrigin(r) && ss.csrfOK(r), true
}

// session returns r's live session and its token's current identity.
func (c *Console) session(r *http.Request) (*session, access.Identity, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil, access.Identity{}, false
	}
	ss, ok := c.sessions.lookup(ck.Value)
	if !ok {
		return nil, access.Identity{}, false
	}
	id, ok := c.srv.Token(ss.tokenID)
	if !ok {
		// The token was revoked: its sessions end with it.
		c.sessions.removeToken(ss.tokenID)
		return nil, access.Identity{}, false
	}
	id.Session = true
	return ss, id, true
}

// errPage is an error the console answers as a page.
type errPage struct {
	Code int
	Msg  string
}

func (e *errPage) Error() string { return e.Msg }

func pageError(code int, msg string) error { return &errPage{code, msg} }

// asErrPage returns err as an errPage (a 500 for anything else).
func asErrPage(err error) *errPage {
	var ep *errPage
	if errors.As(err, &ep) {
		return ep
	}
	return &errPage{http.StatusInternalServerError, "Something went wrong on the server; the log says what."}
}
