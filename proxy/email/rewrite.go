package email

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/net/html"
)

// MaxHTMLSize bounds what RewriteCommand reads (10 MiB).
const MaxHTMLSize = 10 << 20

// RewriteOptions says how to track one e-mail body.
type RewriteOptions struct {
	// Base is Vigie's public URL, e.g. https://track.example.com/ (a
	// trailing slash is added). Required; http or https.
	Base string
	// Signer signs the tokens. Required.
	Signer *Signer
	// Site and Campaign go into every token. Required.
	Site, Campaign string
	// Recipient is the recipient's pseudonym (per-recipient mode). Leave
	// empty with MergeTag set for merge-tag mode.
	Recipient string
	// MergeTag is the ESP's placeholder for the contact attribute that
	// holds each recipient's recipient value (Signer.SignRecipient, e.g.
	// imported from `vigie email tokens`): "*|VIGIE|*" in Mailchimp,
	// "{{contact.VIGIE}}" in Brevo (merge-tag mode). Every tracking URL gets
	// r=<MergeTag>, which the ESP fills in per send. A hit whose r is not a
	// valid recipient value counts at campaign level only.
	MergeTag string
	// SentAt is when the e-mail goes out (zero = unknown). It lets Vigie
	// recognize scanners that click within seconds of delivery.
	SentAt time.Time
	// Expires is when the tokens stop counting hits (zero = never). Links
	// keep redirecting after it.
	Expires time.Time
	// AddHoneypot adds a hidden link no person can see or click.
	AddHoneypot bool
}

// RewriteResult is a tracked e-mail body.
type RewriteResult struct {
	// HTML is the rewritten body.
	HTML []byte
	// Links is how many links were wrapped (the honeypot not counted).
	Links int
}

// Rewrite adds the open pixel (before </body>, else at the end), wraps every
// http(s) link of <a> and <area> as BASE/e/c/TOKEN, and adds the honeypot
// link if asked. Links left alone: non-http(s) (mailto:, tel:, #anchors,
// relative), links already on Base, merge-tag links ({{…}}, *|…|*, %%…%%,
// {%…%}), unsubscribe links (in href, text or rel), and links marked
// data-vigie="skip". Every byte that is not rewritten is kept as it was.
func Rewrite(src []byte, opt RewriteOptions) (RewriteResult, error) {
	rw, err := newRewriter(opt)
	if err != nil {
		return RewriteResult{}, err
	}
	return rw.run(src)
}

type rewriter struct {
	opt    RewriteOptions
	base   string
	suffix string // "?r=<merge tag>" or ""
	out    []byte
	links  int

	// The <a> whose text is still being read: its start tag, what
	// followed it so far, its link and its text.
	pending  bool
	pendTag  []byte
	pendBody []byte
	pendLink string
	pendText []byte
}

// emit writes raw bytes, behind the pending <a> if there is one.
func (rw *rewriter) emit(b []byte) {
	if rw.pending {
		rw.pendBody = append(rw.pendBody, b...)
		return
	}
	rw.out = append(rw.out, b...)
}

func newRewriter(opt RewriteOptions) (*rewriter, error) {
	if opt.Signer == nil {
		return nil, fmt.Errorf("%w: rewrite needs a Signer", ErrConfig)
	}
	if opt.Site == "" || opt.Campaign == "" {
		return nil, fmt.Errorf("%w: rewrite needs Site and Campaign", ErrConfig)
	}
	if opt.Recipient != "" && opt.MergeTag != "" {
		return nil, fmt.Errorf("%w: Recipient and MergeTag are exclusive", ErrConfig)
	}
	base := opt.Base
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if !SafeLink(base) {
		return nil, fmt.Errorf("%w: Base must be an absolute http(s) URL", ErrConfig)
	}
	if strings.ContainsAny(base, "?#") {
		return nil, fmt.Errorf("%w: Base must not have a query or fragment", ErrConfig)
	}
	rw := &rewriter{opt: opt, base: base}
	if opt.MergeTag != "" {
		if strings.ContainsAny(opt.MergeTag, "\"'<>&#\x00\r\n\t ") {
			return nil, fmt.Errorf("%w: MergeTag has characters that cannot go in a URL attribute", ErrConfig)
		}
		rw.suffix = "?r=" + opt.MergeTag
	}
	return rw, nil
}

