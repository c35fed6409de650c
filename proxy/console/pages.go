package console

import (
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/storage"
)

// overviewView is the overview page's data.
type overviewView struct {
	Ready  bool // a source is configured
	Empty  bool // the site has no event yet
	First  *firstRun
	Span   span
	O      Overview
	Series chartData
	// Previous are the comparison period's totals (nil: none).
	Previous *Totals
	// Cards are the headline figures with their change.
	Cards []card
	// Lists are the top lists, in page order.
	Lists []topList
}

// card is one headline figure.
type card struct {
	ID, Label string
	N         uint64
	Note      string // e.g. "of which 12 anonymous"
	// Compared says Before and Change are set: the comparison period's
	// figure and the change, "+12 %", "−3 %", "=" or "new".
	Compared bool
	Before   uint64
	Change   string
	Up       bool
}

// topList is one titled top list.
type topList struct {
	ID, Title string
	L         List
}

// chartData is a uPlot series: x in Unix seconds, then one array per
// series; Dashed lists the series (1-based, as uPlot counts them) drawn
// dashed (the comparison).
type chartData struct {
	Labels []string    `json:"labels"`
	Data   [][]float64 `json:"data"`
	Dashed []int       `json:"dashed,omitempty"`
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Overview", "overview"
	if v.Site == "" {
		return pageError(http.StatusNotFound, "No site is configured yet.")
	}
	sp, msg := c.spanOf(r, "7d")
	v.Message = msg
	ov := overviewView{Ready: c.cfg.Overview != nil, Span: sp}
	has, err := c.hasEvents(r.Context(), v.Site)
	if err != nil {
		return err
	}
	if !has {
		ov.Empty = true
		ov.First = c.firstRun(r, v.Site)
	}
	if ov.Ready {
		o, err := c.cfg.Overview.Overview(r.Context(), v.Site, sp.From, sp.To, sp.CompareFrom, sp.CompareTo)
		if err != nil {
			return err
		}
		ov.O = o
		if o.Compare != nil {
			ov.Previous = &o.Compare.Totals
		}
		ov.Cards = cards(o.Totals, ov.Previous, o.Live)
		t := o.Top
		ov.Lists = []topList{
			{"top-pages", "Top pages", t.Pages}, {"top-entry", "Entry pages", t.EntryPages},
			{"top-sources", "Sources", t.Sources}, {"top-campaigns", "Campaigns (utm_campaign)", t.Campaigns},
			{"top-utm-sources", "utm_source", t.UTMSources}, {"top-utm-mediums", "utm_medium", t.UTMMediums},
			{"top-countries", "Countries", t.Countries}, {"top-devices", "Devices", t.Devices},
			{"top-browsers", "Browsers", t.Browsers}, {"top-oses", "Operating systems", t.OSes},
		}
		ov.Series = seriesOf(o)
	}
	v.Data = ov
	c.render(w, http.StatusOK, "overview", v)
	return nil
}

// cards are the overview's headline figures.
func cards(t Totals, prev *Totals, live Live) []card {
	mk := func(id, label string, n uint64, before func(Totals) uint64, note string) card {
		cd := card{ID: id, Label: label, N: n, Note: note}
		if prev != nil {
			b := before(*prev)
			cd.Compared, cd.Before, cd.Change, cd.Up = true, b, change(n, b), n >= b
		}
		return cd
	}
	anon := func(n uint64) string {
		if n == 0 {
			return ""
		}
		return "of which " + strconv.FormatUint(n, 10) + " anonymous"
	}
	return []card{
		mk("card-visitors", "Visitors (identified)", t.Visitors, func(p Totals) uint64 { return p.Visitors }, ""),
		mk("card-visits", "Visits", t.Visits, func(p Totals) uint64 { return p.Visits }, anon(t.Anonymous.Visits)),
		mk("card-pageviews", "Page views", t.PageViews, func(p Totals) uint64 { return p.PageViews }, anon(t.Anonymous.PageViews)),
		mk("card-events", "Events", t.Events, func(p Totals) uint64 { return p.Events }, anon(t.Anonymous.Events)),
		{ID: "card-live", Label: "Last 5 minutes", N: live.Events, Note: strconv.FormatUint(live.Visitors, 10) + " identified visitor(s)"},
	}
}

