package proxy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/console"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/storage"
)

// siteTable is an immutable snapshot of the sites: the configuration's,
// then those added at run time (stored in Badger). Adding a site builds a
// new table and swaps the server's pointer, so requests read it without a
// lock.
type siteTable struct {
	byID    map[string]*site
	byKey   map[string]*site
	list    []*site
	origins []originPattern // every site's, for CORS preflights
}

// with returns a copy of t with st added.
func (t *siteTable) with(st *site) *siteTable {
	n := &siteTable{byID: make(map[string]*site, len(t.byID)+1), byKey: make(map[string]*site, len(t.byKey)+1),
		list: append(append(make([]*site, 0, len(t.list)+1), t.list...), st)}
	for k, v := range t.byID {
		n.byID[k] = v
	}
	for k, v := range t.byKey {
		n.byKey[k] = v
	}
	n.byID[st.cfg.ID] = st
	for _, k := range st.cfg.WriteKeys {
		n.byKey[k] = st
	}
	n.origins = append(append(make([]originPattern, 0, len(t.origins)+len(st.origins)), t.origins...), st.origins...)
	return n
}

// siteByID returns the site with id, nil if none.
func (s *Server) siteByID(id string) *site { return s.sites.Load().byID[id] }

// siteByKey returns the site of write key k, nil if none.
func (s *Server) siteByKey(k string) *site { return s.sites.Load().byKey[k] }

// storedSite is the JSON of a site added at run time (storage si/).
type storedSite struct {
	ID        string   `json:"id"`
	WriteKeys []string `json:"write_keys"`
	Origins   []string `json:"origins,omitempty"`
	CreatedMs int64    `json:"created_ms"`
}

// siteConfig is the configuration of a stored site: the defaults for
// everything it does not say.
func (ss storedSite) siteConfig() config.Site {
	return config.Site{ID: ss.ID, WriteKeys: ss.WriteKeys, Origins: ss.Origins}
}

// newStoredSite checks a site to add against the sites there are (the
// configuration's included) and fills its write key. Problems are
// console.ErrInvalidSite with the user's terms.
func newStoredSite(t *siteTable, ns console.NewSite, now time.Time) (storedSite, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", console.ErrInvalidSite, fmt.Sprintf(format, a...))
	}
	if !config.ValidSiteID(ns.ID) {
		return storedSite{}, bad("the site id must be 1 to 64 characters of a-z, 0-9, _ and -")
	}
	if t.byID[ns.ID] != nil {
		return storedSite{}, bad("a site %q exists already", ns.ID)
	}
	wk := ns.WriteKey
	if wk == "" {
		wk = "wk_" + strings.ToLower(rand.Text())
	}
	if len(wk) < 8 || len(wk) > 128 || strings.ContainsAny(wk, " \t\r\n:") {
		return storedSite{}, bad("a write key must be 8 to 128 characters, without spaces or colons")
	}
	if t.byKey[wk] != nil {
		return storedSite{}, bad("this write key belongs to another site")
	}
	if len(ns.Origins) > 64 {
		return storedSite{}, bad("at most 64 origins")
	}
	for _, o := range ns.Origins {
		if err := checkOrigin(o); err != nil {
			return storedSite{}, bad("origin %q: %v", o, err)
		}
	}
	return storedSite{ID: ns.ID, WriteKeys: []string{wk}, Origins: ns.Origins, CreatedMs: now.UnixMilli()}, nil
}

// checkOrigin checks an origin pattern as sites declare them:
// http(s)://host[:port], with a "*" port or a "*." subdomain wildcard.
func checkOrigin(o string) error {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return errors.New("must start with http:// or https://")
	}
	if rest == "" || strings.ContainsAny(rest, "/?#@ ") {
		return errors.New("must be a scheme and a host (and port), with no path")
	}
	if _, err := url.Parse(scheme + "://" + strings.Replace(strings.Replace(rest, "*.", "x.", 1), ":*", "", 1)); err != nil {
		return errors.New("is not a valid origin")
	}
	return nil
}

// newSite builds the run-time site of sc (pipeline included).
func (s *Server) newSite(sc config.Site, stored bool, created time.Time) (*site, error) {
	pc, err := pipelineSite(sc)
	if err != nil {
		return nil, err
	}
	p, err := s.pipe.NewSite(pc)
	if err != nil {
		return nil, err
	}
	return &site{cfg: sc, origins: parseOrigins(sc.Origins), pipe: p, stored: stored, created: created}, nil
}

// loadStoredSites adds the sites stored in Badger to the table, after the
// configuration's: a stored site whose id or write key the configuration
// now declares is skipped with a warning (the file is the source of what
// it declares).
func (s *Server) loadStoredSites(ctx context.Context) error {
	stored, err := s.store.Sites(ctx)
	if err != nil {
		return err
	}
	t := s.sites.Load()
	for id, b := range stored {
		var ss storedSite
		if err := json.Unmarshal(b, &ss); err != nil || ss.ID != id {
			s.log.Warn("a stored site does not decode; skipped", "site", id)
			continue
		}
		if t.byID[id] != nil {
			s.log.Warn("a site added from the console is now in the configuration file; the file's is used", "site", id)
			continue
		}
		if clash := t.keyClash(ss.WriteKeys); clash != "" {
			s.log.Warn("a stored site's write key belongs to a configured site; the stored site is skipped", "site", id, "other", clash)
			continue
		}
		st, err := s.newSite(ss.siteConfig(), true, time.UnixMilli(ss.CreatedMs))
		if err != nil {
			s.log.Warn("a stored site is not valid; skipped", "site", id, "err", err)
			continue
		}
		t = t.with(st)
	}
	s.sites.Store(t)
	return nil
}

