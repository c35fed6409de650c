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
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/email"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/storage"
)

// EmailSigner returns the signer of e-mail tracking tokens for a keyring:
// it signs with the active pseudonymization key's derived e-mail key and
// verifies with any key of the keyring (so rotation keeps old e-mails
// working until the key is retired).
func EmailSigner(kr *keyring.Keyring) (*email.Signer, error) {
	active := kr.Active()
	if len(active) == 0 {
		return nil, errors.New("proxy: keyring has no active key")
	}
	keys := make([]email.Key, 0, len(kr.Keys))
	for _, k := range kr.Keys {
		keys = append(keys, email.Key{ID: k.ID, Secret: k.Secret})
	}
	return email.NewSigner(keys, active[0].ID)
}

// startEmail builds the e-mail open/click handler.
func (s *Server) startEmail() error {
	signer, err := EmailSigner(s.keyring)
	if err != nil {
		return err
	}
	s.emailSigner = signer
	s.email, err = email.New(email.Config{
		Signer:   signer,
		Recorder: emailRecorder{s},
		Consent:  emailRecorder{s},
		Pseudonymize: func(site, raw string) string {
			if st := s.byID[site]; st != nil && raw != "" {
				return st.pipe.UserPseudonym(raw)
			}
			return ""
		},
		ClientIP: func(r *http.Request) netip.Addr {
			a, _ := netip.ParseAddr(s.clientIP(r))
			return a
		},
		Logger: s.log.With("component", "email"),
	})
	return err
}

// emailRecorder records e-mail hits as events and answers consent from the
// ledger.
type emailRecorder struct{ s *Server }

var (
	_ email.Recorder      = emailRecorder{}
	_ email.ConsentLookup = emailRecorder{}
)

// EmailConsent implements email.ConsentLookup: a recipient's e-mail is
// tracked only when the ledger records marketing consent.
func (e emailRecorder) EmailConsent(ctx context.Context, site, recipient string) (bool, error) {
	if e.s.byID[site] == nil || recipient == "" {
		return false, nil
	}
	return e.s.ledger.get(ctx, site, recipient).granted.Has(consent.Marketing), nil
}

// RecordEmail implements email.Recorder.
func (e emailRecorder) RecordEmail(ctx context.Context, h email.Hit) error {
	st := e.s.byID[h.Site]
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
		hit.Granted = e.s.ledger.get(ctx, h.Site, h.Recipient).granted
	}
	res := e.s.pipe.ProcessEmail(st.pipe, hit)
	e.s.metrics.received.WithLabelValues(st.cfg.ID).Inc()
	e.s.count(st, res)
	if res.Outcome != pipeline.Stored {
		return nil
	}
	_, err := e.s.store.Append(ctx, []storage.Record{res.Record})
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
	// BaseURL is Vigie's public URL; default public_url, else this
	// request's own scheme and host.
	BaseURL string `json:"base_url"`
	// SentAt is when the campaign goes out (RFC 3339); optional.
	SentAt string `json:"sent_at"`
	// ExpiresIn stops counting hits after this long (e.g. 90d); optional.
	ExpiresIn string `json:"expires_in"`
	// Honeypot adds a hidden link to catch scanners. Default true.
	Honeypot *bool `json:"honeypot"`
}

// maxRecipients bounds one rewrite request.
const maxRecipients = 1000

// handleEmailRewrite prepares a campaign: the open pixel added and every
// link wrapped, per recipient or with a merge tag.
func (s *Server) handleEmailRewrite(w http.ResponseWriter, r *http.Request) {
	var req rewriteRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, email.MaxHTMLSize+64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		code, kind, field, msg := jsonBodyProblem(err)
		writeJSON(w, code, apiError{Code: kind, Error: msg, Field: field})
		return
	}
	st := s.byID[req.Site]
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
		d, err := config.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			bad("expires_in", "must be a positive duration such as 90d")
			return
		}
		base := opt.SentAt
		if base.IsZero() {
			base = time.Now()
		}
		opt.Expires = base.Add(d)
	}
	if req.MergeTag != "" {
		res, err := email.Rewrite([]byte(req.HTML), opt)
		if err != nil {
			bad(rewriteProblem(err))
			return
		}
		writeHTMLJSON(w, map[string]any{"html": string(res.HTML), "links": res.Links})
		return
	}
	type message struct {
		Recipient string `json:"recipient"`
		HTML      string `json:"html"`
		Links     int    `json:"links"`
	}
	out := make([]message, 0, len(req.Recipients))
	for i, rcpt := range req.Recipients {
		if strings.TrimSpace(rcpt) == "" {
			bad(fmt.Sprintf("recipients[%d]", i), "empty user id")
			return
		}
		opt.Recipient = st.pipe.UserPseudonym(rcpt)
		res, err := email.Rewrite([]byte(req.HTML), opt)
		if err != nil {
			bad(rewriteProblem(err))
			return
		}
		out = append(out, message{Recipient: rcpt, HTML: string(res.HTML), Links: res.Links})
	}
	writeHTMLJSON(w, map[string]any{"messages": out})
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
