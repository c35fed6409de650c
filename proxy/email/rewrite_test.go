package email

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

const testBase = "https://track.example.com/"

func testOptions(t testing.TB) RewriteOptions {
	return RewriteOptions{Base: "https://track.example.com", Signer: testSigner(t, "k1", "k1"), Site: "shop", Campaign: "spring-26", Recipient: "p_42", SentAt: t0}
}

// links returns the href of every <a>/<area> in doc, in order.
func links(t testing.TB, doc []byte) []string {
	t.Helper()
	var out []string
	z := html.NewTokenizer(bytes.NewReader(doc))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return out
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		if tok.Data != "a" && tok.Data != "area" {
			continue
		}
		href := "<none>"
		for _, a := range tok.Attr {
			if a.Key == "href" {
				href = a.Val
				break
			}
		}
		out = append(out, href)
	}
}

// clickLink verifies a wrapped href and returns its token.
func clickLink(t testing.TB, s *Signer, href string) (Token, string, bool) {
	t.Helper()
	if !strings.HasPrefix(href, testBase+"e/c/") {
		return Token{}, "", false
	}
	u, err := url.Parse(href)
	if err != nil {
		return Token{}, "", false
	}
	tok, err := s.Verify(strings.TrimPrefix(u.Path, "/e/c/"), t0)
	if err != nil {
		return Token{}, "", false
	}
	return tok, u.RawQuery, true
}

func TestRewriteLinks(t *testing.T) {
	tests := []struct {
		name string
		a    string // one link
		link string // wrapped link, "" if left alone
	}{
		{"plain", `<a href="https://shop.example/sale">Sale</a>`, "https://shop.example/sale"},
		{"http", `<a href="http://shop.example/">x</a>`, "http://shop.example/"},
		{"entity in href", `<a href="https://shop.example/?a=1&amp;b=2">x</a>`, "https://shop.example/?a=1&b=2"},
		{"single quotes, upper case", `<A HREF='https://shop.example/x' class=btn>x</A>`, "https://shop.example/x"},
		{"unquoted", `<a href=https://shop.example/u>x</a>`, "https://shop.example/u"},
		{"spaces around", `<a   href = " https://shop.example/s "  >x</a>`, "https://shop.example/s"},
		{"area", `<map><area shape="rect" href="https://shop.example/m"></map>`, "https://shop.example/m"},
		{"mailto", `<a href="mailto:help@shop.example">mail</a>`, ""},
		{"tel", `<a href="tel:+33123456789">call</a>`, ""},
		{"anchor", `<a href="#top">top</a>`, ""},
		{"relative", `<a href="/x">x</a>`, ""},
		{"javascript", `<a href="javascript:alert(1)">x</a>`, ""},
		{"already tracked", `<a href="https://track.example.com/e/c/abc">x</a>`, ""},
		{"unsubscribe href", `<a href="https://shop.example/unsubscribe?u=1">here</a>`, ""},
		{"unsubscribe text", `<a href="https://esp.example/l/123">Unsubscribe</a>`, ""},
		{"french text", `<a href="https://esp.example/l/123">Se <b>désabonner</b></a>`, ""},
		{"german text", `<a href="https://esp.example/l/123">Newsletter abmelden</a>`, ""},
		{"data-vigie skip", `<a data-vigie="skip" href="https://shop.example/private">x</a>`, ""},
		{"rel unsubscribe", `<a rel="unsubscribe" href="https://esp.example/l/9">x</a>`, ""},
		{"mailchimp merge tag", `<a href="*|ARCHIVE|*">view</a>`, ""},
		{"merge tag in https link", `<a href="https://shop.example/?e={{contact.email}}">x</a>`, ""},
		{"no href", `<a name="x">x</a>`, ""},
		{"non-ascii link", `<a href="https://shop.example/é">x</a>`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := testOptions(t)
			src := []byte("<html><body><p>Hi</p>" + tt.a + "</body></html>")
			res, err := Rewrite(src, opt)
			if err != nil {
				t.Fatal(err)
			}
			got := links(t, res.HTML)
			if len(got) != 1 {
				t.Fatalf("links %v", got)
			}
			tok, _, wrapped := clickLink(t, opt.Signer, got[0])
			if tt.link == "" {
				if wrapped || res.Links != 0 {
					t.Fatalf("link wrapped: %s", res.HTML)
				}
				if !bytes.Contains(res.HTML, []byte(tt.a)) {
					t.Fatalf("original bytes changed: %s", res.HTML)
				}
				return
			}
			if !wrapped || res.Links != 1 {
				t.Fatalf("not wrapped: %s", res.HTML)
			}
			want := Token{Site: "shop", Campaign: "spring-26", Recipient: "p_42", Link: tt.link, SentAt: t0}
			if tok != want {
				t.Fatalf("token %+v, want %+v", tok, want)
			}
		})
	}
}

