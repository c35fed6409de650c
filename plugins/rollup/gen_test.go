package rollup

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// genConfig describes a synthetic event set.
type genConfig struct {
	site      string
	start     time.Time
	span      time.Duration
	events    int
	pages     int     // distinct paths, zipfian
	subjects  int     // distinct subject pseudonyms
	countries int     // distinct countries, zipfian
	campaigns int     // distinct utm campaigns
	anonymous float64 // share of anonymous events
	seed      uint64
}

// siteHost is the generated site's own host.
const siteHost = "shop.example"

// pools are the generator's precomputed strings, so that events share them.
type pools struct {
	paths, subjects, countries, campaigns, referrers []string
	urls                                             []string
}

var (
	devices  = []string{"desktop", "mobile", "tablet", "unknown"}
	browsers = []string{"Chrome", "Safari", "Firefox", "Edge", "Samsung Internet", "Opera"}
	oses     = []string{"Windows", "macOS", "iOS", "Android", "Linux"}
	sources  = []string{"newsletter", "google", "facebook", "partner"}
	mediums  = []string{"email", "cpc", "social", "referral"}
	types    = []string{"page", "page", "page", "page", "page", "page", "page", "track", "track", "identify"}
)

func newPools(c genConfig) *pools {
	p := &pools{}
	for i := range c.pages {
		p.paths = append(p.paths, fmt.Sprintf("/catalog/%d/item-%d", i%97, i))
		p.urls = append(p.urls, "https://"+siteHost+p.paths[i])
	}
	for i := range c.subjects {
		p.subjects = append(p.subjects, fmt.Sprintf("ps_%016x", uint64(i)*0x9E3779B97F4A7C15))
	}
	for i := range c.countries {
		p.countries = append(p.countries, string(rune('A'+i/26%26))+string(rune('A'+i%26)))
	}
	for i := range c.campaigns {
		p.campaigns = append(p.campaigns, fmt.Sprintf("campaign-%d", i))
	}
	for i := range 60 {
		p.referrers = append(p.referrers, fmt.Sprintf("ref%d.example.org", i))
	}
	return p
}

// generate calls fn with each event in time order. ev is reused: fn must
// not keep it.
func generate(c genConfig, fn func(ev *vigiev1.Event)) {
	p := newPools(c)
	r := rand.New(rand.NewPCG(c.seed, c.seed^0xabcdef))
	zipf := func(n int, s float64) *rand.Zipf { return rand.NewZipf(r, s, 1, uint64(n-1)) }
	zPage := zipf(c.pages, 1.1)
	zCountry := zipf(c.countries, 1.3)
	zRef := zipf(len(p.referrers), 1.2)
	zCamp := zipf(max(c.campaigns, 2), 1.1)
	startMs := c.start.UnixMilli()
	spanMs := c.span.Milliseconds()

	var ev vigiev1.Event
	page := &vigiev1.Page{}
	camp := &vigiev1.Campaign{}
	dev := &vigiev1.Device{}
	geo := &vigiev1.Geo{}
	purposesAll := []string{"analytics", "marketing", "necessary"}
	purposesAn := []string{"analytics", "necessary"}
	for i := range c.events {
		ts := startMs + int64(float64(spanMs)*float64(i)/float64(c.events))
		ev = vigiev1.Event{
			Id: fmt.Sprintf("%d-%d", c.seed, i), Site: c.site, Type: types[r.IntN(len(types))],
			TimestampMs: ts, ReceivedAtMs: ts + int64(r.IntN(2000)),
			Device: dev, Geo: geo,
		}
		anon := r.Float64() < c.anonymous
		*geo = vigiev1.Geo{Country: p.countries[zCountry.Uint64()]}
		if r.IntN(50) == 0 {
			geo.Country = "" // no GeoIP answer
		}
		*dev = vigiev1.Device{Class: devices[r.IntN(len(devices))]}
		path := int(zPage.Uint64())
		*page = vigiev1.Page{Path: p.paths[path]}
		switch x := r.IntN(100); {
		case x < 45:
			page.ReferrerHost = siteHost
		case x < 50:
			page.ReferrerHost = "www." + siteHost
		case x < 70:
		default:
			page.ReferrerHost = p.referrers[zRef.Uint64()]
		}
		ev.Page = page
		if anon {
			ev.Mode = vigiev1.Mode_MODE_ANONYMOUS
		} else {
			ev.Mode = vigiev1.Mode_MODE_PSEUDONYMOUS
			ev.Subject = p.subjects[r.IntN(len(p.subjects))]
			ev.Purposes = purposesAn
			if r.IntN(10) < 4 {
				ev.Purposes = purposesAll
			}
			page.Url = p.urls[path]
			dev.Browser, dev.Os = browsers[r.IntN(len(browsers))], oses[r.IntN(len(oses))]
			if c.campaigns > 0 && r.IntN(5) == 0 {
				*camp = vigiev1.Campaign{Name: p.campaigns[zCamp.Uint64()%uint64(c.campaigns)],
					Source: sources[r.IntN(len(sources))], Medium: mediums[r.IntN(len(mediums))]}
				ev.Campaign = camp
			}
		}
		fn(&ev)
	}
}