// url signs t and returns the tracking URL for kind ("o" or "c").
func (rw *rewriter) url(kind string, t Token) (string, error) {
	t.Site, t.Campaign, t.Recipient = rw.opt.Site, rw.opt.Campaign, rw.opt.Recipient
	t.SentAt, t.Expires = rw.opt.SentAt, rw.opt.Expires
	tok, err := rw.opt.Signer.Sign(t)
	if err != nil {
		return "", err
	}
	return rw.base + "e/" + kind + "/" + tok + rw.suffix, nil
}

// run rewrites src. The trackers go before the first </body>; without
// one, at the end — unless the document ends inside an unfinished tag,
// comment or raw-text element (<script>, <title>…), where they would be
// swallowed: then run starts again with insAt, the offset in src of the
// last token that began in the tokenizer's data state.
func (rw *rewriter) run(src []byte) (RewriteResult, error) {
	res, lastSafe, placed, err := rw.pass(src, -1)
	if err != nil || placed {
		return res, err
	}
	if trackersSurvive(src[lastSafe:]) {
		if err := rw.appendTrackers(); err != nil {
			return RewriteResult{}, err
		}
		return RewriteResult{HTML: rw.out, Links: rw.links}, nil
	}
	rw.links, rw.pending = 0, false
	res, _, _, err = rw.pass(src, lastSafe)
	return res, err
}

// pass is one tokenizing pass; insAt >= 0 places the trackers before the
// token starting at that offset.
func (rw *rewriter) pass(src []byte, insAt int) (res RewriteResult, lastSafe int, placed bool, err error) {
	rw.out = make([]byte, 0, len(src)+len(src)/4+512)
	z := html.NewTokenizer(bytes.NewReader(src))
	off, inRaw := 0, false
	for {
		tt := z.Next()
		raw := z.Raw()
		start := off
		off += len(raw)
		if !inRaw && (tt != html.ErrorToken || len(raw) > 0) {
			lastSafe = start
		}
		if !placed && start == insAt {
			if err := rw.appendTrackers(); err != nil {
				return res, 0, false, err
			}
			placed = true
		}
		if tt == html.ErrorToken {
			rw.emit(raw)
			if z.Err() != io.EOF {
				return res, 0, false, z.Err()
			}
			break
		}
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			if rawTextElement(name) {
				inRaw = true
			}
			isA := len(name) == 1 && name[0] == 'a'
			if !isA && string(name) != "area" {
				break
			}
			if isA {
				rw.flush()
			}
			link, skip := candidate(z, hasAttr, rw.base)
			if skip {
				break
			}
			if isA && tt == html.StartTagToken {
				rw.pending, rw.pendLink = true, link
				rw.pendTag = append(rw.pendTag[:0], raw...)
				rw.pendBody, rw.pendText = rw.pendBody[:0], rw.pendText[:0]
				continue
			}
			rw.emit(rw.wrap(raw, link))
			continue
		case html.TextToken:
			if rw.pending && len(rw.pendText) < 4096 {
				rw.pendText = append(rw.pendText, z.Text()...)
			}
		case html.EndTagToken:
			inRaw = false
			name, _ := z.TagName()
			if len(name) == 1 && name[0] == 'a' {
				rw.flush()
			} else if !placed && insAt < 0 && string(name) == "body" {
				rw.flush()
				if err := rw.appendTrackers(); err != nil {
					return res, 0, false, err
				}
				placed = true
			}
		}
		rw.emit(raw)
	}
	rw.flush()
	return RewriteResult{HTML: rw.out, Links: rw.links}, lastSafe, placed, nil
}

// rawTextElement reports whether the tokenizer reads what follows a start
// tag named name as raw text.
func rawTextElement(name []byte) bool {
	switch string(name) {
	case "iframe", "noembed", "noframes", "noscript", "plaintext", "script", "style", "textarea", "title", "xmp":
		return true
	}
	return false
}

