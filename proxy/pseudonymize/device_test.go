package pseudonymize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	uaChromeWin  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaSafariIOS  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
	uaIPad       = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
	uaFirefoxLin = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaAndroid    = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
)

func TestDevice(t *testing.T) {
	p := newTestP(t)
	tests := []struct {
		ua   string
		want Device
	}{
		{uaChromeWin, Device{Browser: "Chrome", BrowserMajor: "131", OS: "Windows", Class: "desktop"}},
		{uaSafariIOS, Device{Browser: "Safari", BrowserMajor: "17", OS: "iOS", Class: "mobile"}},
		{uaIPad, Device{Browser: "Safari", BrowserMajor: "16", OS: "iOS", Class: "tablet"}},
		{uaFirefoxLin, Device{Browser: "Firefox", BrowserMajor: "133", OS: "Linux", Class: "desktop"}},
		{uaAndroid, Device{Browser: "Chrome", BrowserMajor: "131", OS: "Android", Class: "mobile"}},
		{"", Device{Class: "bot", Bot: true}},
	}
	for _, tt := range tests {
		for range 2 { // uncached, then cached
			if got := p.Device(tt.ua); got != tt.want {
				t.Errorf("Device(%.40q) = %+v, want %+v", tt.ua, got, tt.want)
			}
		}
	}
}

func TestDeviceBots(t *testing.T) {
	p := newTestP(t)
	bots := []string{
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"curl/8.4.0",
		"python-requests/2.31.0",
		"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
		"Wget/1.21.4",
		// a browser UA with a crawler marker that useragent alone may miss
		uaChromeWin + " HeadlessChrome",
	}
	for _, ua := range bots {
		d := p.Device(ua)
		if !d.Bot || d.Class != "bot" {
			t.Errorf("Device(%q) = %+v, want bot", ua, d)
		}
	}
	for _, ua := range []string{uaChromeWin, uaSafariIOS, uaIPad, uaFirefoxLin, uaAndroid} {
		if crawlers().match(ua) {
			t.Errorf("crawler list flags browser UA %q", ua)
		}
	}
}

type crawlerEntry struct {
	Pattern   string   `json:"pattern"`
	Instances []string `json:"instances"`
}