func TestRewritePreservesBytes(t *testing.T) {
	opt := testOptions(t)
	src := `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN">
<html><head><style>a{color:red} /* <a href="https://x/"> */</style><!--[if mso]><xml>o</xml><![endif]--></head>
<BODY bgcolor=#fff><table><tr><td align=center>Bonjour&nbsp;&eacute;
<a class='btn'   href="https://shop.example/a?x=1&amp;y=2" target=_blank data-x>Go</a>
<script>var s = "<a href='https://no.example/'>";</script>
</td></tr></table></BODY></html>`
	res, err := Rewrite([]byte(src), opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Links != 1 {
		t.Fatalf("links %d: %s", res.Links, res.HTML)
	}
	out := string(res.HTML)
	// Removing the tracking URL and the pixel gives back the source.
	i := strings.Index(out, `"`+testBase+"e/c/")
	j := strings.Index(out[i+1:], `"`)
	restored := out[:i] + `"https://shop.example/a?x=1&amp;y=2"` + out[i+1+j+1:]
	p := strings.Index(restored, `<img src="`+testBase+"e/o/")
	q := strings.Index(restored[p:], ">")
	if p < 0 || !strings.HasPrefix(restored[p+q+1:], "</BODY>") {
		t.Fatalf("pixel not before </BODY>: %s", out)
	}
	restored = restored[:p] + restored[p+q+1:]
	if restored != src {
		t.Fatalf("bytes changed:\n%s\n---\n%s", restored, src)
	}
}

func TestRewritePixelHoneypotMergeTag(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		mergeTag string
		honeypot bool
	}{
		{"no body tag: pixel at end", `<p><a href="https://a.example/">x</a>`, "", false},
		{"merge tag mailchimp", `<body><a href="https://a.example/">x</a></body>`, "*|UNIQID|*", true},
		{"merge tag braces", `<body><a href="https://a.example/">x</a></body>`, "{{contact.id}}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := testOptions(t)
			opt.MergeTag, opt.AddHoneypot = tt.mergeTag, tt.honeypot
			if tt.mergeTag != "" {
				opt.Recipient = ""
			}
			res, err := Rewrite([]byte(tt.src), opt)
			if err != nil {
				t.Fatal(err)
			}
			out := string(res.HTML)
			if !strings.Contains(out, `width="1" height="1" alt="" style="display:none">`) {
				t.Fatalf("no pixel: %s", out)
			}
			if !strings.HasSuffix(strings.TrimSuffix(out, "</body>"), `style="display:none">`) {
				t.Fatalf("pixel not last: %s", out)
			}
			hrefs := links(t, res.HTML)
			wantN := 1
			if tt.honeypot {
				wantN = 2
			}
			if len(hrefs) != wantN || res.Links != 1 {
				t.Fatalf("hrefs %v, Links %d", hrefs, res.Links)
			}
			tok, q, ok := clickLink(t, opt.Signer, hrefs[0])
			if !ok || tok.Recipient != opt.Recipient {
				t.Fatalf("first link %q", hrefs[0])
			}
			if tt.mergeTag != "" && q != "r="+tt.mergeTag {
				t.Fatalf("merge tag query %q", q)
			}
			if tt.honeypot {
				hp, _, ok := clickLink(t, opt.Signer, hrefs[1])
				if !ok || !hp.Honeypot || hp.Link != "" || !strings.Contains(out, `style="display:none" aria-hidden="true"`) {
					t.Fatalf("honeypot %q %+v", hrefs[1], hp)
				}
			}
		})
	}
}

func TestRewriteOptionErrors(t *testing.T) {
	good := testOptions(t)
	tests := []struct {
		name string
		mod  func(*RewriteOptions)
	}{
		{"no signer", func(o *RewriteOptions) { o.Signer = nil }},
		{"no campaign", func(o *RewriteOptions) { o.Campaign = "" }},
		{"bad base", func(o *RewriteOptions) { o.Base = "javascript:x" }},
		{"base with query", func(o *RewriteOptions) { o.Base = "https://t.example/?x" }},
		{"recipient and merge tag", func(o *RewriteOptions) { o.MergeTag = "*|ID|*" }},
		{"merge tag with quote", func(o *RewriteOptions) { o.Recipient, o.MergeTag = "", `"><script>` }},
	}
	for _, tt := range tests {
		o := good
		tt.mod(&o)
		if _, err := Rewrite([]byte("<a href='https://a.example/'>x</a>"), o); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err %v", tt.name, err)
		}
	}
}

