package email

import (
	"bytes"
	_ "embed"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Class names who fetched a pixel or followed a link.
const (
	// ClassHuman is a person's mail client or browser.
	ClassHuman = "human"
	// ClassPrivacyProxy is an image proxy that prefetches every image
	// (Apple Mail Privacy Protection, Gmail, Yahoo): an open that says
	// nothing about the person.
	ClassPrivacyProxy = "privacy_proxy"
	// ClassScanner is a security scanner or a tool following links.
	ClassScanner = "scanner"
	// ClassUnknown is a hit we cannot attribute either way.
	ClassUnknown = "unknown"
)

// Reasons: the heuristic that decided a class (kept with the event).
const (
	reasonHoneypot      = "honeypot_link"
	reasonNoUA          = "missing_user_agent"
	reasonHeadlessUA    = "headless_user_agent"
	reasonToolUA        = "tool_user_agent"
	reasonSecurityUA    = "security_vendor_user_agent"
	reasonBotUA         = "bot_user_agent"
	reasonGmailUA       = "gmail_image_proxy"
	reasonYahooUA       = "yahoo_mail_proxy"
	reasonProxyUA       = "image_proxy_user_agent"
	reasonAppleUA       = "apple_mpp_user_agent"
	reasonScannerNet    = "scanner_network"
	reasonEarlyClick    = "click_within_seconds_of_send"
	reasonBurst         = "many_links_within_seconds"
	reasonHead          = "head_request"
	reasonPrefetch      = "prefetch"
	reasonNonBrowser    = "non_browser_accept"
	reasonNoSignal      = "no_machine_signal"
	defaultClickDelay   = 10 * time.Second
	defaultBurstWindow  = 2 * time.Second
	defaultBurstLinks   = 1
	defaultHistoryLimit = 100_000
)

// Kind is the kind of e-mail hit.
type Kind string

// Kinds of e-mail hit.
const (
	// KindOpen is a fetch of the open pixel.
	KindOpen Kind = "open"
	// KindClick is a followed link.
	KindClick Kind = "click"
)

// Request is what classification looks at. It is built from the HTTP
// request before the client address is truncated; only the resulting class
// and reason are kept.
type Request struct {
	// Kind is open or click.
	Kind Kind
	// Method is the HTTP method (GET, HEAD).
	Method string
	// IP is the full client address.
	IP netip.Addr
	// UserAgent is the User-Agent header.
	UserAgent string
	// Accept is the Accept header.
	Accept string
	// Purpose is the Sec-Purpose or Purpose header ("prefetch").
	Purpose string
	// Token is the verified token (SentAt, Honeypot, Campaign, Link).
	Token Token
	// Recipient is the recipient's pseudonym if known (the token's, or the
	// pseudonymized r parameter in merge-tag mode); it keys the click
	// history. Empty: the history is keyed by a hash of IP.
	Recipient string
	// Now is the time of the hit.
	Now time.Time
	// History remembers recent clicks per message; nil disables the
	// "many links within seconds" heuristic.
	History ClickHistory
}

// ClickHistory remembers recent clicks per message (one campaign sent to
// one recipient) to spot scanners that follow every link at once.
type ClickHistory interface {
	// ObserveClick records a click on link of message at t and returns how
	// many other distinct links of that message were clicked in the window
	// before t.
	ObserveClick(message, link string, t time.Time, window time.Duration) int
}

// ClassifyConfig tunes classification. The zero value is the default.
type ClassifyConfig struct {
	// ClickDelay: a click this soon after the e-mail was sent is a scanner
	// (default 10 s; negative disables).
	ClickDelay time.Duration
	// BurstWindow: other links of the same message clicked this shortly
	// before mean a scanner (default 2 s; negative disables).
	BurstWindow time.Duration
	// BurstLinks is how many other distinct links within BurstWindow make a
	// burst (default 1: a second different link within 2 s).
	BurstLinks int
	// ProxyNetworks are extra image-proxy networks (class privacy_proxy).
	ProxyNetworks []netip.Prefix
	// ScannerNetworks are extra scanner networks (class scanner).
	ScannerNetworks []netip.Prefix
}

// Classifier decides the class of e-mail hits. It is safe for concurrent
// use.
type Classifier struct {
	cfg     ClassifyConfig
	proxy   []network
	scanner []network
	seed    maphash.Seed
}

type network struct {
	prefix netip.Prefix
	reason string
}

//go:embed ranges.txt
var rangesTxt string

var (
	vendoredOnce    sync.Once
	vendoredProxy   []network
	vendoredScanner []network
	vendoredErr     error
)

// parseRanges reads the vendored network list.
func parseRanges(txt string) (proxy, scanner []network, err error) {
	for i, line := range strings.Split(txt, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, nil, fmt.Errorf("%w: ranges.txt line %d: want 4 fields", ErrConfig, i+1)
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil || p != p.Masked() {
			return nil, nil, fmt.Errorf("%w: ranges.txt line %d: bad prefix %q", ErrConfig, i+1, f[3])
		}
		n := network{prefix: p, reason: f[1]}
		switch f[0] {
		case ClassPrivacyProxy:
			proxy = append(proxy, n)
		case ClassScanner:
			scanner = append(scanner, n)
		default:
			return nil, nil, fmt.Errorf("%w: ranges.txt line %d: bad class %q", ErrConfig, i+1, f[0])
		}
	}
	return proxy, scanner, nil
}

// NewClassifier returns a Classifier with cfg's defaults filled in and the
// vendored networks (ranges.txt) plus cfg's extra networks.
func NewClassifier(cfg ClassifyConfig) *Classifier {
	vendoredOnce.Do(func() { vendoredProxy, vendoredScanner, vendoredErr = parseRanges(rangesTxt) })
	if vendoredErr != nil {
		panic(vendoredErr) // the embedded file is checked by tests
	}
	if cfg.ClickDelay == 0 {
		cfg.ClickDelay = defaultClickDelay
	}
	if cfg.BurstWindow == 0 {
		cfg.BurstWindow = defaultBurstWindow
	}
	if cfg.BurstLinks <= 0 {
		cfg.BurstLinks = defaultBurstLinks
	}
	c := &Classifier{cfg: cfg, seed: maphash.MakeSeed()}
	c.proxy = append(append(c.proxy, vendoredProxy...), toNetworks(cfg.ProxyNetworks, "proxy_network")...)
	c.scanner = append(append(c.scanner, vendoredScanner...), toNetworks(cfg.ScannerNetworks, reasonScannerNet)...)
	return c
}

func toNetworks(ps []netip.Prefix, reason string) []network {
	out := make([]network, 0, len(ps))
	for _, p := range ps {
		out = append(out, network{prefix: p.Masked(), reason: reason})
	}
	return out
}

var defaultClassifier = sync.OnceValue(func() *Classifier { return NewClassifier(ClassifyConfig{}) })

// Classify classifies r with the default ClassifyConfig.
func Classify(r Request) (class, reason string) {
	return defaultClassifier().Classify(r)
}

// Classify returns the class of r and the reason (the first heuristic that
// matched, in the order of the README's table).
func (c *Classifier) Classify(r Request) (class, reason string) {
	ip := r.IP.Unmap()
	if r.Kind == KindClick {
		return c.classifyClick(r, ip)
	}
	return c.classifyOpen(r, ip)
}

func (c *Classifier) classifyOpen(r Request, ip netip.Addr) (string, string) {
	ua := r.UserAgent
	switch {
	case containsFold(ua, "GoogleImageProxy"):
		return ClassPrivacyProxy, reasonGmailUA
	case containsFold(ua, "YahooMailProxy"):
		return ClassPrivacyProxy, reasonYahooUA
	}
	if _, ok := containsAny(ua, proxyUAs); ok {
		return ClassPrivacyProxy, reasonProxyUA
	}
	if n, ok := lookup(c.proxy, ip); ok {
		return ClassPrivacyProxy, n.reason
	}
	if _, ok := lookup(c.scanner, ip); ok {
		return ClassScanner, reasonScannerNet
	}
	if strings.TrimSpace(ua) == "" {
		return ClassUnknown, reasonNoUA
	}
	if reason, ok := machineUA(ua); ok {
		return ClassScanner, reason
	}
	if ua == "Mozilla/5.0" {
		return ClassPrivacyProxy, reasonAppleUA
	}
	return ClassHuman, reasonNoSignal
}

func (c *Classifier) classifyClick(r Request, ip netip.Addr) (string, string) {
	if r.Token.Honeypot {
		return ClassScanner, reasonHoneypot
	}
	// The burst history must see every click, whatever its class, so a
	// scanner's later clicks are caught even if its first one was not.
	burst := c.observe(r, ip)
	ua := r.UserAgent
	if strings.TrimSpace(ua) == "" {
		return ClassScanner, reasonNoUA
	}
	if reason, ok := machineUA(ua); ok {
		return ClassScanner, reason
	}
	if _, ok := lookup(c.scanner, ip); ok {
		return ClassScanner, reasonScannerNet
	}
	if strings.EqualFold(r.Method, "HEAD") {
		return ClassScanner, reasonHead
	}
	if c.cfg.ClickDelay > 0 && !r.Token.SentAt.IsZero() {
		if d := r.Now.Sub(r.Token.SentAt); d < c.cfg.ClickDelay {
			return ClassScanner, reasonEarlyClick
		}
	}
	if burst {
		return ClassScanner, reasonBurst
	}
	if containsFold(r.Purpose, "prefetch") {
		return ClassUnknown, reasonPrefetch
	}
	if r.Accept != "" && !containsFold(r.Accept, "text/html") {
		return ClassUnknown, reasonNonBrowser
	}
	return ClassHuman, reasonNoSignal
}

// observe records the click in the history and reports a burst.
func (c *Classifier) observe(r Request, ip netip.Addr) bool {
	if r.History == nil || c.cfg.BurstWindow < 0 || r.Token.Link == "" {
		return false
	}
	var msg strings.Builder
	msg.Grow(len(r.Token.Site) + len(r.Token.Campaign) + len(r.Recipient) + 24)
	msg.WriteString(r.Token.Site)
	msg.WriteByte(0)
	msg.WriteString(r.Token.Campaign)
	msg.WriteByte(0)
	if r.Recipient != "" {
		msg.WriteString(r.Recipient)
	} else {
		// No recipient: key by a process-keyed hash of the address, so no
		// address is held even in memory.
		b := ip.As16()
		h := maphash.Bytes(c.seed, b[:])
		fmt.Fprintf(&msg, "ip:%016x", h)
	}
	return r.History.ObserveClick(msg.String(), r.Token.Link, r.Now, c.cfg.BurstWindow) >= c.cfg.BurstLinks
}

func lookup(nets []network, ip netip.Addr) (network, bool) {
	if !ip.IsValid() {
		return network{}, false
	}
	for _, n := range nets {
		if n.prefix.Contains(ip) {
			return n, true
		}
	}
	return network{}, false
}

// User-agent fragments, matched case-insensitively.
var (
	headlessUAs = []string{"HeadlessChrome", "PhantomJS", "Headless", "Puppeteer", "Playwright", "Selenium", "Electron/"}
	toolUAs     = []string{"python-requests", "python-urllib", "aiohttp", "httpx", "curl/", "Wget/", "Go-http-client", "Java/", "Apache-HttpClient", "okhttp", "libwww-perl", "LWP::", "node-fetch", "axios/", "undici", "Ruby", "Faraday", "PostmanRuntime", "Scrapy", "HTTrack"}
	securityUAs = []string{"Barracuda", "Mimecast", "Proofpoint", "IronPort", "Cisco", "Forcepoint", "Trend Micro", "TrendMicro", "Sophos", "Symantec", "Fortinet", "FortiGuard", "Zscaler", "Microsoft Office Protocol Discovery", "Safe Links", "SafeLinks", "urldefense", "checkpoint", "Check Point", "Avanan", "Abnormal", "Bitdefender", "Kaspersky", "VirusTotal", "urlscan"}
	botUAs      = []string{"bot", "crawler", "spider", "preview", "scanner", "monitor"}
	proxyUAs    = []string{"ImageProxy", "via ggpht.com", "YandexImages", "Mail.RU_Bot/Img"}
)

// machineUA reports whether ua names a headless browser, an HTTP library or
// a security product.
func machineUA(ua string) (string, bool) {
	var buf [512]byte
	lower := lowerASCII(buf[:0], ua)
	for _, g := range uaGroups {
		for _, sub := range g.subs {
			if bytes.Contains(lower, sub) {
				return g.reason, true
			}
		}
	}
	return "", false
}

// uaGroups are the machine user-agent fragments, lower-cased once, in the
// order they are tried.
var uaGroups = []struct {
	reason string
	subs   [][]byte
}{
	{reasonHeadlessUA, lowerAll(headlessUAs)},
	{reasonSecurityUA, lowerAll(securityUAs)},
	{reasonToolUA, lowerAll(toolUAs)},
	{reasonBotUA, lowerAll(botUAs)},
}

func lowerAll(in []string) [][]byte {
	out := make([][]byte, len(in))
	for i, s := range in {
		out[i] = []byte(strings.ToLower(s))
	}
	return out
}

// lowerASCII lower-cases s into dst (at most cap(dst) bytes kept, so a
// huge header cannot cost more).
func lowerASCII(dst []byte, s string) []byte {
	if len(s) > cap(dst) {
		s = s[:cap(dst)]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func containsAny(s string, subs []string) (string, bool) {
	for _, sub := range subs {
		if containsFold(s, sub) {
			return sub, true
		}
	}
	return "", false
}

// containsFold is an ASCII case-insensitive strings.Contains that does not
// allocate.
func containsFold(s, sub string) bool {
	n := len(sub)
	if n == 0 {
		return true
	}
	for i := 0; i+n <= len(s); i++ {
		if equalFoldASCII(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// MemoryHistory is an in-process ClickHistory: one node's clicks. In
// cluster mode the server uses cluster.ClickHistory, which shares them
// (a load balancer spreads one scanner's clicks over the nodes).
type MemoryHistory struct {
	mu      sync.Mutex
	max     int
	seed    maphash.Seed
	entries map[string]*recentClicks
}

// recentClicks is a ring of a message's last clicks (link hash and time).
type recentClicks struct {
	links [8]uint64
	at    [8]time.Time
	next  int
	last  time.Time
}

// MemoryHistoryConfig configures a MemoryHistory.
type MemoryHistoryConfig struct {
	// MaxMessages bounds how many messages are remembered (default
	// 100 000); past it, messages idle for a minute are forgotten, and if
	// that is not enough, all are.
	MaxMessages int
}

// NewMemoryHistory returns an empty MemoryHistory.
func NewMemoryHistory(cfg MemoryHistoryConfig) *MemoryHistory {
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = defaultHistoryLimit
	}
	return &MemoryHistory{max: cfg.MaxMessages, seed: maphash.MakeSeed(), entries: make(map[string]*recentClicks)}
}

// ObserveClick implements ClickHistory.
func (h *MemoryHistory) ObserveClick(message, link string, t time.Time, window time.Duration) int {
	lh := maphash.String(h.seed, link)
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entries[message]
	if e == nil {
		if len(h.entries) >= h.max {
			h.prune(t)
		}
		e = &recentClicks{}
		h.entries[message] = e
	}
	var seen [8]uint64
	others := 0
outer:
	for i := range e.links {
		if e.at[i].IsZero() || e.links[i] == lh || t.Sub(e.at[i]) > window || e.at[i].After(t) {
			continue
		}
		for _, s := range seen[:others] {
			if s == e.links[i] {
				continue outer
			}
		}
		seen[others] = e.links[i]
		others++
	}
	e.links[e.next], e.at[e.next] = lh, t
	e.next = (e.next + 1) % len(e.links)
	e.last = t
	return others
}

func (h *MemoryHistory) prune(now time.Time) {
	for k, e := range h.entries {
		if now.Sub(e.last) > time.Minute {
			delete(h.entries, k)
		}
	}
	if len(h.entries) >= h.max {
		clear(h.entries)
	}
}
