package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Hit is one e-mail open or click, handed to the Recorder. It still holds
// the full client address and user agent: the Recorder (the proxy's
// pipeline) truncates and reduces them before anything is kept.
type Hit struct {
	// Kind is open or click.
	Kind Kind
	// Site and Campaign come from the signed token.
	Site, Campaign string
	// Recipient is the recipient's pseudonym when consent allows it, else
	// empty (an anonymous, campaign-level hit). It comes only from a value
	// Vigie signed: the token's own recipient, or a valid recipient value
	// in the r parameter.
	Recipient string
	// Link is the clicked link (clicks only), as signed; scrub it like a
	// page URL before keeping it.
	Link string
	// Class and Reason are the classification (see Classify).
	Class, Reason string
	// Time is when the hit arrived.
	Time time.Time
	// ClientIP is the full client address, for truncation by the Recorder.
	ClientIP netip.Addr
	// UserAgent is the raw User-Agent header, for reduction by the Recorder.
	UserAgent string
	// Granted reports whether the recipient's consent allows e-mail
	// tracking (marketing purpose).
	Granted bool
}

// Recorder keeps e-mail hits.
type Recorder interface {
	// RecordEmail records h; its error is logged, never shown to the
	// client.
	RecordEmail(ctx context.Context, h Hit) error
}

// ConsentLookup answers whether a recipient allows e-mail tracking.
type ConsentLookup interface {
	// EmailConsent reports whether recipient (a pseudonym) of site granted
	// the marketing purpose.
	EmailConsent(ctx context.Context, site, recipient string) (granted bool, err error)
}

// Config configures a Handler.
type Config struct {
	// Signer verifies tokens. Required.
	Signer *Signer
	// Classify tunes classification (zero value: defaults).
	Classify ClassifyConfig
	// History remembers recent clicks (default: a MemoryHistory).
	History ClickHistory
	// Recorder keeps hits (default: hits are dropped).
	Recorder Recorder
	// Consent answers for recipients (default: nobody consented, so every
	// hit is anonymous).
	Consent ConsentLookup
	// ClientIP returns the client address (default: the RemoteAddr host).
	ClientIP func(*http.Request) netip.Addr
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives operational logs, never personal data (default
	// slog.Default()).
	Logger *slog.Logger
}

// Handler serves the open pixel and the click redirect.
type Handler struct {
	cfg        Config
	classifier *Classifier
}

// New returns a Handler for cfg with defaults filled in.
func New(cfg Config) (*Handler, error) {
	if cfg.Signer == nil {
		return nil, fmt.Errorf("%w: handler needs a Signer", ErrConfig)
	}
	if cfg.History == nil {
		cfg.History = NewMemoryHistory(MemoryHistoryConfig{})
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = remoteIP
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handler{cfg: cfg, classifier: NewClassifier(cfg.Classify)}, nil
}

func remoteIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// transparentGIF is a 1×1 transparent GIF89a.
var transparentGIF = []byte{
	0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
}

const invalidPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Invalid link</title></head>
<body><h1>This link is invalid</h1>
<p>The link you followed is damaged or was not made by us. Please use the link from the original e-mail, or copy it in full.</p>
</body></html>
`

const honeypotPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>OK</title></head>
<body><p>Nothing to see here.</p></body></html>
`

// ServeOpen serves GET /e/o/{token}: it always answers a 1×1 transparent
// GIF that is never cached, whatever the token, and records the open when
// the token is valid and unexpired.
func (h *Handler) ServeOpen(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	tok, err := h.cfg.Signer.Verify(r.PathValue("token"), now)
	switch {
	case err == nil:
		h.record(r, KindOpen, tok, now)
	case errors.Is(err, ErrExpired):
		h.cfg.Logger.Debug("email: expired open token", "site", tok.Site)
	default:
		h.cfg.Logger.Debug("email: invalid open token")
	}
	hd := w.Header()
	hd.Set("Content-Type", "image/gif")
	hd.Set("Content-Length", "43")
	hd.Set("Cache-Control", "no-cache, no-store, must-revalidate, private, max-age=0")
	hd.Set("Pragma", "no-cache")
	hd.Set("Expires", "0")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(transparentGIF)
	}
}

// ServeClick serves GET /e/c/{token}. A token that fails verification
// never redirects: it answers 400 with a plain page that echoes nothing. A
// valid token redirects (302) to its signed link and records the click; an
// expired one still redirects — an old e-mail's links must keep working —
// but records nothing. The honeypot token answers a plain page and records
// a scanner click.
func (h *Handler) ServeClick(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	tok, err := h.cfg.Signer.Verify(r.PathValue("token"), now)
	expired := errors.Is(err, ErrExpired)
	if (err != nil && !expired) || (tok.Link == "" && !tok.Honeypot) {
		h.cfg.Logger.Debug("email: invalid click token")
		writePage(w, http.StatusBadRequest, invalidPage)
		return
	}
	if !expired {
		h.record(r, KindClick, tok, now)
	}
	if tok.Honeypot {
		writePage(w, http.StatusOK, honeypotPage)
		return
	}
	hd := w.Header()
	hd.Set("Location", tok.Link) // SafeLink-checked at Sign and Verify
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusFound)
}