// trackersSurvive reports whether markup appended after tail (which starts
// in the tokenizer's data state) is read as a tag.
func trackersSurvive(tail []byte) bool {
	const probe = "<img data-vigie-probe>"
	buf := make([]byte, 0, len(tail)+len(probe))
	buf = append(append(buf, tail...), probe...)
	z := html.NewTokenizer(bytes.NewReader(buf))
	last := html.ErrorToken
	var lastRaw []byte
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		last, lastRaw = tt, z.Raw()
	}
	return last == html.StartTagToken && string(lastRaw) == probe
}

// appendTrackers writes the honeypot link (if asked) and the open pixel.
func (rw *rewriter) appendTrackers() error {
	if rw.opt.AddHoneypot {
		u, err := rw.url("c", Token{Honeypot: true})
		if err != nil {
			return err
		}
		rw.emit([]byte(`<a href="` + html.EscapeString(u) + `" style="display:none" aria-hidden="true" tabindex="-1"></a>`))
	}
	u, err := rw.url("o", Token{})
	if err != nil {
		return err
	}
	rw.emit([]byte(`<img src="` + html.EscapeString(u) + `" width="1" height="1" alt="" style="display:none">`))
	return nil
}

// flush decides the pending <a> now that its text is known.
func (rw *rewriter) flush() {
	if !rw.pending {
		return
	}
	rw.pending = false
	tag := rw.pendTag
	if !unsubscribeText(rw.pendText) {
		tag = rw.wrap(tag, rw.pendLink)
	}
	rw.out = append(rw.out, tag...)
	rw.out = append(rw.out, rw.pendBody...)
}

// wrap returns the start tag with its href replaced by the tracking URL of
// link, or tag unchanged if link cannot be signed.
func (rw *rewriter) wrap(tag []byte, link string) []byte {
	u, err := rw.url("c", Token{Link: link})
	if err != nil {
		return tag
	}
	rw.links++
	return replaceHref(tag, u)
}

// candidate returns the link of the current <a>/<area> start tag and
// whether to leave it alone.
func candidate(z *html.Tokenizer, hasAttr bool, base string) (string, bool) {
	var href, rel string
	found := false
	for hasAttr {
		var k, v []byte
		k, v, hasAttr = z.TagAttr()
		switch string(k) {
		case "href":
			href, found = string(v), true
		case "rel":
			rel = string(v)
		case "data-vigie":
			if strings.EqualFold(strings.TrimSpace(string(v)), "skip") {
				return "", true
			}
		}
	}
	if !found {
		return "", true
	}
	link := strings.TrimSpace(href)
	l := strings.ToLower(link)
	if !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://") {
		return "", true
	}
	if strings.HasPrefix(l, strings.ToLower(base)) || isMergeTagLink(link) || unsubscribeText([]byte(link)) || unsubscribeText([]byte(rel)) {
		return "", true
	}
	return link, !SafeLink(link)
}

