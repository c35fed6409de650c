package consent

import (
	"net/http"
	"testing"
)

func BenchmarkDecide(b *testing.B) {
	p := DefaultPolicy()
	signals := []Signal{
		sig(SourceSegment, set(Analytics, Marketing), set(Personalization)),
		sig(SourcePayload, set(Analytics), Set{}),
		sig(SourceGPC, Set{}, set(Marketing)),
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Decide(p, signals...)
	}
}

func BenchmarkFromPayload(b *testing.B) {
	p := DefaultPolicy()
	for _, bc := range []struct{ name, raw string }{
		{"segment", `{"categoryPreferences":{"Advertising":true,"Analytics":false,"Functional":true,"C0001":true}}`},
		{"own", `{"purposes":{"analytics":true,"marketing":false}}`},
		{"empty", `{}`},
		{"tcf", `{"tcf":"CQMONwtQdd_0BALADBENFBEMAP_gAEPgAAYgDIES_7zFL5yYDQl8Ts-Sjpj1D57pYzmhqnVlljZ4EjsLTSLk3mkITRjN7R0QvUyPV858nASwwqKvC2UoIIjQQ7VGjYkCQx1ZEH24UXFdGTAVOhImnhErDCM646AA.IAAA","gdprApplies":true}`},
		{"gcm", `{"googleConsentMode":{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"denied","ad_personalization":"denied"}}`},
	} {
		raw := []byte(bc.raw)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := FromPayload(raw, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFromPixel(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromPixel("analytics,personalization:1,marketing:0"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromHeaders(b *testing.B) {
	p := DefaultPolicy()
	h := http.Header{"Sec-Gpc": {"1"}, "User-Agent": {"x"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = FromHeaders(h, p)
	}
}

func BenchmarkFromConsentManagement(b *testing.B) {
	p := DefaultPolicy()
	for _, bc := range []struct{ name, raw string }{
		{"onetrust", `{"provider":"oneTrust","allowedConsentIds":["C0001","C0002","C0003"],"deniedConsentIds":["C0004","C0005"],"resolutionStrategy":"and"}`},
		{"iubenda", `{"provider":"iubenda","allowedConsentIds":["1","4"],"deniedConsentIds":["2","3","5"]}`},
	} {
		raw := []byte(bc.raw)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := FromConsentManagement(raw, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
