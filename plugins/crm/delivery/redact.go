package delivery

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxExcerpt is the most bytes of a response body kept in an HTTPError.
const MaxExcerpt = 256

// redactPatterns match what must never reach a log or a dead letter even
// when it is not one of the configured secrets: e-mail addresses (plain
// and URL-encoded), bearer tokens, HubSpot private-app tokens, Brevo API
// keys and Standard Webhooks secrets.
var redactPatterns = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?i)bearer\s+[^\s"',;]+`), "Bearer [redacted]"},
	{regexp.MustCompile(`\bpat-[a-z0-9]+-[A-Za-z0-9-]+`), "[redacted]"},
	{regexp.MustCompile(`\bxkeysib-[A-Za-z0-9-]+`), "[redacted]"},
	{regexp.MustCompile(`\bwhsec_[A-Za-z0-9+/=]+`), "[redacted]"},
	{regexp.MustCompile(`[A-Za-z0-9._%+\-]+(@|%40)[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+`), "[email]"},
}

// Redactor removes secrets and e-mail addresses from text that may be
// logged or kept in a dead letter. Its zero value redacts the patterns
// only.
type Redactor struct {
	secrets []string
}

// NewRedactor redacts the given secrets' values as well as the patterns.
func NewRedactor(secrets ...Secret) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if v := s.Reveal(); len(v) >= 4 {
			r.secrets = append(r.secrets, v)
		}
	}
	return r
}

// Redact returns s with secrets replaced by "[redacted]", e-mail
// addresses by "[email]", and control characters by spaces.
func (r *Redactor) Redact(s string) string {
	if r != nil {
		for _, v := range r.secrets {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	for _, p := range redactPatterns {
		s = p.re.ReplaceAllString(s, p.with)
	}
	return strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return ' '
		}
		return c
	}, s)
}

// Excerpt is Redact(body) cut to at most MaxExcerpt bytes (on a rune
// boundary, "…" marking the cut) with runs of spaces collapsed.
func (r *Redactor) Excerpt(body []byte) string {
	// Redact a bounded prefix, far longer than the excerpt so that a
	// secret cut at its end cannot shift into the excerpt, small enough
	// to be cheap on a large error page.
	if len(body) > 64*MaxExcerpt {
		body = body[:64*MaxExcerpt]
	}
	s := strings.Join(strings.Fields(r.Redact(strings.ToValidUTF8(string(body), "?"))), " ")
	if len(s) <= MaxExcerpt {
		return s
	}
	cut := MaxExcerpt - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
