package email

import (
	"net/netip"
	"testing"
	"time"
)

// Recorded request shapes (user agents as seen in the wild).
const (
	uaChromeMac   = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	uaIPhoneMail  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
	uaOutlookWin  = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
	uaGmailProxy  = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
	uaYahooProxy  = "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 Safari/537.36 Edge/12.10136 YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
	uaHeadless    = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.71 Safari/537.36"
	uaPyRequests  = "python-requests/2.31.0"
	uaCurl        = "curl/8.5.0"
	uaGo          = "Go-http-client/1.1"
	uaJava        = "Java/1.8.0_392"
	uaLWP         = "libwww-perl/6.72"
	uaBarracuda   = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
	uaMimecast    = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Mimecast-URL-Protect"
	uaAppleMPP    = "Mozilla/5.0"
	acceptNav     = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
	acceptImg     = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
	linkA, linkB  = "https://shop.example/a", "https://shop.example/b"
	residentialV4 = "82.64.17.203"
)

func TestClassify(t *testing.T) {
	sent := t0
	later := t0.Add(3 * time.Hour)
	ip := netip.MustParseAddr
	tests := []struct {
		name          string
		req           Request
		class, reason string
	}{
		// Opens.
		{"apple mpp range, generic UA", Request{Kind: KindOpen, IP: ip("17.58.63.12"), UserAgent: uaAppleMPP, Accept: acceptImg}, ClassPrivacyProxy, "apple_mpp_range"},
		{"apple mpp range, ipv6", Request{Kind: KindOpen, IP: ip("2620:149:a44::11"), UserAgent: uaIPhoneMail}, ClassPrivacyProxy, "apple_mpp_range"},
		{"apple mpp range, v4-mapped", Request{Kind: KindOpen, IP: ip("::ffff:17.1.2.3"), UserAgent: uaIPhoneMail}, ClassPrivacyProxy, "apple_mpp_range"},
		{"apple generic UA elsewhere", Request{Kind: KindOpen, IP: ip(residentialV4), UserAgent: uaAppleMPP}, ClassPrivacyProxy, "apple_mpp_user_agent"},
		{"gmail image proxy UA", Request{Kind: KindOpen, IP: ip("66.249.84.5"), UserAgent: uaGmailProxy}, ClassPrivacyProxy, "gmail_image_proxy"},
		{"google netblock, other UA", Request{Kind: KindOpen, IP: ip("74.125.208.9"), UserAgent: uaChromeMac}, ClassPrivacyProxy, "gmail_proxy_range"},
		{"yahoo proxy", Request{Kind: KindOpen, IP: ip("98.136.1.1"), UserAgent: uaYahooProxy}, ClassPrivacyProxy, "yahoo_mail_proxy"},
		{"open from microsoft EOP", Request{Kind: KindOpen, IP: ip("40.107.22.33"), UserAgent: uaChromeMac}, ClassScanner, "scanner_network"},
		{"open without UA", Request{Kind: KindOpen, IP: ip(residentialV4)}, ClassUnknown, "missing_user_agent"},
		{"open by headless", Request{Kind: KindOpen, IP: ip(residentialV4), UserAgent: uaHeadless}, ClassScanner, "headless_user_agent"},
		{"open by outlook desktop", Request{Kind: KindOpen, IP: ip(residentialV4), UserAgent: uaOutlookWin, Accept: acceptImg}, ClassHuman, "no_machine_signal"},
		{"open by iphone mail off-apple", Request{Kind: KindOpen, IP: ip("2a01:e0a::1"), UserAgent: uaIPhoneMail}, ClassHuman, "no_machine_signal"},
		// Clicks.
		{"human click", Request{Kind: KindClick, Method: "GET", IP: ip(residentialV4), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Link: linkA, SentAt: sent}, Now: later}, ClassHuman, "no_machine_signal"},
		{"honeypot", Request{Kind: KindClick, Method: "GET", IP: ip(residentialV4), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Honeypot: true}, Now: later}, ClassScanner, "honeypot_link"},
		{"click within 10s of send", Request{Kind: KindClick, Method: "GET", IP: ip(residentialV4), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Link: linkA, SentAt: sent}, Now: sent.Add(4 * time.Second)}, ClassScanner, "click_within_seconds_of_send"},
		{"click 11s after send", Request{Kind: KindClick, Method: "GET", IP: ip(residentialV4), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Link: linkA, SentAt: sent}, Now: sent.Add(11 * time.Second)}, ClassHuman, "no_machine_signal"},
		{"python-requests", Request{Kind: KindClick, Method: "GET", IP: ip(residentialV4), UserAgent: uaPyRequests, Accept: "*/*", Token: Token{Link: linkA}, Now: later}, ClassScanner, "tool_user_agent"},
		{"curl", Request{Kind: KindClick, IP: ip(residentialV4), UserAgent: uaCurl, Token: Token{Link: linkA}, Now: later}, ClassScanner, "tool_user_agent"},
		{"go client", Request{Kind: KindClick, IP: ip(residentialV4), UserAgent: uaGo, Token: Token{Link: linkA}, Now: later}, ClassScanner, "tool_user_agent"},
		{"java", Request{Kind: KindClick, IP: ip(residentialV4), UserAgent: uaJava, Token: Token{Link: linkA}, Now: later}, ClassScanner, "tool_user_agent"},
		{"libwww", Request{Kind: KindClick, IP: ip(residentialV4), UserAgent: uaLWP, Token: Token{Link: linkA}, Now: later}, ClassScanner, "tool_user_agent"},
		{"headless chrome", Request{Kind: KindClick, IP: ip("20.40.1.1"), UserAgent: uaHeadless, Accept: acceptNav, Token: Token{Link: linkA}, Now: later}, ClassScanner, "headless_user_agent"},
		{"barracuda UA", Request{Kind: KindClick, IP: ip(residentialV4), UserAgent: uaBarracuda, Token: Token{Link: linkA}, Now: later}, ClassScanner, "security_vendor_user_agent"},
		{"mimecast UA", Request{Kind: KindClick, IP: ip(residentialV4), UserAgent: uaMimecast, Token: Token{Link: linkA}, Now: later}, ClassScanner, "security_vendor_user_agent"},
		{"safe links from EOP with browser UA", Request{Kind: KindClick, Method: "GET", IP: ip("40.93.97.2"), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Link: linkA}, Now: later}, ClassScanner, "scanner_network"},
		{"proofpoint network", Request{Kind: KindClick, IP: ip("148.163.150.2"), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Link: linkA}, Now: later}, ClassScanner, "scanner_network"},
		{"mimecast network", Request{Kind: KindClick, IP: ip("205.139.110.60"), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Link: linkA}, Now: later}, ClassScanner, "scanner_network"},
		{"barracuda network", Request{Kind: KindClick, IP: ip("209.222.82.10"), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Link: linkA}, Now: later}, ClassScanner, "scanner_network"},
		{"ironport network", Request{Kind: KindClick, IP: ip("68.232.140.1"), UserAgent: uaChromeMac, Accept: acceptNav, Token: Token{Link: linkA}, Now: later}, ClassScanner, "scanner_network"},
		{"click without UA", Request{Kind: KindClick, IP: ip(residentialV4), Token: Token{Link: linkA}, Now: later}, ClassScanner, "missing_user_agent"},
		{"HEAD click", Request{Kind: KindClick, Method: "HEAD", IP: ip(residentialV4), UserAgent: uaChromeMac, Token: Token{Link: linkA}, Now: later}, ClassScanner, "head_request"},
		{"prefetch", Request{Kind: KindClick, Method: "GET", IP: ip(residentialV4), UserAgent: uaChromeMac, Accept: acceptNav, Purpose: "prefetch", Token: Token{Link: linkA}, Now: later}, ClassUnknown, "prefetch"},
		{"browser UA, non-browser accept", Request{Kind: KindClick, Method: "GET", IP: ip(residentialV4), UserAgent: uaChromeMac, Accept: "*/*", Token: Token{Link: linkA}, Now: later}, ClassUnknown, "non_browser_accept"},
		{"apple range click is a person (private relay)", Request{Kind: KindClick, Method: "GET", IP: ip("17.5.5.5"), UserAgent: uaIPhoneMail, Accept: acceptNav, Token: Token{Link: linkA}, Now: later}, ClassHuman, "no_machine_signal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			class, reason := Classify(tt.req)
			if class != tt.class || reason != tt.reason {
				t.Fatalf("Classify = %s/%s, want %s/%s", class, reason, tt.class, tt.reason)
			}
		})
	}
}

