package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Register adds the console's routes to mux. Every pattern but the
// sign-in page and the assets is in access.Routes.
func (c *Console) Register(mux *http.ServeMux) {
	mux.Handle("GET /console/assets/{file}", c.assets())
	mux.HandleFunc("GET /console/signin", c.signinPage)
	mux.HandleFunc("POST /console/signin", c.signin)
	mux.Handle("POST /console/signout", c.page(c.signout))
	mux.Handle("GET /console/{$}", c.page(c.home))
	mux.Handle("GET /console/overview", c.page(c.overview))
	mux.Handle("GET /console/live", c.page(c.live))
	mux.Handle("GET /console/segments", c.page(c.segments))
	mux.Handle("GET /console/segments/{name}/members", c.page(c.members))
	mux.Handle("GET /console/email", c.page(c.email))
	mux.Handle("GET /console/destinations", c.page(c.destinations))
	mux.Handle("POST /console/destinations/{name}/resync", c.page(c.resync))
	mux.Handle("GET /console/plugins", c.page(c.plugins))
	mux.Handle("POST /console/plugins/{name}/replay", c.page(c.replay))
	mux.Handle("GET /console/response", c.page(c.response))
	mux.Handle("GET /console/privacy", c.page(c.privacy))
	mux.Handle("POST /console/privacy/requests", c.page(c.createRequest))
	mux.Handle("GET /console/privacy/requests/{id}", c.page(c.request))
	mux.Handle("GET /console/sensitive", c.page(c.sensitive))
	mux.Handle("GET /console/sites", c.page(c.sites))
	mux.Handle("POST /console/sites", c.page(c.addSite))
	mux.Handle("GET /console/sites/{id}", c.page(c.site))
	mux.Handle("GET /console/sites/{id}/first-event", c.page(c.firstEvent))
	mux.HandleFunc("GET /console/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, http.StatusNotFound, "error", &view{Title: "Not found", Data: &errPage{http.StatusNotFound, "There is no console page at this address."}})
	})
}

// pageFunc serves one page; an error (pageError) is shown as a page.
type pageFunc func(w http.ResponseWriter, r *http.Request, v *view) error

// page wraps a console handler: a live session (else the sign-in page),
// the role table (else a friendly 403), the CSRF token and same-origin
// checks on state-changing requests, then the site asked for.
func (c *Console) page(h pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss, id, ok := c.session(r)
		if !ok {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/first-event") {
				http.Redirect(w, r, "/console/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.render(w, http.StatusUnauthorized, "error", &view{Title: "Signed out",
				Data: &errPage{http.StatusUnauthorized, "Your session has ended: sign in again."}})
			return
		}
		v := &view{ID: id, CSRF: ss.csrf, Personal: access.PersonalData(id.Role), Demo: c.cfg.DemoPath}
		for _, n := range nav {
			if access.Allowed("GET "+n.Path, id.Role) {
				v.Nav = append(v.Nav, n)
			}
		}
		if !access.Allowed(r.Pattern, id.Role) {
			c.render(w, http.StatusForbidden, "error", c.withSites(r, v, &errPage{http.StatusForbidden,
				"This page is not open to the " + id.Role + " role. Ask an admin if you need it."}))
			return
		}
		if !safeMethod(r.Method) && (!SameOrigin(r) || !ss.csrfOK(r)) {
			c.render(w, http.StatusForbidden, "error", c.withSites(r, v, &errPage{http.StatusForbidden,
				"This request did not come from a console page (its security token is missing or another site sent it). Reload the page and try again."}))
			return
		}
		c.withSites(r, v, nil)
		r = r.WithContext(access.WithIdentity(r.Context(), id))
		if err := h(w, r, v); err != nil {
			ep := asErrPage(err)
			if ep.Code >= 500 {
				c.log.Error("console page failed", "route", r.Pattern, "err", err)
			}
			v.Title, v.Data = http.StatusText(ep.Code), ep
			c.render(w, ep.Code, "error", v)
		}
	})
}

// withSites fills the site list and the site asked for (?site=, else the
// first); data, if set, becomes the view's error.
func (c *Console) withSites(r *http.Request, v *view, data *errPage) *view {
	v.Sites = c.srv.Sites()
	v.Site = r.URL.Query().Get("site")
	if !slices.ContainsFunc(v.Sites, func(s Site) bool { return s.ID == v.Site }) {
		v.Site = ""
		if len(v.Sites) > 0 {
			v.Site = v.Sites[0].ID
		}
	}
	if v.Site != "" {
		v.Query = "?site=" + url.QueryEscape(v.Site)
	}
	if data != nil {
		v.Title, v.Data = http.StatusText(data.Code), data
	}
	return v
}

