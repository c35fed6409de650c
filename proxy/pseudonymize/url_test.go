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
			// Click ids move to Campaign.ClickIDs (the pipeline stores them
			// as pseudonyms); the URL never keeps them.
			name: "click ids with marketing consent", marketing: true,
			raw: "https://example.com/?gclid=Cj0KCQabc-123&FBCLID=IwAR0x&utm_campaign=spring%20sale",
			want: URLParts{
				URL: "https://example.com/?utm_campaign=spring+sale", Path: "/",
				Search: "?utm_campaign=spring+sale", Host: "example.com",
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

// TestScrubURLClasses covers personal data in every part of a URL: host
// (IP literals in every form), path, query values and keys, fragment,
// other trackers' ids and identifier-like referral values.
func TestScrubURLClasses(t *testing.T) {
	p := newTestP(t)
	tests := []struct {
		raw, url, host string
		class          Class
	}{
		{"http://198.51.100.73/x?utm_source=a", "http://ip.invalid/x?utm_source=a", "ip.invalid", ClassIP},
		{"http://198.51.100.73:8080/", "http://ip.invalid:8080/", "ip.invalid:8080", ClassIP},
		{"https://[2001:db8::1]:8443/p", "https://ip.invalid:8443/p", "ip.invalid:8443", ClassIP},
		{"http://[fe80::1%25en0]/", "http://ip.invalid/", "ip.invalid", ClassIP},
		{"http://3325256713/", "http://ip.invalid/", "ip.invalid", ClassIP},
		{"http://0xC6336449/a", "http://ip.invalid/a", "ip.invalid", ClassIP},
		{"http://0306.0063.0144.0111/", "http://ip.invalid/", "ip.invalid", ClassIP},
		{"http://198.51.25673/", "http://ip.invalid/", "ip.invalid", ClassIP},
		{"//198.51.100.73/a", "//ip.invalid/a", "ip.invalid", ClassIP},
		{"https://0612345678.example.com/", "https://redacted.invalid/", "redacted.invalid", ClassPhone},
		{"https://shop.example/u/jane%2540example.org/x", "https://shop.example/u/[email]/x", "shop.example", ClassEmail},
		{"https://shop.example/u/jane%252540example.org", "https://shop.example/u/[email]", "shop.example", ClassEmail},
		{"https://shop.example/call/+33%206%2012%2034%2056%2078", "https://shop.example/call/[phone]", "shop.example", ClassPhone},
		{"https://shop.example/from/198.51.100.73", "https://shop.example/from/[ip]", "shop.example", ClassIP},
		{"https://shop.example/pay/4111111111111111", "https://shop.example/pay/[card]", "shop.example", ClassCard},
		{"https://shop.example/?utm_term=jane%2540example.org", "https://shop.example/?utm_term=%5Bemail%5D", "shop.example", ClassEmail},
		{"https://shop.example/?utm_content=jane%26%2364%3Bexample.org", "https://shop.example/?utm_content=%5Bemail%5D", "shop.example", ClassEmail},
		{"https://shop.example/?utm_content=FR7630006000011234567890189", "https://shop.example/?utm_content=%5Biban%5D", "shop.example", ClassIBAN},
		{"https://shop.example/?utm_content=a8Kd9xQ2zz11", "https://shop.example/?utm_content=%5Btoken%5D", "shop.example", ClassToken},
		{"https://shop.example/?email=jane%40example.org&utm_source=nl", "https://shop.example/?utm_source=nl", "shop.example", ClassQueryParam},
		{"https://shop.example/?jane%40example.org=1", "https://shop.example/", "shop.example", ClassEmail},
		{"https://shop.example/#jane@example.org", "https://shop.example/", "shop.example", NumClasses},
		{"https://shop.example/?pk_vid=a1b2c3d4e5f6a7b8&pk_campaign=spring", "https://shop.example/?pk_campaign=spring", "shop.example", ClassTrackerID},
		{"https://shop.example/?_pk_id.1.abcd=a1b2c3d4e5f6a7b8.1700000000.", "https://shop.example/", "shop.example", ClassTrackerID},
		{"https://shop.example/?_ga=2.1234.5678&_gl=1*abc&utm_source=x", "https://shop.example/?utm_source=x", "shop.example", ClassTrackerID},
		{"https://shop.example/?ajs_aid=abc&ajs_uid=u1&mkt_tok=xyz&_hsenc=p2A", "https://shop.example/", "shop.example", ClassTrackerID},
		{"https://shop.example/?ref=u8c2f9a", "https://shop.example/?ref=%5Bid%5D", "shop.example", ClassTrackerID},
		{"https://shop.example/?ref=12345", "https://shop.example/?ref=%5Bid%5D", "shop.example", ClassTrackerID},
		{"https://shop.example/?source=a3f9c2e1b7", "https://shop.example/?source=%5Bid%5D", "shop.example", ClassTrackerID},
		{"https://shop.example/?utm_source=newsletter_12345", "https://shop.example/?utm_source=%5Bid%5D", "shop.example", ClassTrackerID},
		// kept as they are
		{"https://shop.example/?ref=producthunt&utm_source=newsletter&utm_campaign=spring2026", "https://shop.example/?ref=producthunt&utm_source=newsletter&utm_campaign=spring2026", "shop.example", NumClasses},
		{"https://shop.example/?utm_source=20261126&utm_content=spring2026sale", "https://shop.example/?utm_source=20261126&utm_content=spring2026sale", "shop.example", NumClasses},
		{"https://ip.invalid/x", "https://ip.invalid/x", "ip.invalid", NumClasses},
		{"https://shop-123.example.com/", "https://shop-123.example.com/", "shop-123.example.com", NumClasses},
	}
	for _, tt := range tests {
		var c Counts
		got := p.ScrubURL(tt.raw, false, &c)
		if got.URL != tt.url || got.Host != tt.host {
			t.Errorf("ScrubURL(%q) = %q host %q, want %q host %q", tt.raw, got.URL, got.Host, tt.url, tt.host)
			continue
		}
		if tt.class != NumClasses && c.Of(tt.class) == 0 {
			t.Errorf("ScrubURL(%q) counted %v, want %s", tt.raw, c, tt.class)
		}
		if again := p.ScrubURL(got.URL, false, nil); again.URL != got.URL {
			t.Errorf("not idempotent: %q → %q", got.URL, again.URL)
		}
		if _, err := url.Parse(got.URL); err != nil {
			t.Errorf("output %q does not parse: %v", got.URL, err)
		}
	}
}

// TestTrackerIDsDroppedEvenWhenAllowed: a site allowlisting pk_* (the old
// default) still loses Matomo's visitor id.
func TestTrackerIDsDroppedEvenWhenAllowed(t *testing.T) {
	p, err := New(Config{Keys: []Key{{ID: "a", Secret: secret(1)}}, AllowParams: []string{"pk_*", "_ga", "utm_*"}})
	if err != nil {
		t.Fatal(err)
	}
	got := p.ScrubURL("/?pk_vid=a1b2c3d4e5f6a7b8&pk_campaign=x&_ga=GA1.2.3.4&utm_source=y", false, nil)
	if want := "/?pk_campaign=x&utm_source=y"; got.URL != want {
		t.Errorf("URL = %q, want %q", got.URL, want)
	}
}

func TestScrubSource(t *testing.T) {
	for in, want := range map[string]string{
		"newsletter": "newsletter", "hn": "hn", "google": "google", "spring2026": "spring2026", "20261126": "20261126",
		"u8c2f9a": "[id]", "12345": "[id]", "ref_a3f9c2e1b7": "[id]", "jane@example.org": "[email]", "": "",
	} {
		var c Counts
		if got := ScrubSource(in, &c); got != want {
			t.Errorf("ScrubSource(%q) = %q, want %q", in, got, want)
		}
	}
}