func loadCrawlerEntries(t testing.TB) []crawlerEntry {
	t.Helper()
	var entries []crawlerEntry
	if err := json.Unmarshal(crawlerJSON, &entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestCrawlerIndexSkipsFew(t *testing.T) {
	idx := crawlers()
	if idx.total < 1000 {
		t.Fatalf("only %d patterns loaded", idx.total)
	}
	if idx.skipped*50 >= idx.total {
		t.Fatalf("skipped %d of %d patterns (≥ 2%%)", idx.skipped, idx.total)
	}
	t.Logf("patterns %d, skipped %d, literal-less fallback %d, confirmed by regexp %d", idx.total, idx.skipped, idx.fallback, len(idx.confirm))
}

// TestCrawlerIndexEquivalent checks the literal index against plain regexp
// matching on every instance in the list plus browser user agents.
func TestCrawlerIndexEquivalent(t *testing.T) {
	entries := loadCrawlerEntries(t)
	res := make([]*regexp.Regexp, 0, len(entries))
	for _, e := range entries {
		if re, err := regexp.Compile(e.Pattern); err == nil {
			res = append(res, re)
		}
	}
	naive := func(ua string) bool {
		for _, re := range res {
			if re.MatchString(ua) {
				return true
			}
		}
		return false
	}
	uas := []string{uaChromeWin, uaSafariIOS, uaIPad, uaFirefoxLin, uaAndroid, "", "x", "Mozilla/5.0"}
	for _, e := range entries {
		uas = append(uas, e.Instances...)
	}
	idx := crawlers()
	missed := 0
	for _, ua := range uas {
		if got, want := idx.match(ua), naive(ua); got != want {
			t.Errorf("match(%q) = %v, regexp says %v", ua, got, want)
		}
		if idx.match(ua) {
			continue
		}
		missed++
	}
	if missed > 8 { // the browser UAs and trivial strings above
		t.Errorf("%d listed instances not detected", missed-8)
	}
}

func TestBuildCrawlerIndex(t *testing.T) {
	tests := []struct {
		patterns []string
		ua       string
		want     bool
	}{
		{[]string{"Googlebot\\/"}, "x Googlebot/2.1", true},
		{[]string{"Googlebot\\/"}, "Googlebot", false},
		{[]string{"^curl"}, "curl/8", true},
		{[]string{"^curl"}, "not curl/8", false},
		{[]string{"[wW]get"}, "Wget/1", true},
		{[]string{"AdsBot-Google([^-]|$)"}, "AdsBot-Google", true},
		{[]string{"AdsBot-Google([^-]|$)"}, "AdsBot-Google-Mobile", false},
		{[]string{"(sistrix|SISTRIX) [cC]rawler"}, "SISTRIX crawler", true},
		{[]string{"^$"}, "", true}, // no literal: fallback alternation
		{[]string{"a(b"}, "a(b", false},
	}
	for _, tt := range tests {
		idx := buildCrawlerIndex(tt.patterns)
		if got := idx.match(tt.ua); got != tt.want {
			t.Errorf("%q match(%q) = %v, want %v", tt.patterns, tt.ua, got, tt.want)
		}
	}
	if idx := buildCrawlerIndex([]string{"a(b", "ok"}); idx.skipped != 1 {
		t.Errorf("skipped = %d, want 1", idx.skipped)
	}
}

func TestDeviceCacheBounded(t *testing.T) {
	p := newTestP(t)
	p.devices = newDeviceCache(64)
	for i := range 1000 {
		p.Device(fmt.Sprintf("Mozilla/5.0 test/%d", i))
	}
	if n := p.devices.len(); n > 64 || n < 32 {
		t.Errorf("cache holds %d entries, want ≤ 64 and well filled", n)
	}
	long := strings.Repeat("A", 5000)
	p.Device(long)
	if _, ok := p.devices.get(long[:maxUALen]); !ok {
		t.Errorf("long UA not cached under its truncated key")
	}
}

// TestCrawlerListCurrent checks the vendored list against the npm package
// installed by CI under $VIGIE_NPM_DIR/node_modules/crawler-user-agents.
func TestCrawlerListCurrent(t *testing.T) {
	dir := os.Getenv("VIGIE_NPM_DIR")
	if dir == "" {
		t.Skip("VIGIE_NPM_DIR not set: skipping comparison with the installed crawler-user-agents npm package")
	}
	pkg := filepath.Join(dir, "node_modules", "crawler-user-agents")
	installed, err := os.ReadFile(filepath.Join(pkg, "crawler-user-agents.json"))
	if err != nil {
		t.Skipf("crawler-user-agents not installed under %s: %v", dir, err)
	}
	if !bytes.Equal(installed, crawlerJSON) {
		t.Errorf("vendored crawler-user-agents.json differs from %s; run ./update.sh", pkg)
	}
	var meta struct {
		Version string `json:"version"`
	}
	raw, err := os.ReadFile(filepath.Join(pkg, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(crawlerVersion); got != meta.Version {
		t.Errorf("crawler-user-agents.VERSION = %q, installed %q; run ./update.sh", got, meta.Version)
	}
}

func TestDeviceKeepsOnlyKnownFamilies(t *testing.T) {
	p := newTestP(t)
	d := p.Device("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36 AcmeInternalBrowser/77")
	if d.Browser != otherFamily || d.BrowserMajor != "" || d.OS != "Windows" {
		t.Fatalf("unusual product token kept: %+v", d)
	}
	d = p.Device("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36")
	if d.Browser != "Chrome" || d.BrowserMajor != "121" {
		t.Fatalf("chrome: %+v", d)
	}
}
