package pseudonymize

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestScrubURL(t *testing.T) {
	p := newTestP(t)
	tests := []struct {
		name      string
		raw       string
		marketing bool
		want      URLParts
	}{
		{
			name: "absolute with userinfo, fragment, pii and click id without consent",
			raw:  "https://user:pw@Shop.Example.COM:8443/u/john@x.com/cart?utm_source=news&utm_medium=email&email=a@b.co&gclid=Cj0KCQabc&sessionid=1#top",
			want: URLParts{
				URL: "https://shop.example.com:8443/u/[email]/cart?utm_source=news&utm_medium=email", Path: "/u/[email]/cart",
				Search: "?utm_source=news&utm_medium=email", Host: "shop.example.com:8443",
				Campaign: Campaign{Source: "news", Medium: "email"},
			},
		},
		{
			name: "click ids with marketing consent", marketing: true,
			raw: "https://example.com/?gclid=Cj0KCQabc-123&FBCLID=IwAR0x&utm_campaign=spring%20sale",
			want: URLParts{
				URL: "https://example.com/?gclid=Cj0KCQabc-123&FBCLID=IwAR0x&utm_campaign=spring+sale", Path: "/",
				Search: "?gclid=Cj0KCQabc-123&FBCLID=IwAR0x&utm_campaign=spring+sale", Host: "example.com",
				Campaign: Campaign{Name: "spring sale", ClickIDs: map[string]string{"gclid": "Cj0KCQabc-123", "fbclid": "IwAR0x"}},
			},
		},
		{
			name: "mc_eid is always dropped", marketing: true,
			raw:  "/news?mc_cid=abc&mc_eid=12345&ref=hn",
			want: URLParts{URL: "/news?ref=hn", Path: "/news", Search: "?ref=hn", Campaign: Campaign{Source: "hn"}},
		},
		{
			name: "kept values are scrubbed",
			raw:  "/p?utm_term=jane%40doe.org&utm_content=call+0612345678",
			want: URLParts{
				URL: "/p?utm_term=%5Bemail%5D&utm_content=call+%5Bphone%5D", Path: "/p",
				Search:   "?utm_term=%5Bemail%5D&utm_content=call+%5Bphone%5D",
				Campaign: Campaign{Term: "[email]", Content: "call [phone]"},
			},
		},
		{
			name: "matomo fallbacks and utm precedence",
			raw:  "/?pk_campaign=pk&mtm_source=m&utm_campaign=u&mtm_kwd=k",
			want: URLParts{
				URL: "/?pk_campaign=pk&mtm_source=m&utm_campaign=u&mtm_kwd=k", Path: "/",
				Search:   "?pk_campaign=pk&mtm_source=m&utm_campaign=u&mtm_kwd=k",
				Campaign: Campaign{Name: "u", Source: "m", Term: "k"},
			},
		},
		{
			name: "pii in an allowed param name is dropped",
			raw:  "/?utm_jane@doe.org=1&utm_source=x",
			want: URLParts{URL: "/?utm_source=x", Path: "/", Search: "?utm_source=x", Campaign: Campaign{Source: "x"}},
		},
		{
			name: "query only",
			raw:  "?utm_campaign=spring&q=secret",
			want: URLParts{URL: "?utm_campaign=spring", Search: "?utm_campaign=spring", Campaign: Campaign{Name: "spring"}},
		},
		{
			name: "scheme relative",
			raw:  "//cdn.example.com/a%20b/reset/8f7d6a5c4b3e2f1a0b9c8d7e6f5a",
			want: URLParts{URL: "//cdn.example.com/a%20b/reset/[token]", Path: "/a%20b/reset/[token]", Host: "cdn.example.com"},
		},
		{
			name: "mailto",
			raw:  "mailto:john@x.com?subject=hi",
			want: URLParts{URL: "mailto:[email]", Path: "[email]"},
		},
		{
			name: "unparseable keeps a scrubbed path only",
			raw:  "https://h\x7fost.com/users/jane@doe.org/%zz?token=abc#x",
			want: URLParts{URL: "/users/[email]/%25zz", Path: "/users/[email]/%25zz"},
		},
		{
			name: "opaque with userinfo-like prefix",
			raw:  "user:pw@%zz/x",
			want: URLParts{URL: "user:%25zz/x", Path: "%25zz/x"},
		},
		{
			name: "unparseable with userinfo-like prefix",
			raw:  "pw@ho\x01st/x?y",
			want: URLParts{URL: "host/x", Path: "host/x"},
		},
		{name: "empty", raw: "   ", want: URLParts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.ScrubURL(tt.raw, tt.marketing, nil)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ScrubURL(%q)\n got %+v\nwant %+v", tt.raw, got, tt.want)
			}
			if again := p.ScrubURL(got.URL, tt.marketing, nil); again.URL != got.URL {
				t.Errorf("not idempotent: %q → %q", got.URL, again.URL)
			}
		})
	}
}

func TestScrubURLCustomAllowlist(t *testing.T) {
	p, err := New(Config{Keys: []Key{{ID: "a", Secret: secret(1)}}, AllowParams: []string{"page", "lang*"}, ClickIDParams: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	got := p.ScrubURL("/list?page=2&Language=fr&utm_source=x&gclid=1", true, nil)
	if want := "/list?page=2&Language=fr"; got.URL != want {
		t.Errorf("URL = %q, want %q", got.URL, want)
	}
	if got.Campaign.ClickIDs != nil {
		t.Errorf("ClickIDs = %v, want nil", got.Campaign.ClickIDs)
	}
}

func FuzzScrubURL(f *testing.F) {
	for _, s := range []string{"https://example.com/a?utm_source=x#f", "/p?gclid=1&ref=2", "%zz", "mailto:a@b.co",
		"//h/a/b?utm_term=%40", "http://[::1]:80/x", "?", "a b/c?d=e f", "https://u:p@h/%2F%40?utm_x=%ZZ"} {
		f.Add(s, false)
	}
	p := newTestP(f)
	const email = "jane.doe@example.com"
	f.Fuzz(func(t *testing.T, raw string, marketing bool) {
		out := p.ScrubURL(raw, marketing, nil)
		if again := p.ScrubURL(out.URL, marketing, nil); again.URL != out.URL {
			t.Fatalf("not idempotent: %q → %q → %q", raw, out.URL, again.URL)
		}
		if out.URL != "" {
			if _, err := url.Parse(out.URL); err != nil {
				t.Fatalf("output %q does not parse: %v", out.URL, err)
			}
		}
		if strings.Contains(out.URL, "#") {
			t.Fatalf("fragment kept: %q", out.URL)
		}
		for _, seeded := range []string{"/u/" + email + "/" + raw, "/x?utm_term=" + email + "&" + raw} {
			if got := p.ScrubURL(seeded, marketing, nil); strings.Contains(got.URL, email) || strings.Contains(got.URL, "jane.doe%40example.com") {
				t.Fatalf("seeded e-mail survived: %q → %q", seeded, got.URL)
			}
		}
	})
}