// change is n compared with before, as a signed percentage.
func change(n, before uint64) string {
	switch {
	case before == 0 && n == 0:
		return "="
	case before == 0:
		return "new"
	}
	pct := math.Round((float64(n) - float64(before)) * 100 / float64(before))
	if pct > 0 {
		return "+" + strconv.FormatFloat(pct, 'f', 0, 64) + " %"
	}
	if pct == 0 {
		return "="
	}
	return "−" + strconv.FormatFloat(-pct, 'f', 0, 64) + " %"
}

// seriesOf is the overview's chart: page views, visits and visitors, and
// the comparison's page views on the same x (point by point).
func seriesOf(o Overview) chartData {
	ch := chartData{Labels: []string{"Page views", "Visits", "Visitors"}, Data: make([][]float64, 4)}
	for _, pt := range o.Series {
		ch.Data[0] = append(ch.Data[0], float64(pt.Start.Unix()))
		ch.Data[1] = append(ch.Data[1], float64(pt.PageViews))
		ch.Data[2] = append(ch.Data[2], float64(pt.Visits))
		ch.Data[3] = append(ch.Data[3], float64(pt.Visitors))
	}
	if o.Compare != nil {
		before := make([]float64, len(o.Series))
		for i := range before {
			if i < len(o.Compare.Series) {
				before[i] = float64(o.Compare.Series[i].PageViews)
			}
		}
		ch.Labels = append(ch.Labels, "Page views, before")
		ch.Data = append(ch.Data, before)
		ch.Dashed = []int{4}
	}
	return ch
}

// emailView is the e-mail page's data.
type emailView struct {
	Ready     bool
	Span      span
	Campaigns []Campaign
	Totals    Campaign
}

func (c *Console) email(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "E-mail", "email"
	sp, msg := c.spanOf(r, "30d")
	v.Message = msg
	ev := emailView{Ready: c.cfg.Email != nil, Span: sp}
	if ev.Ready && v.Site != "" {
		cs, err := c.cfg.Email.Campaigns(r.Context(), v.Site, sp.From, sp.To)
		if err != nil {
			return err
		}
		ev.Campaigns = cs
		for _, cp := range cs {
			ev.Totals.Opens = ev.Totals.Opens.add(cp.Opens)
			ev.Totals.Clicks = ev.Totals.Clicks.add(cp.Clicks)
		}
	}
	v.Data = ev
	c.render(w, http.StatusOK, "email", v)
	return nil
}

// add returns c plus o.
func (c EmailCounts) add(o EmailCounts) EmailCounts {
	return EmailCounts{Human: c.Human + o.Human, PrivacyProxy: c.PrivacyProxy + o.PrivacyProxy,
		Scanner: c.Scanner + o.Scanner, Unknown: c.Unknown + o.Unknown}
}

// Machine is the opens or clicks made by machines (privacy proxies and
// scanners).
func (c EmailCounts) Machine() uint64 { return c.PrivacyProxy + c.Scanner }

// auditShown is how many audit entries the privacy page shows.
const auditShown = 50

// requestTypes are the request types the form offers, with what each
// does.
var requestTypes = []struct{ Name, Label string }{
	{"access", "access (Art. 15): a copy of the person's data"},
	{"export", "export (Art. 20): the data, machine-readable"},
	{"erase", "erase (Art. 17): delete everything, everywhere"},
	{"object", "object (Art. 21): stop a purpose (marketing unless named)"},
	{"restrict", "restrict (Art. 18): anonymous only, no profile or sync"},
	{"rectify", "rectify (Art. 16): replace personal traits"},
}

