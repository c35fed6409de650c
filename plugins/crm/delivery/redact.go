package delivery

import (
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

// MaxExcerpt is the most bytes of a response body kept in an HTTPError.
const MaxExcerpt = 256

// redactPatterns match what must never reach a log or a dead letter even
// when it is not one of the configured secrets (besides emailPattern):
// bearer tokens, HubSpot private-app tokens, Brevo API
// keys and Standard Webhooks secrets.
var redactPatterns = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?i)bearer\s+[^\s"',;]+`), "Bearer [redacted]"},
	{regexp.MustCompile(`\bpat-[a-z0-9]+-[A-Za-z0-9-]+`), "[redacted]"},
	{regexp.MustCompile(`\bxkeysib-[A-Za-z0-9-]+`), "[redacted]"},
	{regexp.MustCompile(`\bwhsec_[A-Za-z0-9+/=]+`), "[redacted]"},
}

// emailPattern matches an e-mail address, plain, URL-encoded once or
// twice, JSON-escaped however deep or as an HTML entity. It is applied
// before pseudonymize.ScrubText, whose decoding of one JSON escape level
// would hide a doubly escaped address from both.
var emailPattern = regexp.MustCompile(`(?i)[A-Za-z0-9._%+\-]+(@|%40|%2540|\\+u0040|&#64;|&#x40;)[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+`)

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
// addresses by "[email]", every other personal datum the pipeline's
// scrubber finds (pseudonymize.ScrubText: phones, cards, IBANs, national
// ids, IPs, tokens, e-mails in other encodings) by its marker, and control
// characters by spaces.
func (r *Redactor) Redact(s string) string {
	if r != nil {
		for _, v := range r.secrets {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	s = pseudonymize.ScrubText(emailPattern.ReplaceAllString(s, "[email]"), nil)
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

// minRedactedValue is the shortest property value redactChange removes
// (shorter ones, "FR", "no", match too many words).
const minRedactedValue = 3

// redactChange returns reason without c's own values: its e-mail (any
// letter case, URL- or JSON-escaped) and the text of its mapped
// properties, then Redact's patterns.
func redactChange(reason string, c Change) string {
	var values []string
	if c.Email != "" {
		e := c.Email
		values = append(values, e, url.QueryEscape(e), strings.ReplaceAll(e, "@", `\u0040`), strings.ReplaceAll(e, "@", `\\u0040`))
	}
	for _, v := range c.Properties {
		if s, ok := v.(string); ok && len(strings.TrimSpace(s)) >= minRedactedValue {
			values = append(values, s)
		}
	}
	for _, v := range values {
		reason = replaceFold(reason, v, "[value]")
	}
	return (*Redactor)(nil).Redact(reason)
}

// replaceFold replaces every occurrence of old in s, in any letter case.
func replaceFold(s, old, with string) string {
	ls, lo := strings.ToLower(s), strings.ToLower(old)
	if len(ls) != len(s) || len(lo) != len(old) {
		return strings.ReplaceAll(s, old, with) // case mapping changed lengths
	}
	var b strings.Builder
	for {
		i := strings.Index(ls, lo)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(with)
		s, ls = s[i+len(old):], ls[i+len(old):]
	}
}
