package pseudonymize

import (
	"hash/maphash"
	"strconv"
	"strings"
	"sync"

	"github.com/mileusna/useragent"
)

// Device is the reduced, non-identifying view of a user agent.
type Device struct {
	// Browser is the browser (or bot) family, e.g. "Chrome"; "" if unknown.
	Browser string
	// BrowserMajor is the browser's major version, e.g. "131"; "" if unknown.
	BrowserMajor string
	// OS is the operating system family, e.g. "Windows", "iOS"; "" if unknown.
	OS string
	// Class is one of "desktop", "mobile", "tablet", "bot", "unknown".
	Class string
	// Bot is true when the user agent is a crawler, monitor, HTTP library or
	// empty (browsers always send one).
	Bot bool
}

// Device classes.
const (
	classDesktop = "desktop"
	classMobile  = "mobile"
	classTablet  = "tablet"
	classBot     = "bot"
	classUnknown = "unknown"
)

const (
	// maxUALen bounds the part of a user agent that is parsed and cached.
	maxUALen = 512
	// deviceCacheSize bounds the number of cached user agents.
	deviceCacheSize = 8192
	cacheShards     = 16
)

// Device reduces ua to browser family, major version, OS family and device
// class, and flags bots using both github.com/mileusna/useragent and the
// vendored crawler-user-agents pattern list. Results are cached in a bounded
// concurrent cache, so repeated user agents cost one map lookup.
func (p *Pseudonymizer) Device(ua string) Device {
	if len(ua) > maxUALen {
		ua = ua[:maxUALen]
	}
	if d, ok := p.devices.get(ua); ok {
		return d
	}
	d := parseDevice(ua)
	p.devices.put(strings.Clone(ua), d)
	return d
}

// parseDevice does the uncached work of Device.
func parseDevice(ua string) Device {
	if strings.TrimSpace(ua) == "" {
		return Device{Class: classBot, Bot: true}
	}
	u := useragent.Parse(ua)
	// Only well-known families are kept: an unusual product token (a
	// custom build, an in-house app) would single a visitor out.
	d := Device{Browser: knownFamily(knownBrowsers, u.Name), OS: knownFamily(knownOSes, u.OS)}
	if u.Version != "" && d.Browser != "" && d.Browser != otherFamily {
		d.BrowserMajor = strconv.Itoa(u.VersionNo.Major)
	}
	switch {
	case u.Bot || crawlers().match(ua):
		d.Bot, d.Class = true, classBot
	case u.Tablet:
		d.Class = classTablet
	case u.Mobile:
		d.Class = classMobile
	case u.Desktop:
		d.Class = classDesktop
	default:
		d.Class = classUnknown
	}
	return d
}

// deviceCache is a sharded map with random eviction when a shard is full.
type deviceCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]struct {
		mu sync.RWMutex
		m  map[string]Device
	}
}

func newDeviceCache(size int) *deviceCache {
	c := &deviceCache{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]Device, c.perShard)
	}
	return c
}

func (c *deviceCache) shard(k string) int {
	return int(maphash.String(c.seed, k) % cacheShards)
}

func (c *deviceCache) get(k string) (Device, bool) {
	s := &c.shards[c.shard(k)]
	s.mu.RLock()
	d, ok := s.m[k]
	s.mu.RUnlock()
	return d, ok
}

func (c *deviceCache) put(k string, d Device) {
	s := &c.shards[c.shard(k)]
	s.mu.Lock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.perShard {
		for old := range s.m { // map iteration order is randomized: random eviction
			delete(s.m, old)
			break
		}
	}
	s.m[k] = d
	s.mu.Unlock()
}

// len reports the number of cached entries (for tests).
func (c *deviceCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// otherFamily replaces a browser or OS name that is not well known.
const otherFamily = "Other"

var knownBrowsers = map[string]bool{
	useragent.Opera: true, useragent.OperaMini: true, useragent.OperaTouch: true, useragent.Chrome: true,
	useragent.HeadlessChrome: true, useragent.Firefox: true, useragent.InternetExplorer: true,
	useragent.Safari: true, useragent.Edge: true, useragent.Vivaldi: true, useragent.MobileSafari: true,
	useragent.SamsungBrowser: true, useragent.FacebookApp: true, useragent.InstagramApp: true,
	useragent.TiktokApp: true, "Yandex Browser": true, "UC Browser": true, "Brave": true, "DuckDuckGo": true,
	useragent.Googlebot: true, useragent.Bingbot: true, useragent.Applebot: true, useragent.YandexBot: true,
	useragent.Twitterbot: true, useragent.FacebookExternalHit: true, useragent.GoogleAdsBot: true,
}

var knownOSes = map[string]bool{
	useragent.Windows: true, useragent.WindowsPhone: true, useragent.Android: true, useragent.MacOS: true,
	useragent.IOS: true, useragent.Linux: true, useragent.FreeBSD: true, useragent.ChromeOS: true,
	useragent.BlackBerry: true, useragent.Harmony: true,
}

// knownFamily returns name if it is in known, "" if empty, else "Other".
func knownFamily(known map[string]bool, name string) string {
	switch {
	case name == "":
		return ""
	case known[name]:
		return name
	default:
		return otherFamily
	}
}