// identifierKinds are the identifiers a request may name a person by.
var identifierKinds = []struct{ Name, Label string }{
	{"email", "e-mail address"}, {"user_id", "user id"}, {"phone", "phone number"},
	{"anonymous_id", "anonymous id"}, {"cookie", "vigie_id cookie"},
}

// privacyView is the privacy page's data.
type privacyView struct {
	Ready    bool
	Requests []PrivacyRequest
	Open     int // requests not finished
	Overdue  int
	Stats    *LedgerStats
	StatsErr string
	// Purge is what will be purged next (nil: not read, see PurgeErr).
	Purge    *purgeView
	PurgeErr string
	Audit    []storage.AuditEntry
	Form     requestForm
}

// purgeView is the privacy page's "Purged next" section: the kinds of
// data with something ending within the horizon, and those with nothing.
type purgeView struct {
	Retention
	Due  []purgeRow
	None []string
}

// purgeRow is one kind of data (events: one retention setting) with
// what of it ends within the horizon.
type purgeRow struct {
	Label, How string
	Due        int
	Next       time.Time
}

// kindLabels name the outlook's kinds of data for people.
var kindLabels = map[string]string{
	storage.KindProfiles:       "profiles (idle)",
	storage.KindEvents:         "events",
	storage.KindVault:          "vaulted traits",
	storage.KindConsent:        "consent choices",
	storage.KindConsentHistory: "consent history",
	storage.KindAudit:          "audit trail",
	storage.KindRequests:       "completed privacy requests",
	storage.KindSegmentLog:     "segment history",
	storage.KindPendingChanges: "unpublished changes",
	storage.KindSyncHistory:    "sync history",
	storage.KindPluginKV:       "plugin data",
}

// purgeOf sorts an outlook into the kinds with something due and those
// without.
func purgeOf(r Retention) *purgeView {
	pv := &purgeView{Retention: r}
	for _, u := range r.Kinds {
		label := kindLabels[u.Kind]
		if label == "" {
			label = u.Kind
		}
		if u.Class != "" {
			label += " (" + u.Class + " retention)"
		}
		if u.Due == 0 {
			if !slices.Contains(pv.None, label) {
				pv.None = append(pv.None, label)
			}
			continue
		}
		how := "expire at their time"
		if u.Ends == storage.EndsByPurge {
			how = "deleted by the purge"
		}
		pv.Due = append(pv.Due, purgeRow{Label: label, How: how, Due: u.Due, Next: u.Next})
	}
	return pv
}

// requestForm is the new request form, with what was typed when it was
// refused.
type requestForm struct {
	Show     bool
	Error    string
	In       NewPrivacyRequest
	Purposes string
	Types    []struct{ Name, Label string }
	Kinds    []struct{ Name, Label string }
	Sites    []Site
}

func (c *Console) privacy(w http.ResponseWriter, r *http.Request, v *view) error {
	return c.privacyPage(w, r, v, http.StatusOK, requestForm{})
}

// privacyPage renders the privacy page with form (a refused request
// shows it open, with its error).
func (c *Console) privacyPage(w http.ResponseWriter, r *http.Request, v *view, code int, form requestForm) error {
	v.Title, v.Page = "Privacy", "privacy"
	pv := privacyView{Ready: c.cfg.Privacy != nil, Form: form}
	pv.Form.Types, pv.Form.Kinds, pv.Form.Sites = requestTypes, identifierKinds, v.Sites
	if pv.Form.In.Site == "" {
		pv.Form.In.Site = v.Site
	}
	if pv.Ready {
		reqs, err := c.cfg.Privacy.Requests(r.Context(), v.Site)
		if err != nil {
			return err
		}
		pv.Requests = reqs
		for _, rq := range reqs {
			if rq.CompletedAt == nil {
				pv.Open++
			}
			if rq.Overdue {
				pv.Overdue++
			}
		}
		if v.Site != "" {
			st, err := c.cfg.Privacy.LedgerStats(r.Context(), v.Site)
			if err != nil {
				c.log.Warn("consent ledger statistics not read", "err", err)
				pv.StatsErr = "The consent ledger could not be counted just now; reload the page to try again."
			} else {
				pv.Stats = &st
			}
		}
		ret, err := c.cfg.Privacy.Retention(r.Context())
		if err != nil {
			c.log.Warn("retention outlook not read", "err", err)
			pv.PurgeErr = "What will be purged next could not be counted just now; reload the page to try again."
		} else {
			pv.Purge = purgeOf(ret)
		}
	}
	audit, err := c.auditTail(r)
	if err != nil {
		return err
	}
	pv.Audit = audit
	v.Data = pv
	c.render(w, code, "privacy", v)
	return nil
}