func TestRewriteCommand(t *testing.T) {
	opt := testOptions(t)
	var out bytes.Buffer
	if err := RewriteCommand(context.Background(), strings.NewReader(`<body><a href="https://a.example/">x</a></body>`), &out, opt); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), testBase+"e/"); n != 2 {
		t.Fatalf("tracked URLs %d: %s", n, out.String())
	}
	big := io.LimitReader(zeros{}, MaxHTMLSize+1)
	if err := RewriteCommand(context.Background(), big, io.Discard, opt); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("large input: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := RewriteCommand(ctx, strings.NewReader("<p>"), io.Discard, opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestReplaceHrefOddMarkup(t *testing.T) {
	const u = "https://t.example/e/c/X"
	for _, tag := range []string{
		`<a href="https://a/">`, `<a HREF=https://a/>`, `<a =x href='https://a/'>`, `<a x=">" href="https://a/">`,
		`<a href="https://a/" href="https://b/">`, `<a/href="https://a/">`, `<a href = https://a/ / >`, `<a data-href="x" href="https://a/">`,
	} {
		out := replaceHref([]byte(tag), u)
		z := html.NewTokenizer(bytes.NewReader(out))
		z.Next()
		tok := z.Token()
		var href string
		for _, a := range tok.Attr {
			if a.Key == "href" {
				href = a.Val
				break
			}
		}
		if href != u {
			t.Errorf("%s → %s: href %q", tag, out, href)
		}
	}
}

func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		`<html><body><a href="https://a.example/x">x</a><a href="mailto:x@y">m</a></body></html>`,
		`<a href='https://a.example/'>Unsubscribe</a><area href=https://b.example/>`,
		`<a href="https://a.example/"><a href="https://b.example/">`,
		`<a x=">" href="https://a/" href="https://b/"/>`,
		`<script><a href="https://a/"></script><!-- <a href="https://b/"> -->`,
		`<body><title></body></title><a href="https://a/">`,
	} {
		f.Add([]byte(s))
	}
	opt := testOptions(f)
	opt.AddHoneypot = true
	f.Fuzz(func(t *testing.T, src []byte) {
		res, err := Rewrite(src, opt)
		if err != nil {
			t.Fatalf("Rewrite: %v", err)
		}
		if _, err := html.Parse(bytes.NewReader(res.HTML)); err != nil {
			t.Fatalf("output does not parse: %v", err)
		}
		in, out := links(t, src), links(t, res.HTML)
		if len(out) != len(in)+1 {
			t.Fatalf("links: in %q, out %q", in, out)
		}
		wrapped := 0
		honeypots := 0
		j := 0
		for _, o := range out {
			tok, _, ok := clickLink(t, opt.Signer, o)
			if ok && tok.Honeypot {
				honeypots++
				continue
			}
			if j >= len(in) {
				t.Fatalf("extra link %q", o)
			}
			if ok && !strings.HasPrefix(in[j], testBase) {
				if tok.Link != strings.TrimSpace(in[j]) {
					t.Fatalf("wrapped %q as %q", in[j], tok.Link)
				}
				wrapped++
			} else if o != in[j] {
				t.Fatalf("href changed: %q → %q", in[j], o)
			}
			j++
		}
		if honeypots != 1 || wrapped != res.Links {
			t.Fatalf("honeypots %d, wrapped %d, Links %d", honeypots, wrapped, res.Links)
		}
	})
}

func BenchmarkRewrite(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("<!doctype html><html><head><style>td{padding:0}</style></head><body><table>")
	for i := range 30 {
		sb.WriteString(`<tr><td class="c" style="padding:8px"><img src="https://cdn.shop.example/p.png" alt="p" width="200"><p>Product text with some words &amp; entities.</p>`)
		sb.WriteString(`<a href="https://shop.example/products/item-` + string(rune('a'+i%26)) + `?utm_source=newsletter&amp;utm_campaign=spring" style="color:#333">Buy now</a></td></tr>`)
	}
	sb.WriteString(`</table><a href="https://esp.example/unsub">Unsubscribe</a></body></html>`)
	src := []byte(sb.String())
	opt := testOptions(b)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rewrite(src, opt); err != nil {
			b.Fatal(err)
		}
	}
}