func (c *Console) assets() http.Handler {
	files := http.StripPrefix("/console/assets/", http.FileServerFS(distFS()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// signinView is the sign-in page's data.
type signinView struct {
	Next    string
	Message string
	Demo    string
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.session(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "signin", &view{Title: "Sign in", Data: signinView{Next: r.URL.Query().Get("next"), Demo: c.cfg.DemoPath}})
}

// safeNext is where to go after sign-in: a console path, never another
// site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Path) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Path
	}
	return next
}

// maxTokenLen bounds a typed token (the keyring's own limit is 256).
const maxTokenLen = 512

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	sv := signinView{Next: r.PostFormValue("next"), Demo: c.cfg.DemoPath}
	fail := func(code int, msg string) {
		sv.Message = msg
		c.render(w, code, "signin", &view{Title: "Sign in", Data: sv})
	}
	if !SameOrigin(r) {
		fail(http.StatusForbidden, "This sign-in did not come from this console's page.")
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" || len(tok) > maxTokenLen {
		fail(http.StatusUnauthorized, "Paste the token printed when it was made (vigie tokens create, or the admin token of the first start).")
		return
	}
	id, err := c.srv.SignIn(r, tok)
	switch {
	case errors.Is(err, ErrThrottled):
		fail(http.StatusTooManyRequests, "Too many wrong tokens from your network: wait a minute and try again.")
		return
	case err != nil:
		fail(http.StatusUnauthorized, "This token is not valid: it is mistyped, or it was revoked.")
		return
	}
	v, _ := c.sessions.create(id.TokenID)
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.srv.IsHTTPS(r), MaxAge: int(c.cfg.SessionMax / time.Second),
	})
	c.srv.Audited(access.WithIdentity(r.Context(), id), storage.AuditEntry{Action: "console.signin"})
	securityHeaders(w)
	http.Redirect(w, r, safeNext(sv.Next), http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, _ *view) error {
	if ck, err := r.Cookie(CookieName); err == nil {
		c.sessions.remove(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.srv.IsHTTPS(r), MaxAge: -1})
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
	return nil
}

func (c *Console) home(w http.ResponseWriter, r *http.Request, v *view) error {
	if len(v.Nav) == 0 {
		return pageError(http.StatusForbidden, "No console page is open to your role.")
	}
	http.Redirect(w, r, v.Nav[0].Path+v.Query, http.StatusSeeOther)
	return nil
}

// hasEvents reports whether site has stored at least one event.
func (c *Console) hasEvents(ctx context.Context, site string) (bool, error) {
	evs, err := c.srv.Events(ctx, site, 1)
	return len(evs) > 0, err
}

// liveRow is one line of the live events page: a stored event with its
// decision, or a hit that was not stored.
type liveRow struct {
	At       time.Time
	Kind     string
	Type     string
	What     string
	Mode     string
	Purposes []string
	Reason   string
	Signals  []Signal
	Scrubbed map[string]int
	KeyID    string
	Subject  string
	EventID  string
	Route    string
	Count    int
	Known    bool // the decision is known (not only the stored event)
}

// liveView is the live page's data.
type liveView struct {
	Rows    []liveRow
	Summary []ReasonCount
	Empty   bool
	First   *firstRun
}

// liveLimit is how many stored events the live page shows.
const liveLimit = 100

func (c *Console) live(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Live events", "live"
	if v.Site == "" {
		return pageError(http.StatusNotFound, "No site is configured yet.")
	}
	ds := append(c.cfg.Decisions.Recent(v.Site), c.cfg.Decisions.Recent(NoSite)...)
	lv := liveView{}
	if !v.Personal {
		// Aggregates only: no event one by one, no pseudonym.
		lv.Summary = Summary(ds)
	} else {
		evs, err := c.srv.Events(r.Context(), v.Site, liveLimit)
		if err != nil {
			return err
		}
		lv.Rows = liveRows(evs, ds)
		lv.Empty = len(evs) == 0
		if lv.Empty {
			lv.First = c.firstRun(r, v.Site)
		}
	}
	v.Data = lv
	if r.URL.Query().Get("partial") == "1" {
		c.renderFragment(w, "live", "rows", v)
		return nil
	}
	c.render(w, http.StatusOK, "live", v)
	return nil
}