// auditTail is the audit trail's newest entries of the last 30 days (it
// lists oldest first: read pages, keep the tail; at most 50 pages).
func (c *Console) auditTail(r *http.Request) ([]storage.AuditEntry, error) {
	q := storage.AuditQuery{From: c.cfg.Now().Add(-30 * 24 * time.Hour), Limit: 1000}
	var tail []storage.AuditEntry
	for range 50 {
		entries, next, err := c.srv.Audit(r.Context(), q)
		if err != nil {
			return nil, err
		}
		tail = append(tail, entries...)
		if len(tail) > auditShown {
			tail = tail[len(tail)-auditShown:]
		}
		if next == "" {
			break
		}
		q.After = next
	}
	slices.Reverse(tail)
	return tail, nil
}

// maxIdentifierLen bounds a typed identifier (the API's own limit is
// 1024 bytes).
const maxIdentifierLen = 1024

func (c *Console) createRequest(w http.ResponseWriter, r *http.Request, v *view) error {
	if c.cfg.Privacy == nil {
		return pageError(http.StatusNotFound, "Privacy requests are not available on this server.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	in := NewPrivacyRequest{
		Type: r.PostFormValue("type"), Site: r.PostFormValue("site"),
		IdentifierKind: r.PostFormValue("identifier_kind"), Identifier: strings.TrimSpace(r.PostFormValue("identifier")),
		Suppress: r.PostFormValue("suppress") != "", Lift: r.PostFormValue("lift") != "",
		Traits: strings.TrimSpace(r.PostFormValue("traits")),
	}
	raw := r.PostFormValue("purposes")
	for _, p := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == ' ' }) {
		in.Purposes = append(in.Purposes, p)
	}
	form := requestForm{Show: true, In: in, Purposes: raw}
	if len(in.Identifier) > maxIdentifierLen {
		form.Error = "identifier: longer than 1024 bytes"
		return c.privacyPage(w, r, v, http.StatusBadRequest, form)
	}
	ctx := access.WithIdentity(r.Context(), v.ID)
	rq, err := c.cfg.Privacy.Create(ctx, in)
	if errors.Is(err, ErrInvalidRequest) {
		form.Error = strings.TrimPrefix(err.Error(), ErrInvalidRequest.Error()+": ")
		return c.privacyPage(w, r, v, http.StatusBadRequest, form)
	}
	if err != nil {
		c.log.Warn("privacy request not recorded", "err", err)
		return pageError(http.StatusServiceUnavailable, "The request could not be recorded; try again in a minute.")
	}
	http.Redirect(w, r, "/console/privacy/requests/"+url.PathEscape(rq.ID)+"?site="+url.QueryEscape(v.Site)+"&created=1", http.StatusSeeOther)
	return nil
}

// requestView is one request's page.
type requestView struct {
	R    PrivacyRequest
	Done int // steps over
}

