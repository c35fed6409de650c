package privacy

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/email"
	"github.com/vigie-dev/vigie/proxy/ledger"
)

// The preference page: GET /p/<token> shows a recipient the purposes and
// their current choice, read from the consent ledger; POST /p/<token>
// saves a new choice through the ledger (source "preference_page", which
// commits its privacy event to the outbox), or with the body
// "List-Unsubscribe=One-Click" (RFC 8058) denies marketing at once. The
// token is a preference token (email.Signer.SignPreference) naming the
// site and the recipient's pseudonym; nobody logs in.

// PreferenceSource is the consent ledger source of a choice made on the
// preference page.
const PreferenceSource = "preference_page"

// Audit actions of the preference page.
const (
	ActionPreferenceUpdate      = "preference.update"
	ActionPreferenceUnsubscribe = "preference.unsubscribe"
)

// maxPreferenceBody bounds a POST to the preference page.
const maxPreferenceBody = 16 << 10

//go:embed templates/prefs.html
var prefsFS embed.FS

var prefsPage = template.Must(template.ParseFS(prefsFS, "templates/prefs.html"))

// PreferenceLedger is what the preference page needs of the consent
// ledger (*ledger.Ledger).
type PreferenceLedger interface {
	Get(ctx context.Context, site, subject string) ledger.Entry
	RecordFrom(ctx context.Context, site, subject string, d consent.Decision, source string) error
}

var _ PreferenceLedger = (*ledger.Ledger)(nil)

