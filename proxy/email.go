package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/email"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/storage"
)

// EmailSigner returns the signer of e-mail tracking tokens and recipient
// values for a keyring: it signs with the active pseudonymization key's
// derived e-mail keys and verifies with any key not retired (so rotation
// keeps old e-mails working; retiring a key — say, because it leaked —
// stops its links redirecting and its recipient values identifying
// anyone).
func EmailSigner(kr *keyring.Keyring) (*email.Signer, error) {
	active := kr.Active()
	if len(active) == 0 {
		return nil, errors.New("proxy: keyring has no active key")
	}
	keys := make([]email.Key, 0, len(active))
	for _, k := range active {
		keys = append(keys, email.Key{ID: k.ID, Secret: k.Secret})
	}
	return email.NewSigner(keys, active[0].ID)
}

// RecipientPseudonymizer returns the function giving a user id's recipient
// pseudonym on a site under kr's active key: the pseudonym identify's
// userId gets on a server running with kr. Tools that work from the data
// directory (`vigie email rewrite`, `vigie email tokens`) use it.
func RecipientPseudonymizer(kr *keyring.Keyring) (func(site, userID string) string, error) {
	var keys []pseudonymize.Key
	for _, k := range kr.Active() {
		keys = append(keys, pseudonymize.Key{ID: k.ID, Secret: k.Secret})
	}
	ps, err := pseudonymize.New(pseudonymize.Config{Keys: keys})
	if err != nil {
		return nil, err
	}
	return func(site, userID string) string { return ps.ID(site, pseudonymize.UserID, userID) }, nil
}

// startEmail builds the e-mail open/click handler.
func (s *Server) startEmail() error {
	signer, err := EmailSigner(s.keyring)
	if err != nil {
		return err
	}
	s.emailSigner = signer
	var history email.ClickHistory
	if s.cfg.Cluster.Enabled() {
		// Scanner detection sees every node's clicks.
		history = &cluster.ClickHistory{JS: s.bus, Local: email.NewMemoryHistory(email.MemoryHistoryConfig{}),
			Logger: s.log.With("component", "cluster")}
	}
	s.email, err = email.New(email.Config{
		Signer:   signer,
		Recorder: emailRecorder{s},
		Consent:  emailRecorder{s},
		History:  history,
		ClientIP: func(r *http.Request) netip.Addr {
			a, _ := netip.ParseAddr(s.clientIP(r))
			return a
		},
		Logger: s.log.With("component", "email"),
	})
	return err
}

// emailRecorder records e-mail hits (events of recipients whose consent
// grants marketing, campaign-level counters otherwise) and answers consent
// from the ledger.
type emailRecorder struct{ s *Server }

var (
	_ email.Recorder      = emailRecorder{}
	_ email.ConsentLookup = emailRecorder{}
)

// EmailConsent implements email.ConsentLookup: a recipient's e-mail is
// tracked only when the ledger records marketing consent (not objected
// to, processing not restricted).
func (e emailRecorder) EmailConsent(ctx context.Context, site, recipient string) (bool, error) {
	st := e.s.siteByID(site)
	if st == nil || recipient == "" {
		return false, nil
	}
	return e.s.recipientGrants(ctx, st, recipient).Has(consent.Marketing), nil
}

// RecordEmail implements email.Recorder.
func (e emailRecorder) RecordEmail(ctx context.Context, h email.Hit) error {
	st := e.s.siteByID(h.Site)
	if st == nil {
		return fmt.Errorf("proxy: e-mail hit for unknown site")
	}
	hit := pipeline.EmailHit{
		Click: h.Kind == email.KindClick, Campaign: h.Campaign, Link: h.Link,
		Class: h.Class, Reason: h.Reason, Time: h.Time, UserAgent: h.UserAgent,
	}
	if h.ClientIP.IsValid() {
		hit.ClientIP = h.ClientIP.String()
	}
	if h.Granted && h.Recipient != "" {
		hit.Recipient = h.Recipient
		hit.Granted = e.s.recipientGrants(ctx, st, h.Recipient)
	}
	res := e.s.pipe.ProcessEmail(st.pipe, hit)
	e.s.metrics.received.WithLabelValues(st.cfg.ID).Inc()
	e.s.count(nil, st, res)
	var err error
	switch res.Outcome {
	case pipeline.Counted:
		err = e.s.store.CountEmail(ctx, res.Count)
	case pipeline.Stored:
		_, err = e.s.store.Append(ctx, []storage.Record{res.Record})
	default:
		return nil
	}
	if errors.Is(err, storage.ErrDiskFull) {
		// The recipient still gets the pixel or the redirect; the store
		// logged the state once, so this hit is only counted.
		e.s.metrics.rejected.WithLabelValues("disk_full").Inc()
		return nil
	}
	return err
}