// keyClash names the site holding one of keys, "" if none.
func (t *siteTable) keyClash(keys []string) string {
	for _, k := range keys {
		if o := t.byKey[k]; o != nil {
			return o.cfg.ID
		}
	}
	return ""
}

// addSite adds a site at run time: checked, stored in Badger, then
// visible to every request.
func (s *Server) addSite(ctx context.Context, ns console.NewSite) (*site, error) {
	s.sitesMu.Lock()
	defer s.sitesMu.Unlock()
	ss, err := newStoredSite(s.sites.Load(), ns, time.Now())
	if err != nil {
		return nil, err
	}
	st, err := s.newSite(ss.siteConfig(), true, time.UnixMilli(ss.CreatedMs))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", console.ErrInvalidSite, err)
	}
	b, _ := json.Marshal(ss)
	if err := s.store.AddSite(ctx, ss.ID, b); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return nil, fmt.Errorf("%w: a site %q exists already", console.ErrInvalidSite, ss.ID)
		}
		return nil, err
	}
	s.sites.Store(s.sites.Load().with(st))
	actor := "unknown"
	if id, ok := access.IdentityFrom(ctx); ok {
		actor = tokenActor(id)
	}
	s.audit(ctx, storage.AuditEntry{Actor: actor, Action: "site.add", Site: ss.ID})
	s.log.Info("site added", "site", ss.ID, "origins", len(ss.Origins))
	return st, nil
}

// consoleSite is st as the console shows it.
func consoleSite(st *site) console.Site {
	src := "config"
	if st.stored {
		src = "console"
	}
	return console.Site{ID: st.cfg.ID, WriteKeys: st.cfg.WriteKeys, Origins: st.cfg.Origins, Source: src, Created: st.created}
}

// handleAdminSites lists the sites (GET /admin/v1/sites).
func (s *Server) handleAdminSites(w http.ResponseWriter, _ *http.Request) {
	list := s.sites.Load().list
	out := make([]console.Site, 0, len(list))
	for _, st := range list {
		out = append(out, consoleSite(st))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sites": out})
}

// handleAdminAddSite adds a site (POST /admin/v1/sites, body {"id",
// "origins", "write_key"}); it answers the site with its write key.
func (s *Server) handleAdminAddSite(w http.ResponseWriter, r *http.Request) {
	var ns console.NewSite
	if !decodeAdminJSON(w, r, 64<<10, &ns) {
		return
	}
	st, err := s.addSite(r.Context(), ns)
	switch {
	case errors.Is(err, console.ErrInvalidSite):
		writeError(w, http.StatusBadRequest, "invalid_site", strings.TrimPrefix(err.Error(), console.ErrInvalidSite.Error()+": "), nil)
	case errors.Is(err, storage.ErrDiskFull):
		s.refuseDiskFull(w)
	case err != nil:
		s.log.Error("adding a site failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "the site could not be stored; retry later", nil)
	default:
		writeJSON(w, http.StatusCreated, consoleSite(st))
	}
}

// AddSiteOffline adds a site to the data directory of cfg while no Vigie
// runs there (`vigie sites add`): it takes the data dir's lock
// (ErrAlreadyRunning when a server holds it), opens Badger, checks the site
// against the configuration's and the stored ones, and stores it.
func AddSiteOffline(ctx context.Context, cfg config.Config, ns console.NewSite) (console.Site, error) {
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return console.Site{}, err
	}
	defer func() { _ = lock.release(false) }()
	if ks, err := keyring.Stat(cfg.DataDir); err != nil || !ks.Exists {
		return console.Site{}, fmt.Errorf("%w: %s has no keyring yet: start Vigie once (or declare the site in the configuration file)", ErrNoDataDir, cfg.DataDir)
	}
	kr, _, err := OpenKeyring(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return console.Site{}, err
	}
	st, err := storage.Open(storage.Config{Dir: filepath.Join(cfg.DataDir, "badger"), MinFreeBytes: cfg.Storage.MinFreeBytes,
		VaultKey: kr.VaultKey, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return console.Site{}, err
	}
	defer st.Close()
	t := &siteTable{byID: map[string]*site{}, byKey: map[string]*site{}}
	for _, sc := range cfg.Sites {
		t = t.with(&site{cfg: sc})
	}
	stored, err := st.Sites(ctx)
	if err != nil {
		return console.Site{}, err
	}
	for id, b := range stored {
		var ss storedSite
		if json.Unmarshal(b, &ss) == nil && t.byID[id] == nil {
			t = t.with(&site{cfg: ss.siteConfig()})
		}
	}
	ss, err := newStoredSite(t, ns, time.Now())
	if err != nil {
		return console.Site{}, err
	}
	b, _ := json.Marshal(ss)
	if err := st.AddSite(ctx, ss.ID, b); err != nil {
		return console.Site{}, err
	}
	return consoleSite(&site{cfg: ss.siteConfig(), stored: true, created: time.UnixMilli(ss.CreatedMs)}), nil
}