// exact is the brute-force reference: every figure counted per hour from
// the raw events, with the definitions written out again here.
type exact struct {
	hours map[int64]*exactBucket // by hour index
}

type exactBucket struct {
	n        [numModes][numMetrics]uint64
	dims     [numDims]map[string]uint64
	subjects map[string]bool
}

func newExact() *exact { return &exact{hours: map[int64]*exactBucket{}} }

// add counts ev by the README's definitions.
func (x *exact) add(ev *vigiev1.Event) {
	h := ev.TimestampMs / msPerHour
	b := x.hours[h]
	if b == nil {
		b = &exactBucket{subjects: map[string]bool{}}
		for d := range b.dims {
			b.dims[d] = map[string]uint64{}
		}
		x.hours[h] = b
	}
	mode := int(ev.Mode)
	b.n[mode][metricEvents]++
	b.dims[dimType][ev.Type]++
	for _, p := range ev.Purposes {
		b.dims[dimPurpose][p]++
	}
	if ev.Subject != "" {
		b.subjects[ev.Subject] = true
	}
	if ev.Type != "page" {
		return
	}
	b.n[mode][metricPageViews]++
	b.dims[dimPage][ev.Page.Path]++
	ref := ev.Page.ReferrerHost
	if ref == siteHost || ref == "www."+siteHost {
		return
	}
	b.n[mode][metricVisits]++
	none := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	b.dims[dimEntry][ev.Page.Path]++
	if ref == "" {
		ref = "(direct)"
	}
	b.dims[dimSource][ref]++
	b.dims[dimCampaign][none(ev.GetCampaign().GetName())]++
	b.dims[dimUTMSource][none(ev.GetCampaign().GetSource())]++
	b.dims[dimUTMMedium][none(ev.GetCampaign().GetMedium())]++
	b.dims[dimCountry][none(ev.GetGeo().GetCountry())]++
	b.dims[dimDevice][none(ev.GetDevice().GetClass())]++
	b.dims[dimBrowser][none(ev.GetDevice().GetBrowser())]++
	b.dims[dimOS][none(ev.GetDevice().GetOs())]++
}

// sum returns the figures of hours [from, to): counts, dimension totals
// and the exact number of distinct subjects.
func (x *exact) sum(from, to time.Time) (n [numModes][numMetrics]uint64, dims [numDims]map[string]uint64, visitors int) {
	subj := map[string]bool{}
	for d := range dims {
		dims[d] = map[string]uint64{}
	}
	for h := from.UnixMilli() / msPerHour; h < to.UnixMilli()/msPerHour; h++ {
		b := x.hours[h]
		if b == nil {
			continue
		}
		for m := range b.n {
			for k, v := range b.n[m] {
				n[m][k] += v
			}
		}
		for d := range b.dims {
			for k, v := range b.dims[d] {
				dims[d][k] += v
			}
		}
		for s := range b.subjects {
			subj[s] = true
		}
	}
	return n, dims, len(subj)
}

// totals converts counts as Overview reports them (visitors left out).
func totalsOf(n [numModes][numMetrics]uint64) Totals {
	ac := accum{n: n}
	return ac.totals()
}