// rewriteRequest is the body of POST /admin/v1/email/rewrite.
type rewriteRequest struct {
	Site     string `json:"site"`
	Campaign string `json:"campaign"`
	HTML     string `json:"html"`
	// Recipients are user ids (as identify's userId): one rewritten
	// message each. Or MergeTag for one message with the ESP's placeholder.
	Recipients []string `json:"recipients"`
	MergeTag   string   `json:"merge_tag"`
	// PreferenceMergeTag, in merge-tag mode, is the ESP's placeholder for
	// the vigie_preference contact attribute: the List-Unsubscribe headers
	// of the answer then carry it. Optional.
	PreferenceMergeTag string `json:"preference_merge_tag"`
	// BaseURL is Vigie's public URL; default public_url, else this
	// request's own scheme and host.
	BaseURL string `json:"base_url"`
	// SentAt is when the campaign goes out (RFC 3339); optional.
	SentAt string `json:"sent_at"`
	// ExpiresIn stops counting hits after this long (e.g. 90d); optional.
	ExpiresIn string `json:"expires_in"`
	// Honeypot adds a hidden link to catch scanners. Default true.
	Honeypot *bool `json:"honeypot"`
	// MessageType, with recipients, records an Email Sent exposure per
	// consenting recipient for the response model (email_sent.go).
	MessageType string `json:"message_type"`
	// Holdout is the share of recipients kept out of the campaign and
	// recorded as holdout exposures (0 to 0.5); needs MessageType.
	Holdout *float64 `json:"holdout"`
}

// maxRecipients bounds one rewrite request.
const maxRecipients = 1000