func writePage(w http.ResponseWriter, status int, page string) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "default-src 'none'")
	hd.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(page))
}

// mergeRecipient returns the recipient pseudonym a merge-tag URL's r
// parameter carries, or "" when r is absent or is not a recipient value
// Vigie signed for this site and that is still valid (forged, a clear user
// id, tampered, expired, retired key, other site): such a hit counts at
// campaign level only.
func (h *Handler) mergeRecipient(r *http.Request, site string, now time.Time) string {
	raw := r.URL.Query().Get("r")
	if raw == "" {
		return ""
	}
	p, err := h.cfg.Signer.VerifyRecipient(site, raw, now)
	if err != nil {
		h.cfg.Logger.Debug("email: r is not a valid recipient value; counted at campaign level", "site", site, "expired", errors.Is(err, ErrExpired))
		return ""
	}
	return p
}

// record classifies and records one hit; failures are logged without
// personal data and never change the answer.
func (h *Handler) record(r *http.Request, kind Kind, tok Token, now time.Time) {
	ctx := r.Context()
	recipient := tok.Recipient
	if recipient == "" {
		recipient = h.mergeRecipient(r, tok.Site, now)
	}
	ip := h.cfg.ClientIP(r)
	ua := r.UserAgent()
	purpose := r.Header.Get("Sec-Purpose")
	if purpose == "" {
		purpose = r.Header.Get("Purpose")
	}
	class, reason := h.classifier.Classify(Request{
		Kind: kind, Method: r.Method, IP: ip, UserAgent: ua, Accept: r.Header.Get("Accept"),
		Purpose: purpose, Token: tok, Recipient: recipient, Now: now, History: h.cfg.History,
	})
	if h.cfg.Recorder == nil {
		return
	}
	granted := false
	if recipient != "" && h.cfg.Consent != nil {
		g, err := h.cfg.Consent.EmailConsent(ctx, tok.Site, recipient)
		if err != nil {
			h.cfg.Logger.Warn("email: consent lookup failed; recording anonymously", "site", tok.Site, "error", err)
		}
		granted = err == nil && g
	}
	if !granted {
		recipient = ""
	}
	hit := Hit{
		Kind: kind, Site: tok.Site, Campaign: tok.Campaign, Recipient: recipient, Link: tok.Link,
		Class: class, Reason: reason, Time: now, ClientIP: ip, UserAgent: ua, Granted: granted,
	}
	if err := h.cfg.Recorder.RecordEmail(ctx, hit); err != nil {
		h.cfg.Logger.Warn("email: recording hit failed", "site", tok.Site, "kind", string(kind), "error", err)
	}
}