// liveRows merges stored events (newest first) with the decisions: each
// event gets its decision when the log still has it, and the hits that
// were not stored are listed at their time.
func liveRows(evs []*vigiev1.Event, ds []Decision) []liveRow {
	byID := make(map[string]Decision, len(ds))
	var rows []liveRow
	for _, d := range ds {
		if d.EventID != "" && (d.Kind == KindStored || d.Kind == KindDuplicate) {
			byID[d.EventID] = d
			continue
		}
		rows = append(rows, liveRow{At: d.At, Kind: d.Kind, Type: d.Type, Mode: d.Mode, Purposes: d.Purposes,
			Reason: d.Reason, Signals: d.Signals, Route: d.Route, Count: d.Count, EventID: d.EventID, Known: true})
	}
	oldest := time.Time{}
	for _, ev := range evs {
		row := liveRow{At: time.UnixMilli(ev.GetReceivedAtMs()), Kind: KindStored, Type: ev.GetType(), What: eventWhat(ev),
			Mode: modeName(ev.GetMode()), Purposes: ev.GetPurposes(), KeyID: ev.GetKeyId(), Subject: ev.GetSubject(), EventID: ev.GetId()}
		if d, ok := byID[ev.GetId()]; ok {
			row.Reason, row.Signals, row.Scrubbed, row.Known = d.Reason, d.Signals, d.Scrubbed, true
		}
		rows = append(rows, row)
		oldest = row.At
	}
	// Hits older than the oldest event listed would sit below a page that
	// has no room for them.
	if len(evs) == liveLimit {
		rows = slices.DeleteFunc(rows, func(r liveRow) bool { return r.At.Before(oldest) })
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].At.After(rows[j].At) })
	return rows
}

func modeName(m vigiev1.Mode) string {
	switch m {
	case vigiev1.Mode_MODE_PSEUDONYMOUS:
		return "pseudonymous"
	case vigiev1.Mode_MODE_ANONYMOUS:
		return "anonymous"
	}
	return ""
}

// eventWhat names a stored event: its name, else its page path.
func eventWhat(ev *vigiev1.Event) string {
	if ev.GetName() != "" {
		return ev.GetName()
	}
	return ev.GetPage().GetPath()
}

// firstRun is what a site with no event yet shows: its snippets with its
// own write key, and a wait for the first event.
type firstRun struct {
	Site     string
	WriteKey string
	Base     string
	Snippet  string
	Pixel    string
	Curl     string
	Node     string
	Demo     string
}