// handleEmailRewrite prepares a campaign: the open pixel added and every
// link wrapped, per recipient or with a merge tag.
func (s *Server) handleEmailRewrite(w http.ResponseWriter, r *http.Request) {
	var req rewriteRequest
	if !decodeAdminJSON(w, r, email.MaxHTMLSize+64<<10, &req) {
		return
	}
	st := s.siteByID(req.Site)
	if st == nil {
		writeError(w, http.StatusBadRequest, "unknown_site", "site: unknown or missing site id", nil)
		return
	}
	bad := func(field, msg string) {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_request", Error: field + ": " + msg, Field: field})
	}
	switch {
	case req.Campaign == "":
		bad("campaign", "is required")
		return
	case req.HTML == "":
		bad("html", "is required")
		return
	case len(req.Recipients) == 0 && req.MergeTag == "":
		bad("recipients", "give user ids in recipients, or a merge_tag")
		return
	case len(req.Recipients) > 0 && req.MergeTag != "":
		bad("merge_tag", "give recipients or merge_tag, not both")
		return
	case len(req.Recipients) > maxRecipients:
		bad("recipients", fmt.Sprintf("at most %d per request", maxRecipients))
		return
	}
	opt := email.RewriteOptions{
		Base: req.BaseURL, Signer: s.emailSigner, Site: st.cfg.ID, Campaign: req.Campaign,
		MergeTag: req.MergeTag, AddHoneypot: req.Honeypot == nil || *req.Honeypot,
	}
	if opt.Base == "" {
		opt.Base = s.publicURL(r)
	}
	if req.SentAt != "" {
		t, err := time.Parse(time.RFC3339, req.SentAt)
		if err != nil {
			bad("sent_at", "must be an RFC 3339 time")
			return
		}
		opt.SentAt = t
	}
	if req.ExpiresIn != "" {
		var ok bool
		if opt.Expires, ok = expiresIn(req.ExpiresIn, opt.SentAt); !ok {
			bad("expires_in", "must be a positive duration such as 90d")
			return
		}
	}
	if req.PreferenceMergeTag != "" && req.MergeTag == "" {
		bad("preference_merge_tag", "goes with merge_tag; per-recipient messages get their own preference link")
		return
	}
	plan, ok := s.newSendPlan(w, st, &req, opt.SentAt)
	if !ok {
		return
	}
	if req.MergeTag != "" {
		res, err := email.Rewrite([]byte(req.HTML), opt)
		if err != nil {
			bad(rewriteProblem(err))
			return
		}
		out := map[string]any{"html": string(res.HTML), "links": res.Links}
		if req.PreferenceMergeTag != "" {
			h, err := email.UnsubscribeHeaders(opt.Base, req.PreferenceMergeTag)
			if err != nil {
				bad("preference_merge_tag", "has characters that cannot go in a header URL")
				return
			}
			out["headers"] = h
		}
		writeHTMLJSON(w, out)
		return
	}
	type message struct {
		Recipient string `json:"recipient"`
		HTML      string `json:"html"`
		Links     int    `json:"links"`
		// Headers are the List-Unsubscribe headers to send the message
		// with, pointing at the recipient's preference page.
		Headers email.Unsubscribe `json:"headers"`
	}
	out := make([]message, 0, len(req.Recipients))
	for i, rcpt := range req.Recipients {
		if p := email.UserIDProblem(rcpt); p != "" {
			bad(fmt.Sprintf("recipients[%d]", i), p)
			return
		}
		opt.Recipient = st.pipe.UserPseudonym(rcpt)
		if plan.holdsOut(rcpt, opt.Recipient) {
			continue
		}
		res, err := email.Rewrite([]byte(req.HTML), opt)
		if err != nil {
			bad(rewriteProblem(err))
			return
		}
		h, err := s.unsubscribeHeaders(opt.Base, st.cfg.ID, opt.Recipient)
		if err != nil {
			s.log.Error("email: preference link not made", "site", st.cfg.ID, "error", err)
			writeError(w, http.StatusInternalServerError, "internal", "the preference link could not be made", nil)
			return
		}
		out = append(out, message{Recipient: rcpt, HTML: string(res.HTML), Links: res.Links, Headers: h})
		plan.sends(rcpt, opt.Recipient)
	}
	answer := map[string]any{"messages": out}
	if !s.recordSends(r.Context(), w, st, plan, answer) {
		return
	}
	writeHTMLJSON(w, answer)
}

// expiresIn is from (now if zero) plus the duration s ("90d"); false if s
// is not a positive duration.
func expiresIn(s string, from time.Time) (time.Time, bool) {
	d, err := config.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, false
	}
	if from.IsZero() {
		from = time.Now()
	}
	return from.Add(d), true
}

// tokensRequest is the body of POST /admin/v1/email/tokens.
type tokensRequest struct {
	Site string `json:"site"`
	// UserIDs are the recipients' user ids (as identify's userId), at most
	// maxTokenIDs.
	UserIDs []string `json:"user_ids"`
	// ExpiresIn stops the values identifying anyone after this long (e.g.
	// 365d); optional, default never.
	ExpiresIn string `json:"expires_in"`
}

// tokensResponse answers POST /admin/v1/email/tokens.
type tokensResponse struct {
	Tokens []recipientToken `json:"tokens"`
	// ExpiresAt is when the values stop identifying anyone (RFC 3339);
	// absent for no expiry.
	ExpiresAt string `json:"expires_at,omitempty"`
}

// recipientToken is one row of tokensResponse, named like the columns of
// `vigie email tokens`.
type recipientToken struct {
	UserID     string `json:"user_id"`
	VigieToken string `json:"vigie_token"`
	// VigiePreference is the recipient's preference token, for the
	// List-Unsubscribe header of merge-tag campaigns.
	VigiePreference string `json:"vigie_preference"`
}