func isMergeTagLink(s string) bool {
	for _, m := range [...]string{"{{", "}}", "{%", "*|", "|*", "%%", "%7B%7B", "%7b%7b", "[[", "]]"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// unsubscribeWords are matched in lower case in hrefs, rel and link text.
var unsubscribeWords = []string{
	"unsubscribe", "opt-out", "optout", "opt out",
	"désabonn", "desabonn", "désinscri", "desinscri", "désinscription",
	"abmelden", "abbestellen", "austragen",
	"darse de baja", "cancelar suscrip", "cancelar la suscrip", "anular suscrip",
	"disiscriv", "cancella iscrizione",
	"uitschrijven", "afmelden",
	"descadastr", "cancelar inscrição",
	"avregistrer", "avsluta prenumeration", "afmeld",
	"wypisz", "odhlásit", "odhlasit",
}

func unsubscribeText(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	s := strings.ToLower(string(b))
	for _, w := range unsubscribeWords {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// replaceHref returns tag with its (first) href value replaced by u,
// keeping every other byte. If the raw tag cannot be read the way the
// tokenizer read it, the tag is re-rendered from its parsed attributes.
func replaceHref(tag []byte, u string) []byte {
	val := []byte(`"` + html.EscapeString(u) + `"`)
	if s, e, ok := hrefSpan(tag); ok {
		out := make([]byte, 0, len(tag)-(e-s)+len(val))
		out = append(out, tag[:s]...)
		out = append(out, val...)
		out = append(out, tag[e:]...)
		if sameButHref(tag, out, u) {
			return out
		}
	}
	return renderTag(tag, u)
}

// hrefSpan finds the bytes of the first href attribute's value in a raw
// start tag (including quotes), following x/net/html's tokenizer states.
func hrefSpan(tag []byte) (start, end int, ok bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' }
	i := 1 // after '<'
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	for {
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] == '>' {
			return 0, 0, false
		}
		// attribute key
		ks := i
		for i < len(tag) {
			c := tag[i]
			if c == '=' && i == ks {
				i++
				continue
			}
			if c == '=' || isSpace(c) || c == '/' || c == '>' {
				break
			}
			i++
		}
		key := tag[ks:i]
		// attribute value
		vs, ve := i, i
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i < len(tag) {
			c := tag[i]
			i++
			switch {
			case c == '/':
			case c != '=':
				i--
			default:
				for i < len(tag) && isSpace(tag[i]) {
					i++
				}
				if i < len(tag) {
					q := tag[i]
					i++
					switch q {
					case '>':
						i--
						vs, ve = i, i
					case '"', '\'':
						vs = i - 1
						for i < len(tag) && tag[i] != q {
							i++
						}
						if i < len(tag) {
							i++
						}
						ve = i
					default:
						vs = i - 1
						for i < len(tag) && !isSpace(tag[i]) && tag[i] != '>' {
							i++
						}
						ve = i
					}
				}
			}
		}
		if bytes.EqualFold(key, []byte("href")) {
			return vs, ve, vs < ve
		}
	}
}

// sameButHref checks by re-tokenizing that the rewritten tag has the same
// name and attributes as the original, except href == u.
func sameButHref(orig, repl []byte, u string) bool {
	a, b := html.NewTokenizer(bytes.NewReader(orig)), html.NewTokenizer(bytes.NewReader(repl))
	ta, tb := a.Next(), b.Next()
	if ta != tb || (ta != html.StartTagToken && ta != html.SelfClosingTagToken) {
		return false
	}
	x, y := a.Token(), b.Token()
	if x.Data != y.Data || len(x.Attr) != len(y.Attr) || len(b.Raw()) != len(repl) {
		return false
	}
	seen := false
	for i := range x.Attr {
		if x.Attr[i].Key != y.Attr[i].Key {
			return false
		}
		if x.Attr[i].Key == "href" && !seen {
			seen = true
			if y.Attr[i].Val != u {
				return false
			}
			continue
		}
		if x.Attr[i].Val != y.Attr[i].Val {
			return false
		}
	}
	return seen
}

// renderTag re-renders a start tag from its parsed attributes with href
// set to u (used only for markup the byte-level edit cannot handle).
func renderTag(tag []byte, u string) []byte {
	z := html.NewTokenizer(bytes.NewReader(tag))
	tt := z.Next()
	t := z.Token()
	var b bytes.Buffer
	b.WriteByte('<')
	b.WriteString(t.Data)
	for _, a := range t.Attr {
		v := a.Val
		if a.Key == "href" {
			v = u
		}
		b.WriteByte(' ')
		b.WriteString(a.Key)
		b.WriteString(`="`)
		b.WriteString(html.EscapeString(v))
		b.WriteByte('"')
	}
	if tt == html.SelfClosingTagToken {
		b.WriteString("/")
	}
	b.WriteByte('>')
	return b.Bytes()
}

// RewriteCommand reads an e-mail body from in (at most MaxHTMLSize bytes),
// rewrites it with opt and writes the result to out. It backs
// `vigie email rewrite < campaign.html`.
func RewriteCommand(ctx context.Context, in io.Reader, out io.Writer, opt RewriteOptions) error {
	src, err := io.ReadAll(io.LimitReader(in, MaxHTMLSize+1))
	if err != nil {
		return fmt.Errorf("email: reading input: %w", err)
	}
	if len(src) > MaxHTMLSize {
		return ErrTooLarge
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	res, err := Rewrite(src, opt)
	if err != nil {
		return err
	}
	if _, err := out.Write(res.HTML); err != nil {
		return fmt.Errorf("email: writing output: %w", err)
	}
	return nil
}