func TestClassifyBurst(t *testing.T) {
	c := NewClassifier(ClassifyConfig{})
	ip := netip.MustParseAddr(residentialV4)
	base := Request{Kind: KindClick, Method: "GET", IP: ip, UserAgent: uaChromeMac, Accept: acceptNav, Recipient: "p1",
		Token: Token{Site: "s", Campaign: "c", SentAt: t0}}
	steps := []struct {
		name      string
		recipient string
		link      string
		at        time.Duration
		reason    string
	}{
		{"first link", "p1", linkA, time.Hour, "no_machine_signal"},
		{"same link again is not a burst", "p1", linkA, time.Hour + time.Second, "no_machine_signal"},
		{"other link within 2s", "p1", linkB, time.Hour + 2*time.Second, "many_links_within_seconds"},
		{"other recipient unaffected", "p2", "https://shop.example/c", time.Hour + 2*time.Second, "no_machine_signal"},
		{"other link after 2s", "p1", "https://shop.example/d", time.Hour + 10*time.Second, "no_machine_signal"},
		{"anonymous by address", "", linkA, 2 * time.Hour, "no_machine_signal"},
		{"anonymous burst", "", linkB, 2*time.Hour + time.Second, "many_links_within_seconds"},
	}
	h := NewMemoryHistory(MemoryHistoryConfig{})
	for _, s := range steps {
		r := base
		r.History, r.Recipient, r.Token.Link, r.Now = h, s.recipient, s.link, t0.Add(s.at)
		if _, reason := c.Classify(r); reason != s.reason {
			t.Fatalf("%s: reason %s, want %s", s.name, reason, s.reason)
		}
	}
	// Disabled heuristics.
	off := NewClassifier(ClassifyConfig{ClickDelay: -1, BurstWindow: -1})
	r := base
	r.History, r.Token.Link, r.Now = NewMemoryHistory(MemoryHistoryConfig{}), linkA, t0.Add(time.Second)
	off.Classify(r)
	r.Token.Link = linkB
	if class, reason := off.Classify(r); class != ClassHuman {
		t.Fatalf("disabled heuristics still fire: %s/%s", class, reason)
	}
}