// maxTokenIDs bounds one tokens request; tokensBodyLimit its body.
const (
	maxTokenIDs     = 10000
	tokensBodyLimit = 4 << 20
)

// handleEmailTokens makes each recipient's signed value, for the ESP to
// keep as a contact attribute and substitute in merge-tag campaigns.
func (s *Server) handleEmailTokens(w http.ResponseWriter, r *http.Request) {
	var req tokensRequest
	if !decodeAdminJSON(w, r, tokensBodyLimit, &req) {
		return
	}
	st := s.siteByID(req.Site)
	if st == nil {
		writeError(w, http.StatusBadRequest, "unknown_site", "site: unknown or missing site id", nil)
		return
	}
	bad := func(field, msg string) {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_request", Error: field + ": " + msg, Field: field})
	}
	switch {
	case len(req.UserIDs) == 0:
		bad("user_ids", "give at least one user id")
		return
	case len(req.UserIDs) > maxTokenIDs:
		bad("user_ids", fmt.Sprintf("at most %d per request", maxTokenIDs))
		return
	}
	for i, id := range req.UserIDs {
		if p := email.UserIDProblem(id); p != "" {
			bad(fmt.Sprintf("user_ids[%d]", i), p)
			return
		}
	}
	var res tokensResponse
	var expires time.Time
	if req.ExpiresIn != "" {
		var ok bool
		if expires, ok = expiresIn(req.ExpiresIn, time.Time{}); !ok {
			bad("expires_in", "must be a positive duration such as 365d")
			return
		}
		expires = expires.Truncate(time.Second)
		res.ExpiresAt = expires.UTC().Format(time.RFC3339)
	}
	vals, err := s.emailSigner.SignRecipients(st.cfg.ID, req.UserIDs, st.pipe.UserPseudonym, expires)
	if err != nil {
		s.log.Error("email: signing recipient values failed", "site", st.cfg.ID, "error", err)
		writeError(w, http.StatusInternalServerError, "internal", "recipient values could not be made", nil)
		return
	}
	res.Tokens = make([]recipientToken, len(vals))
	for i, v := range vals {
		p, err := s.emailSigner.SignPreference(st.cfg.ID, st.pipe.UserPseudonym(req.UserIDs[i]), expires)
		if err != nil {
			s.log.Error("email: signing preference tokens failed", "site", st.cfg.ID, "error", err)
			writeError(w, http.StatusInternalServerError, "internal", "recipient values could not be made", nil)
			return
		}
		res.Tokens[i] = recipientToken{UserID: req.UserIDs[i], VigieToken: v, VigiePreference: p}
	}
	writeJSON(w, http.StatusOK, res)
}

// unsubscribeHeaders are the List-Unsubscribe headers of a message to the
// recipient pseudonym on site: a preference token that does not expire
// (retiring the key stops it), under base.
func (s *Server) unsubscribeHeaders(base, site, recipient string) (email.Unsubscribe, error) {
	tok, err := s.emailSigner.SignPreference(site, recipient, time.Time{})
	if err != nil {
		return email.Unsubscribe{}, err
	}
	return email.UnsubscribeHeaders(base, tok)
}

// rewriteProblem names, in the request's terms, why email.Rewrite refused
// its options (its errors name Go fields).
func rewriteProblem(err error) (field, msg string) {
	switch s := err.Error(); {
	case strings.Contains(s, "Base"):
		return "base_url", "must be an absolute http(s) URL without query or fragment"
	case strings.Contains(s, "MergeTag"):
		return "merge_tag", "has characters that cannot go in a URL attribute"
	default:
		return "html", "could not be rewritten"
	}
}

// writeHTMLJSON answers 200 with v as JSON, HTML left readable (not
// escaped as \u003c…).
func writeHTMLJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// publicURL is Vigie's public base URL: public_url, else the request's own
// scheme and host.
func (s *Server) publicURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if s.isHTTPS(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/"
}