// PreferencesConfig configures the preference page.
type PreferencesConfig struct {
	// Signer verifies preference tokens and form nonces. Required.
	Signer *email.Signer
	// Ledger holds the choices. Required.
	Ledger PreferenceLedger
	// Purposes are the configured purposes, shown in this order;
	// necessary is shown as always on.
	Purposes []consent.PurposeInfo
	// Sites are the configured site ids; a token for another site opens
	// nothing.
	Sites []string
	// Auditor records each change (optional).
	Auditor Auditor
	// Logger receives errors, never identifiers. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Preferences serves the preference page.
type Preferences struct {
	cfg PreferencesConfig
	log *slog.Logger
}

// NewPreferences returns the preference page of cfg.
func NewPreferences(cfg PreferencesConfig) (*Preferences, error) {
	if cfg.Signer == nil || cfg.Ledger == nil {
		return nil, errors.New("privacy: the preference page needs a Signer and a Ledger")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Preferences{cfg: cfg, log: cfg.Logger}, nil
}

// Register adds GET and POST /p/{token} to mux.
func (p *Preferences) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /"+email.PreferencePath+"{token}", p.serveGet)
	mux.HandleFunc("POST /"+email.PreferencePath+"{token}", p.servePost)
}

// pageData is the template's data.
type pageData struct {
	Title                  string
	NotFound               bool
	Saved, Unsubscribed    bool
	Problem                string
	Recorded               bool
	Nonce                  string
	Purposes               []purposeRow
	site, subject, tokenID string
}

type purposeRow struct {
	Name, Description string
	Granted, Always   bool
}

// open verifies the request's token: its site and subject, or false.
func (p *Preferences) open(r *http.Request) (site, subject, tok string, ok bool) {
	tok = r.PathValue("token")
	site, subject, err := p.cfg.Signer.VerifyPreference(tok, p.cfg.Now())
	if err != nil || !slices.Contains(p.cfg.Sites, site) {
		return "", "", "", false
	}
	return site, subject, tok, true
}

// data is the page of subject on site, with a fresh nonce for tok.
func (p *Preferences) data(ctx context.Context, site, subject, tok string) pageData {
	e := p.cfg.Ledger.Get(ctx, site, subject)
	d := pageData{Title: "Your choices", Recorded: e.Found, Nonce: p.cfg.Signer.PreferenceNonce(tok, p.cfg.Now())}
	for _, pi := range p.cfg.Purposes {
		always := pi.Name == consent.Necessary
		d.Purposes = append(d.Purposes, purposeRow{Name: string(pi.Name), Description: pi.Description,
			Granted: !always && e.Found && e.Granted.Has(pi.Name), Always: always})
	}
	return d
}

func (p *Preferences) serveGet(w http.ResponseWriter, r *http.Request) {
	site, subject, tok, ok := p.open(r)
	if !ok {
		p.render(w, http.StatusNotFound, pageData{Title: "Link not valid", NotFound: true})
		return
	}
	p.render(w, http.StatusOK, p.data(r.Context(), site, subject, tok))
}

func (p *Preferences) servePost(w http.ResponseWriter, r *http.Request) {
	site, subject, tok, ok := p.open(r)
	if !ok {
		p.render(w, http.StatusNotFound, pageData{Title: "Link not valid", NotFound: true})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxPreferenceBody)
	if !parseForm(r) {
		d := p.data(r.Context(), site, subject, tok)
		d.Problem = "The form could not be read; nothing was changed."
		p.render(w, http.StatusBadRequest, d)
		return
	}
	ctx := r.Context()
	// RFC 8058 §3.1: a mail client unsubscribes with one POST carrying
	// List-Unsubscribe=One-Click, without cookies or a page. It can only
	// deny, so it needs no form nonce.
	if r.PostForm.Get("List-Unsubscribe") == "One-Click" {
		old := p.cfg.Ledger.Get(ctx, site, subject)
		var keep []consent.Purpose
		for _, pi := range p.cfg.Purposes {
			if pi.Name != consent.Marketing && old.Granted.Has(pi.Name) {
				keep = append(keep, pi.Name)
			}
		}
		if err := p.save(ctx, site, subject, old, keep, ActionPreferenceUnsubscribe); err != nil {
			p.log.Warn("one-click unsubscription not recorded; the mail client retries", "site", site, "err", err)
			http.Error(w, "not recorded, retry later", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("unsubscribed from marketing\n"))
		return
	}
	// A form post must come from the page itself: the nonce it was given
	// (bound to this token, an hour at most) and no cross-site request.
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" || !p.cfg.Signer.CheckPreferenceNonce(tok, r.PostForm.Get("nonce"), p.cfg.Now()) {
		d := p.data(ctx, site, subject, tok)
		d.Problem = "This form has expired or did not come from this page; nothing was changed. Please choose again."
		p.render(w, http.StatusForbidden, d)
		return
	}
	old := p.cfg.Ledger.Get(ctx, site, subject)
	var granted []consent.Purpose
	if r.PostForm.Get("action") != "refuse_all" {
		for _, pi := range p.cfg.Purposes {
			if slices.Contains(r.PostForm["purpose"], string(pi.Name)) {
				granted = append(granted, pi.Name)
			}
		}
	}
	if err := p.save(ctx, site, subject, old, granted, ActionPreferenceUpdate); err != nil {
		p.log.Warn("preference page choice not recorded", "site", site, "err", err)
		d := p.data(ctx, site, subject, tok)
		d.Problem = "Your choices could not be saved right now; nothing was changed. Please try again in a moment."
		p.render(w, http.StatusServiceUnavailable, d)
		return
	}
	d := p.data(ctx, site, subject, tok)
	d.Saved = true
	p.render(w, http.StatusOK, d)
}

// save records the purposes granted (necessary always included) for
// subject through the ledger, and audits which purposes changed.
func (p *Preferences) save(ctx context.Context, site, subject string, old ledger.Entry, purposes []consent.Purpose, action string) error {
	granted := consent.NewSet(append(purposes, consent.Necessary)...)
	dec := consent.Decision{Outcome: consent.Anonymous, Granted: granted, Reason: PreferenceSource}
	for _, pi := range p.cfg.Purposes {
		if pi.Name != consent.Necessary && granted.Has(pi.Name) {
			dec.Outcome = consent.Pseudonymous
		}
	}
	if err := p.cfg.Ledger.RecordFrom(ctx, site, subject, dec, PreferenceSource); err != nil {
		return err
	}
	var changed []string
	for _, pi := range p.cfg.Purposes {
		if pi.Name != consent.Necessary && (!old.Found || old.Granted.Has(pi.Name) != granted.Has(pi.Name)) {
			changed = append(changed, string(pi.Name))
		}
	}
	if p.cfg.Auditor != nil && len(changed) > 0 {
		e := AuditEntry{At: p.cfg.Now(), Actor: PreferenceSource, Action: action, Site: site, Fields: changed, Count: 1}
		if err := p.cfg.Auditor.Audit(ctx, e); err != nil {
			p.log.Warn("preference page change not audited", "site", site, "err", err)
		}
	}
	return nil
}

// parseForm reads an urlencoded or multipart body (RFC 8058 allows both).
func parseForm(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		if err := r.ParseMultipartForm(maxPreferenceBody); err != nil {
			return false
		}
		for k, v := range r.MultipartForm.Value {
			r.PostForm[k] = v
		}
		return true
	}
	return r.ParseForm() == nil
}

// render writes the page: no cookie, no cache, no referrer (the URL is a
// credential), nothing loaded from elsewhere.
func (p *Preferences) render(w http.ResponseWriter, status int, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Robots-Tag", "noindex, nofollow")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if err := prefsPage.Execute(w, d); err != nil {
		p.log.Error("preference page not rendered", "err", err)
	}
}
