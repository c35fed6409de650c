package pipeline

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/proxy/sensitive"
)

// benchTrack is a typical analytics.js track call (~600 bytes) with
// analytics consent, as `vigie bench` sends it.
const benchTrack = `{"type":"track","event":"Product Viewed","messageId":"ajs-next-1764151200123-0001",` +
	`"anonymousId":"6f1c2b7a-0d3e-4c55-8a9b-2e1f0c3d4b5a","timestamp":"2026-11-26T10:00:00.123Z",` +
	`"context":{"ip":"203.0.113.7","locale":"fr-FR","timezone":"Europe/Paris",` +
	`"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",` +
	`"page":{"path":"/products/42","referrer":"https://www.google.com/","search":"?utm_source=news&utm_medium=email","title":"Blue running shoes",` +
	`"url":"https://shop.example/products/42?utm_source=news&utm_medium=email"},` +
	`"campaign":{"name":"winter-sale","source":"news","medium":"email"},"library":{"name":"analytics.js","version":"next-1.70.0"},` +
	`"consent":{"analytics":true}},"properties":{"product_id":"42","price":59.9,"currency":"EUR","category":"shoes"},"integrations":{}}`

// benchIdentify is an identify call whose traits hold personal data (moved
// to the vault) and plain traits (kept).
const benchIdentify = `{"type":"identify","messageId":"ajs-next-1764151200123-0002","userId":"user-1234",` +
	`"anonymousId":"6f1c2b7a-0d3e-4c55-8a9b-2e1f0c3d4b5a","timestamp":"2026-11-26T10:00:00.123Z",` +
	`"traits":{"email":"jeanne.martin@example.fr","name":"Jeanne Martin","phone":"+33 6 12 34 56 78","plan":"pro","company_size":42},` +
	`"context":{"ip":"203.0.113.7","locale":"fr-FR",` +
	`"userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",` +
	`"page":{"path":"/account","url":"https://shop.example/account"},"library":{"name":"analytics.js","version":"next-1.70.0"},` +
	`"consent":{"analytics":true,"personalization":true}},"integrations":{}}`

// benchSensitive is the sites' sensitive-data policy (nil: the default).
var benchSensitive *sensitive.Policy

func benchPipeline(b *testing.B) (*Pipeline, *Site) {
	b.Helper()
	p, err := New(Config{
		Keys:      []pseudonymize.Key{{ID: "k1", Secret: bytes.Repeat([]byte{7}, pseudonymize.MinSecretLen)}},
		Sites:     []SiteConfig{{ID: "demo", Policy: consent.DefaultPolicy(), Sensitive: benchSensitive}},
		Retention: map[string]time.Duration{"analytics": 395 * 24 * time.Hour, "personalization": 395 * 24 * time.Hour},
	})
	if err != nil {
		b.Fatal(err)
	}
	s, err := p.Site("demo")
	if err != nil {
		b.Fatal(err)
	}
	return p, s
}

// benchProcess measures Process on one decoded message (decoding is
// collect's benchmark) and checks the result once so the benchmark cannot
// silently measure a drop.
func benchProcess(b *testing.B, body, typ string, wantVault bool) {
	p, s := benchPipeline(b)
	m, err := collect.DecodeMessage([]byte(body), typ)
	if err != nil {
		b.Fatal(err)
	}
	req := &Request{ReceivedAt: time.Now(), RemoteIP: "198.51.100.23", UserAgent: m.Context.UserAgent, Source: "segment"}
	res := p.Process(s, &m, req)
	if res.Outcome != Stored || len(res.Record.Data) == 0 || res.Record.Subject == "" {
		b.Fatalf("outcome %v, %d data bytes, subject %q: want a stored pseudonymous event", res.Outcome, len(res.Record.Data), res.Record.Subject)
	}
	if got := len(res.Record.Vault) > 0; got != wantVault {
		b.Fatalf("vault present = %v, want %v", got, wantVault)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if res := p.Process(s, &m, req); res.Outcome != Stored {
			b.Fatal(res.Outcome)
		}
	}
}

func BenchmarkProcess(b *testing.B) { benchProcess(b, benchTrack, "track", false) }

func BenchmarkProcessIdentify(b *testing.B) { benchProcess(b, benchIdentify, "identify", true) }

// BenchmarkProcessAnonymous is BenchmarkProcess without consent: the
// anonymous path (coarse time, random id entropy, path markers).
func BenchmarkProcessAnonymous(b *testing.B) {
	p, s := benchPipeline(b)
	m, err := collect.DecodeMessage([]byte(strings.Replace(benchTrack, `"consent":{"analytics":true}`, `"locale2":"x"`, 1)), "track")
	if err != nil {
		b.Fatal(err)
	}
	req := &Request{ReceivedAt: time.Now(), RemoteIP: "198.51.100.23", UserAgent: m.Context.UserAgent, Source: "segment"}
	if res := p.Process(s, &m, req); res.Outcome != Stored || res.Record.Subject != "" {
		b.Fatalf("outcome %v subject %q: want a stored anonymous event", res.Outcome, res.Record.Subject)
	}
	b.SetBytes(int64(len(benchTrack)))
	b.ReportAllocs()
	for b.Loop() {
		if res := p.Process(s, &m, req); res.Outcome != Stored {
			b.Fatal(res.Outcome)
		}
	}
}

// BenchmarkProcessSensitiveOff is BenchmarkProcess with every sensitive
// layer off: the same-run baseline of the detector's cost.
func BenchmarkProcessSensitiveOff(b *testing.B) {
	off := sensitive.DefaultPolicy()
	off.Names, off.Values, off.Page = false, false, false
	benchSensitive = &off
	defer func() { benchSensitive = nil }()
	benchProcess(b, benchTrack, "track", false)
}

// BenchmarkProcessIdentifySensitiveOff is BenchmarkProcessIdentify with
// every sensitive layer off.
func BenchmarkProcessIdentifySensitiveOff(b *testing.B) {
	off := sensitive.DefaultPolicy()
	off.Names, off.Values, off.Page = false, false, false
	benchSensitive = &off
	defer func() { benchSensitive = nil }()
	benchProcess(b, benchIdentify, "identify", true)
}
