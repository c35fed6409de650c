package loadtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"time"
)

// userAgents is the small pool of browser user agents the events carry
// (none of them is a bot, so every event goes through the whole path).
var userAgents = [...]string{
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
}

// anonPool is how many distinct anonymousIds the events use.
const anonPool = 256

// generator builds realistic Segment track events (~600 bytes each) with
// distinct messageIds, so that deduplication never short-circuits the
// path. Every event grants analytics; the events of half the anonymousIds
// also grant personalization, so the segment stage profiles them (the
// others only have their absent profile checked). It is safe for
// concurrent use.
type generator struct {
	run   string // random per run: messageIds never repeat across runs
	ts    string // RFC 3339 timestamp of the run's start
	anons [anonPool]string
	seq   atomic.Uint64
	auth  string // Authorization header carrying the write key
}

func newGenerator(writeKey string, now time.Time) *generator {
	g := &generator{
		run:  rand.Text()[:10],
		ts:   now.UTC().Format("2006-01-02T15:04:05.000Z"),
		auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(writeKey+":")),
	}
	for i := range g.anons {
		var b [16]byte
		_, _ = rand.Read(b[:])
		h := hex.EncodeToString(b[:])
		g.anons[i] = h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	return g
}

// appendEvent appends one track event with the next messageId to dst.
func (g *generator) appendEvent(dst []byte) []byte {
	n := g.seq.Add(1)
	dst = append(dst, `{"type":"track","event":"Product Viewed","messageId":"bench-`...)
	dst = append(dst, g.run...)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, n, 10)
	dst = append(dst, `","anonymousId":"`...)
	dst = append(dst, g.anons[n%anonPool]...)
	dst = append(dst, `","timestamp":"`...)
	dst = append(dst, g.ts...)
	dst = append(dst, `","context":{"ip":"203.0.113.`...)
	dst = strconv.AppendUint(dst, n%254+1, 10)
	dst = append(dst, `","userAgent":"`...)
	dst = append(dst, userAgents[n%uint64(len(userAgents))]...)
	dst = append(dst, `","page":{"path":"/products/42","referrer":"https://www.google.com/",`+
		`"title":"Blue shoes","url":"https://shop.example/products/42?utm_source=news"},`+
		`"campaign":{"name":"winter","source":"news","medium":"email"},"library":{"name":"analytics.js","version":"1.70.0"},`+
		`"consent":{"analytics":true`...)
	if (n%anonPool)%2 == 0 {
		// Half the visitors also grant personalization: their events are
		// profiled and segmented.
		dst = append(dst, `,"personalization":true`...)
	}
	dst = append(dst, `}},"properties":{"product_id":"42","price":59.9,"currency":"EUR"}}`...)
	return dst
}

// appendBatch appends a /v1/batch body of n events to dst.
func (g *generator) appendBatch(dst []byte, n int) []byte {
	dst = append(dst, `{"sentAt":"`...)
	dst = append(dst, g.ts...)
	dst = append(dst, `","batch":[`...)
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = g.appendEvent(dst)
	}
	return append(dst, "]}"...)
}