func (c *Console) request(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Privacy request", "privacy"
	if c.cfg.Privacy == nil {
		return pageError(http.StatusNotFound, "Privacy requests are not available on this server.")
	}
	id := r.PathValue("id")
	rq, err := c.cfg.Privacy.Request(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		return pageError(http.StatusNotFound, "There is no privacy request "+strconv.Quote(id)+".")
	}
	if err != nil {
		return err
	}
	if r.URL.Query().Get("created") != "" {
		v.Message = "The request was recorded; its steps run in the background (reload to follow them)."
	}
	rv := requestView{R: rq}
	for _, st := range rq.Steps {
		if st.Status != "pending" && st.Status != "running" {
			rv.Done++
		}
	}
	v.Title = "Privacy request " + rq.ID
	v.Data = rv
	c.render(w, http.StatusOK, "request", v)
	return nil
}

// sensitiveView is the sensitive-data page's data.
type sensitiveView struct {
	Ready bool
	Span  span
	R     SensitiveReport
	Chart chartData
}

func (c *Console) sensitive(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Sensitive data", "sensitive"
	sp, msg := c.spanOf(r, "30d")
	v.Message = msg
	sv := sensitiveView{Ready: c.cfg.Sensitive != nil, Span: sp}
	if sv.Ready && v.Site != "" {
		rep, err := c.cfg.Sensitive.Sensitive(r.Context(), v.Site, sp.From, sp.To)
		if err != nil {
			return err
		}
		sv.R = rep
		// Detections per day over the period.
		perDay := map[string]float64{}
		for _, d := range rep.Days {
			perDay[d.Day] += float64(d.Count)
		}
		sv.Chart = chartData{Labels: []string{"Detections"}, Data: make([][]float64, 2)}
		for d := sp.From.Truncate(24 * time.Hour); d.Before(sp.To); d = d.Add(24 * time.Hour) {
			sv.Chart.Data[0] = append(sv.Chart.Data[0], float64(d.Unix()))
			sv.Chart.Data[1] = append(sv.Chart.Data[1], perDay[d.Format(time.DateOnly)])
		}
	}
	v.Data = sv
	c.render(w, http.StatusOK, "sensitive", v)
	return nil
}

// responseView is the response model page's data: the heat map.
type responseView struct {
	Ready bool
	T     ResponseTable
	Rows  []heatRow
}

// heatRow is one contact type of the heat map.
type heatRow struct {
	Contact  ResponseContactType
	Cells    []heatCell
	Exposure float64
}

// heatCell is one cell: the posterior mean, its interval, and its shade
// (0–9, by the mean relative to the table's largest).
type heatCell struct {
	ResponseCell
	Shade int
	Known bool
}

func (c *Console) response(w http.ResponseWriter, r *http.Request, v *view) error {
	v.Title, v.Page = "Responses", "response"
	rv := responseView{Ready: c.cfg.Response != nil}
	if rv.Ready && v.Site != "" {
		t, err := c.cfg.Response.ResponseModel(r.Context(), v.Site)
		if err != nil {
			return err
		}
		rv.T, rv.Rows = t, heatRows(t)
	}
	v.Data = rv
	c.render(w, http.StatusOK, "response", v)
	return nil
}

// heatRows lays the model's cells out by contact type (rows) and message
// type (columns).
func heatRows(t ResponseTable) []heatRow {
	top := 0.0
	for _, cl := range t.Cells {
		top = max(top, cl.Mean)
	}
	rows := make([]heatRow, 0, len(t.ContactTypes))
	for _, ct := range t.ContactTypes {
		row := heatRow{Contact: ct}
		for _, mt := range t.MessageTypes {
			hc := heatCell{ResponseCell: ResponseCell{ContactType: ct.Name, MessageType: mt}}
			for _, cl := range t.Cells {
				if cl.ContactType == ct.Name && cl.MessageType == mt {
					hc.ResponseCell, hc.Known = cl, true
					if top > 0 {
						hc.Shade = min(9, int(cl.Mean/top*9.999))
					}
					row.Exposure += cl.Exposures
				}
			}
			row.Cells = append(row.Cells, hc)
		}
		rows = append(rows, row)
	}
	return rows
}