func TestMemoryHistoryBounded(t *testing.T) {
	h := NewMemoryHistory(MemoryHistoryConfig{MaxMessages: 10})
	for i := range 100 {
		h.ObserveClick(string(rune('a'+i%26))+string(rune(i)), linkA, t0.Add(time.Duration(i)*time.Minute*2), time.Second)
	}
	if n := len(h.entries); n > 10 {
		t.Fatalf("history holds %d messages, max 10", n)
	}
	// More than the ring size of clicks: counts stay within the ring.
	for i := range 20 {
		h.ObserveClick("m", string(rune('A'+i)), t0, time.Second)
	}
	if n := h.ObserveClick("m", "new", t0, time.Second); n != 8 {
		t.Fatalf("others = %d, want 8 (ring size)", n)
	}
}

func TestVendoredRanges(t *testing.T) {
	proxy, scanner, err := parseRanges(rangesTxt)
	if err != nil {
		t.Fatal(err)
	}
	if len(proxy) < 5 || len(scanner) < 10 {
		t.Fatalf("ranges: %d proxy, %d scanner", len(proxy), len(scanner))
	}
	want := map[string]string{
		"17.0.0.1":       "apple_mpp_range",
		"17.255.255.254": "apple_mpp_range",
		"2a01:b740::9":   "apple_mpp_range",
		"66.102.8.1":     "gmail_proxy_range",
		"104.47.1.1":     "scanner_network",
		"67.231.150.3":   "scanner_network",
		"146.101.78.9":   "scanner_network",
		"64.235.150.1":   "scanner_network",
		"16.255.255.255": "",
		"18.0.0.0":       "",
		"2001:db8::1":    "",
		residentialV4:    "",
	}
	for a, reason := range want {
		ip := netip.MustParseAddr(a)
		n, ok := lookup(append(append([]network{}, proxy...), scanner...), ip)
		if ok != (reason != "") || n.reason != reason {
			t.Errorf("%s: got %q (%v), want %q", a, n.reason, ok, reason)
		}
	}
	for _, bad := range []string{"privacy_proxy x y 17.0.0.1/8", "human r v 10.0.0.0/8", "scanner r v", "scanner r v nope"} {
		if _, _, err := parseRanges(bad); err == nil {
			t.Errorf("parseRanges(%q) accepted", bad)
		}
	}
}

func TestExtraNetworks(t *testing.T) {
	c := NewClassifier(ClassifyConfig{ScannerNetworks: []netip.Prefix{netip.MustParsePrefix("203.0.113.7/24")}, ProxyNetworks: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	if class, _ := c.Classify(Request{Kind: KindClick, IP: netip.MustParseAddr("203.0.113.200"), UserAgent: uaChromeMac, Token: Token{Link: linkA}, Now: t0}); class != ClassScanner {
		t.Fatalf("extra scanner network: %s", class)
	}
	if class, _ := c.Classify(Request{Kind: KindOpen, IP: netip.MustParseAddr("198.51.100.3"), UserAgent: uaChromeMac}); class != ClassPrivacyProxy {
		t.Fatalf("extra proxy network: %s", class)
	}
}

func BenchmarkClassifyClick(b *testing.B) {
	c := NewClassifier(ClassifyConfig{})
	h := NewMemoryHistory(MemoryHistoryConfig{})
	r := Request{Kind: KindClick, Method: "GET", IP: netip.MustParseAddr(residentialV4), UserAgent: uaChromeMac, Accept: acceptNav,
		Recipient: "p1", Token: Token{Site: "s", Campaign: "c", Link: linkA, SentAt: t0}, Now: t0.Add(time.Hour), History: h}
	b.ReportAllocs()
	for b.Loop() {
		c.Classify(r)
	}
}