func (c *Console) firstRun(r *http.Request, id string) *firstRun {
	var st Site
	for _, s := range c.srv.Sites() {
		if s.ID == id {
			st = s
		}
	}
	wk := ""
	if len(st.WriteKeys) > 0 {
		wk = st.WriteKeys[0]
	}
	base := strings.TrimSuffix(c.cfg.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if c.srv.IsHTTPS(r) {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	f := &firstRun{Site: id, WriteKey: wk, Base: base}
	if c.cfg.DemoPath != "" && id == "demo" {
		f.Demo = c.cfg.DemoPath
	}
	f.Snippet = "<script>window.vigie=window.vigie||function(){(vigie.q=vigie.q||[]).push(arguments)};vigie('page');</script>\n" +
		`<script async src="` + base + c.cfg.SnippetPath + `" data-write-key="` + wk + `"></script>`
	f.Pixel = `<img src="` + base + `/v1/p.gif?k=` + url.QueryEscape(wk) + `" alt="">`
	f.Curl = "curl -u '" + wk + ":' " + base + "/v1/track -H 'Content-Type: application/json' \\\n" +
		`  -d '{"event": "Signed Up", "userId": "user-42", "context": {"consent": {"analytics": true}}}'`
	f.Node = "import { Analytics } from '@segment/analytics-node';\n" +
		"const analytics = new Analytics({ writeKey: '" + wk + "', host: '" + base + "' });\n" +
		"analytics.track({ userId: 'user-42', event: 'Signed Up', context: { consent: { analytics: true } } });"
	return f
}

// firstEvent answers the first-run page's poll: whether site has an event
// yet, and the newest one's decision.
func (c *Console) firstEvent(w http.ResponseWriter, r *http.Request, _ *view) error {
	id := r.PathValue("id")
	if !slices.ContainsFunc(c.srv.Sites(), func(s Site) bool { return s.ID == id }) {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": "unknown_site", "error": "no such site"})
		return nil
	}
	evs, err := c.srv.Events(r.Context(), id, 1)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"code": "storage_unavailable", "error": "events could not be read; retry"})
		return nil
	}
	out := map[string]any{"received": len(evs) > 0}
	if len(evs) > 0 {
		ev := evs[0]
		e := map[string]any{"type": ev.GetType(), "what": eventWhat(ev), "mode": modeName(ev.GetMode()),
			"purposes": ev.GetPurposes(), "at": time.UnixMilli(ev.GetReceivedAtMs()).UTC().Format(time.RFC3339)}
		for _, d := range c.cfg.Decisions.Recent(id) {
			if d.EventID == ev.GetId() {
				e["reason"] = d.Reason
				break
			}
		}
		out["event"] = e
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sitesView is the sites page's data.
type sitesView struct {
	Form    NewSite
	Origins string
}

func (c *Console) sites(w http.ResponseWriter, _ *http.Request, v *view) error {
	v.Title, v.Page = "Sites", "sites"
	v.Data = sitesView{}
	c.render(w, http.StatusOK, "sites", v)
	return nil
}

func (c *Console) addSite(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Sites", "sites"
	ns := NewSite{ID: strings.TrimSpace(r.PostFormValue("id"))}
	raw := r.PostFormValue("origins")
	for _, o := range strings.FieldsFunc(raw, func(r rune) bool { return r == '\n' || r == ',' || r == ' ' || r == '\r' }) {
		ns.Origins = append(ns.Origins, o)
	}
	st, err := c.srv.AddSite(access.WithIdentity(r.Context(), v.ID), ns)
	if errors.Is(err, ErrInvalidSite) {
		v.Message = strings.TrimPrefix(err.Error(), ErrInvalidSite.Error()+": ")
		v.Data = sitesView{Form: ns, Origins: raw}
		c.render(w, http.StatusBadRequest, "sites", v)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/console/sites/"+url.PathEscape(st.ID)+"?site="+url.QueryEscape(st.ID), http.StatusSeeOther)
	return nil
}

// siteView is one site's page.
type siteView struct {
	S      Site
	First  *firstRun
	Events bool
}

func (c *Console) site(w http.ResponseWriter, r *http.Request, v *view) error {
	id := r.PathValue("id")
	i := slices.IndexFunc(v.Sites, func(s Site) bool { return s.ID == id })
	if i < 0 {
		return pageError(http.StatusNotFound, "There is no site "+strconv.Quote(id)+".")
	}
	v.Title, v.Page, v.Site, v.Query = "Site "+id, "sites", id, "?site="+url.QueryEscape(id)
	has, err := c.hasEvents(r.Context(), id)
	if err != nil {
		return err
	}
	v.Data = siteView{S: v.Sites[i], First: c.firstRun(r, id), Events: has}
	c.render(w, http.StatusOK, "site", v)
	return nil
}

// segmentsView is the segments page's data.
type segmentsView struct {
	Segments []Segment
	Days     []segmentDay
	Chart    chartData
	Capped   bool
}

// segmentDay is one day's entries and exits of one segment.
type segmentDay struct {
	Day     string
	Segment string
	Entered int
	Exited  int
}

// maxChanges is how many segment changes the daily counts are made from.
const maxChanges = 10_000

func (c *Console) segments(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Segments", "segments"
	if v.Site == "" {
		return pageError(http.StatusNotFound, "No site is configured yet.")
	}
	segs, err := c.srv.Segments(r.Context(), v.Site)
	if err != nil {
		return err
	}
	changes, err := c.srv.SegmentChanges(r.Context(), v.Site, maxChanges)
	if err != nil {
		return err
	}
	sv := segmentsView{Segments: segs, Capped: len(changes) == maxChanges}
	type key struct{ day, seg string }
	counts := map[key]*segmentDay{}
	perDay := map[string][2]int{}
	for _, ch := range changes {
		day := time.UnixMilli(ch.GetAtMs()).UTC().Format("2006-01-02")
		k := key{day, ch.GetSegment()}
		d := counts[k]
		if d == nil {
			d = &segmentDay{Day: day, Segment: ch.GetSegment()}
			counts[k] = d
		}
		t := perDay[day]
		if ch.GetTransition() == vigiev1.Transition_TRANSITION_ENTERED {
			d.Entered++
			t[0]++
		} else {
			d.Exited++
			t[1]++
		}
		perDay[day] = t
	}
	for _, d := range counts {
		sv.Days = append(sv.Days, *d)
	}
	sort.Slice(sv.Days, func(i, j int) bool {
		if sv.Days[i].Day != sv.Days[j].Day {
			return sv.Days[i].Day > sv.Days[j].Day
		}
		return sv.Days[i].Segment < sv.Days[j].Segment
	})
	// The chart covers the change log's 30 days, one bar pair a day.
	sv.Chart = chartData{Labels: []string{"Entries", "Exits"}, Data: make([][]float64, 3)}
	today := c.cfg.Now().UTC().Truncate(24 * time.Hour)
	for i := 29; i >= 0; i-- {
		d := today.Add(-time.Duration(i) * 24 * time.Hour)
		n := perDay[d.Format("2006-01-02")]
		sv.Chart.Data[0] = append(sv.Chart.Data[0], float64(d.Unix()))
		sv.Chart.Data[1] = append(sv.Chart.Data[1], float64(n[0]))
		sv.Chart.Data[2] = append(sv.Chart.Data[2], float64(n[1]))
	}
	v.Data = sv
	c.render(w, http.StatusOK, "segments", v)
	return nil
}

// membersView is a segment's member list.
type membersView struct {
	Segment string
	Members []string
	Limit   int
}

const memberLimit = 200

func (c *Console) members(w http.ResponseWriter, r *http.Request, v *view) error {
	name := r.PathValue("name")
	v.Title, v.Page = "Segment "+name, "segments"
	m, err := c.srv.SegmentMembers(r.Context(), v.Site, name, memberLimit)
	if err != nil {
		return err
	}
	v.Data = membersView{Segment: name, Members: m, Limit: memberLimit}
	c.render(w, http.StatusOK, "members", v)
	return nil
}

func (c *Console) plugins(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Plugins", "plugins"
	if n := r.URL.Query().Get("replayed"); n != "" {
		if _, err := strconv.Atoi(n); err == nil {
			v.Message = n + " dead letter(s) re-queued for " + r.URL.Query().Get("plugin") + "."
		}
	}
	v.Data = c.srv.Plugins(r.Context())
	c.render(w, http.StatusOK, "plugins", v)
	return nil
}

func (c *Console) replay(w http.ResponseWriter, r *http.Request, v *view) error {
	name := r.PathValue("name")
	n, err := c.srv.Replay(r.Context(), name)
	if err != nil {
		c.log.Warn("console replay failed", "plugin", name, "err", err)
		return pageError(http.StatusServiceUnavailable, "The dead letters of "+strconv.Quote(name)+" could not all be re-queued; try again.")
	}
	http.Redirect(w, r, "/console/plugins"+v.Query+"&replayed="+strconv.Itoa(n)+"&plugin="+url.QueryEscape(name), http.StatusSeeOther)
	return nil
}

// destinationsView is the destinations page's data.
type destinationsView struct {
	Ready        bool
	Destinations []Destination
}

func (c *Console) destinations(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Destinations", "destinations"
	dv := destinationsView{Ready: c.cfg.Destinations != nil}
	if dv.Ready {
		ds, err := c.cfg.Destinations.Destinations(r.Context())
		if err != nil {
			return err
		}
		dv.Destinations = ds
	}
	if r.URL.Query().Get("resynced") != "" {
		v.Message = "A resync of " + r.URL.Query().Get("resynced") + " was started."
	}
	v.Data = dv
	c.render(w, http.StatusOK, "destinations", v)
	return nil
}

func (c *Console) resync(w http.ResponseWriter, r *http.Request, v *view) error {
	if c.cfg.Destinations == nil {
		return pageError(http.StatusNotFound, "No destination is configured.")
	}
	name := r.PathValue("name")
	err := c.cfg.Destinations.Resync(r.Context(), name)
	if errors.Is(err, ErrNotFound) {
		return pageError(http.StatusNotFound, "There is no destination "+strconv.Quote(name)+".")
	}
	if err != nil {
		c.log.Warn("console resync failed", "destination", name, "err", err)
		return pageError(http.StatusServiceUnavailable, "The resync of "+strconv.Quote(name)+" could not be started; try again.")
	}
	http.Redirect(w, r, "/console/destinations"+v.Query+"&resynced="+url.QueryEscape(name), http.StatusSeeOther)
	return nil
}
