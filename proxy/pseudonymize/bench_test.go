package pseudonymize

import (
	"fmt"
	"strings"
	"testing"
)

func BenchmarkID(b *testing.B) {
	p := newTestP(b)
	buf := make([]byte, 0, 32)
	b.Run("AppendID", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = p.AppendID(buf[:0], "site-1", AnonymousID, "9b2c7e4a-1f3d-4c5e-8a6b-0d9e8f7a6b5c")
		}
	})
	b.Run("ID", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = p.ID("site-1", UserID, "user-42")
		}
	})
}

func BenchmarkDevice(b *testing.B) {
	p := newTestP(b)
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		p.Device(uaChromeWin)
		for b.Loop() {
			_ = p.Device(uaChromeWin)
		}
	})
	b.Run("uncached", func(b *testing.B) {
		uas := make([]string, 4096)
		for i := range uas {
			uas[i] = fmt.Sprintf("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.%d.0 Safari/537.36", i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = parseDevice(uas[i%len(uas)])
			i++
		}
	})
	b.Run("crawlerMatch", func(b *testing.B) {
		idx := crawlers()
		b.ReportAllocs()
		for b.Loop() {
			_ = idx.match(uaChromeWin)
		}
	})
}

func BenchmarkScrubURL(b *testing.B) {
	p := newTestP(b)
	for _, bc := range []struct{ name, url string }{
		{"clean", "https://shop.example.com/products/blue-shoes?utm_source=newsletter&utm_medium=email&utm_campaign=spring"},
		{"dirty", "https://shop.example.com/u/jane@doe.org/cart?utm_term=call+0612345678&email=a@b.co&gclid=Cj0KCQ&sid=8f7d6a5c4b3e2f1a0b9c8d7e#top"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.ScrubURL(bc.url, false, nil)
			}
		})
	}
}

func BenchmarkScrubText(b *testing.B) {
	for _, bc := range []struct{ name, s string }{
		{"clean", "Blue running shoes – Spring collection 2026 | Acme Store"},
		{"digits", "Order placed on 2026-11-26 at 10:30 for 1,299.00 EUR (v1.2.3)"},
		{"dirty", "Contact jane.doe@example.com or +33 6 12 34 56 78, session 8f7d6a5c4b3e2f1a0b9c8d7e6f5a"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.s)))
			for b.Loop() {
				_ = ScrubText(bc.s, nil)
			}
		})
	}
}

func BenchmarkScrubProperties(b *testing.B) {
	p := newTestP(b)
	raw := []byte(`{"title":"Blue running shoes","price":129.9,"currency":"EUR","url":"https://shop.example.com/p/blue?utm_source=nl&email=x@y.co",` +
		`"email":"jane@doe.org","items":[{"sku":"SKU-123","qty":2,"name":"Shoe"},{"sku":"SKU-456","qty":1}],"note":"call me at 0612345678","in_stock":true}`)
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		var err error
		if dst, err = p.ScrubProperties(dst[:0], raw, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSplitTraits(b *testing.B) {
	p := newTestP(b)
	raw := []byte(`{"email":"jane@doe.org","firstName":"Jane","plan":"pro","logins":12,"company":{"size":50,"industry":"retail"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := p.SplitTraits(raw, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScrubTextWorstCase measures adversarial 32 KB texts (the event
// size limit): number spans that never classify, phone candidates past the
// parse budget, deep encodings, cue words without names.
func BenchmarkScrubTextWorstCase(b *testing.B) {
	n := 32 << 10
	for _, bc := range []struct{ name, unit string }{
		{"dots", "1."}, {"zeros", "0 "}, {"phones", "0171-123 45 67 "}, {"plus", "+33 6 1 2 3 4 "},
		{"percent", "%25"}, {"at", "a@b."}, {"dear", "Dear "}, {"colons", "ab:cd:"}, {"entities", "&amp;"},
	} {
		s := strings.Repeat(bc.unit, n/len(bc.unit))
		ScrubText(s, nil) // the phone-number metadata's first use is not measured
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				_ = ScrubText(s, nil)
			}
		})
	}
}

func BenchmarkScrubTextClasses(b *testing.B) {
	for _, bc := range []struct{ name, s string }{
		{"encoded", "Contact jane.doe%2540example.org or jane&#64;example.org"},
		{"nbspPhone", "Call +33\u00a06\u00a012\u00a034\u00a056\u00a078 or 0171-123 45 67"},
		{"ids", "IBAN FR76 3000 6000 0112 3456 7890 189, card 4111 1111 1111 1111, NIR 1 85 05 78 006 084 91"},
		{"names", "Dear Jane Doe, thanks from Mme Dupont"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.s)))
			for b.Loop() {
				_ = ScrubText(bc.s, nil)
			}
		})
	}
}
