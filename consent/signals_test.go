package consent

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

func TestFromPayload(t *testing.T) {
	def := DefaultPolicy()
	noGPC := DefaultPolicy()
	noGPC.HonorGPC = false
	custom := DefaultPolicy()
	custom.Categories = map[string][]Purpose{"Stats": {Analytics}, "ads": {Marketing, Personalization}}
	tests := []struct {
		name string
		raw  string
		p    Policy
		want []Signal
		err  bool
	}{
		{"absent", "", def, nil, false},
		{"browser gpc and dnt", `{"analytics":true,"gpc":true,"dnt":true}`, def,
			[]Signal{sig(SourcePayload, set(Analytics), Set{}), sig(SourceGPC, Set{}, set(Marketing)), sig(SourceDNT, Set{}, set(Marketing))}, false},
		{"gpc false is no signal", `{"gpc":false,"dnt":false}`, def, nil, false},
		{"gpc not honoured", `{"gpc":true}`, noGPC, nil, false},
		{"blank", " \n\t", def, nil, false},
		{"null", " null ", def, nil, false},
		{"empty object", "{}", def, nil, false},
		{"segment categories", `{"categoryPreferences":{"Advertising":true,"Analytics":false,"C0003":true,"Unknown":true}}`, def,
			[]Signal{sig(SourceSegment, set(Marketing, Personalization), set(Analytics))}, false},
		{"segment onetrust ids", `{"categoryPreferences":{"C0001":true,"C0002":true,"C0004":false}}`, def,
			[]Signal{sig(SourceSegment, set(Necessary, Analytics), set(Marketing))}, false},
		{"segment only unknown categories", `{"categoryPreferences":{"Foo":true,"Bar":false}}`, def, nil, false},
		{"segment null object and null flag", `{"categoryPreferences":null,"purposes":{"analytics":null}}`, def, nil, false},
		{"segment conflicting categories keep both", `{"categoryPreferences":{"marketing":true,"targeting":false}}`, def,
			[]Signal{sig(SourceSegment, set(Marketing), set(Marketing))}, false},
		{"custom categories ignore case", `{"categoryPreferences":{"STATS":true,"Ads":false,"analytics":true}}`, custom,
			[]Signal{sig(SourceSegment, set(Analytics), set(Marketing, Personalization))}, false},
		{"own top-level purposes", `{"analytics":true,"Marketing":false}`, def,
			[]Signal{sig(SourcePayload, set(Analytics), set(Marketing))}, false},
		{"own nested purposes", `{"purposes":{"personalization":true,"necessary":false,"unknown":true}}`, def,
			[]Signal{sig(SourcePayload, set(Personalization), set(Necessary))}, false},
		{"escaped key", `{"analyt\u0069cs":true}`, def, []Signal{sig(SourcePayload, set(Analytics), Set{})}, false},
		{"both kinds", `{"purposes":{"analytics":true},"categoryPreferences":{"advertising":true},"marketing":false}`, def,
			[]Signal{sig(SourceSegment, set(Marketing), Set{}), sig(SourcePayload, set(Analytics), set(Marketing))}, false},
		{"unknown top-level keys of any type", `{"version":2,"vendor":"CP...","x":{"a":[1,{"b":null}]},"y":[true]}`, def, nil, false},
		{"array", `[]`, def, nil, true},
		{"string", `"yes"`, def, nil, true},
		{"bool", `true`, def, nil, true},
		{"non-bool purpose", `{"analytics":"yes"}`, def, nil, true},
		{"non-bool category", `{"categoryPreferences":{"Analytics":1}}`, def, nil, true},
		{"non-bool unknown category", `{"categoryPreferences":{"Foo":"x"}}`, def, nil, true},
		{"categories not an object", `{"categoryPreferences":[]}`, def, nil, true},
		{"purposes not an object", `{"purposes":true}`, def, nil, true},
		{"non-bool in purposes", `{"purposes":{"foo":"bar"}}`, def, nil, true},
		{"truncated", `{"analytics":true`, def, nil, true},
		{"trailing data", `{"analytics":true} {}`, def, nil, true},
		{"duplicate key", `{"analytics":true,"analytics":false}`, def, nil, true},
		{"invalid utf-8", "{\"analytics\xff\":true}", def, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromPayload([]byte(tt.raw), tt.p)
			if tt.err {
				if !errors.Is(err, ErrInvalidConsent) || got != nil {
					t.Fatalf("FromPayload = %v, %v; want ErrInvalidConsent", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("FromPayload = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestFromPayloadErrorsHideInput(t *testing.T) {
	for _, raw := range []string{
		`{"categoryPreferences":{"jane@example.com":"x"}}`,
		`{"jane@example.com" 1}`,
		`{"a":"jane@example.com`,
	} {
		_, err := FromPayload([]byte(raw), DefaultPolicy())
		if err == nil || strings.Contains(err.Error(), "jane") {
			t.Errorf("%s: err = %v; want an error without the input", raw, err)
		}
	}
}

func TestFromPayloadAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool is randomised under -race")
	}
	p := DefaultPolicy()
	for _, tt := range []struct {
		raw string
		max float64
	}{
		{`{}`, 0},
		{`{"categoryPreferences":{"Advertising":true,"Analytics":false,"C0003":true}}`, 1},
	} {
		raw := []byte(tt.raw)
		n := testing.AllocsPerRun(100, func() { _, _ = FromPayload(raw, p) })
		if n > tt.max {
			t.Errorf("%s: %v allocs, want <= %v", tt.raw, n, tt.max)
		}
	}
}

func TestFromHeaders(t *testing.T) {
	noGPC, noDNT := DefaultPolicy(), DefaultPolicy()
	noGPC.HonorGPC, noDNT.HonorDNT = false, false
	gpc := sig(SourceGPC, Set{}, set(Marketing))
	dnt := sig(SourceDNT, Set{}, set(Marketing))
	tests := []struct {
		name string
		h    map[string]string
		p    Policy
		want []Signal
	}{
		{"none", nil, DefaultPolicy(), nil},
		{"gpc", map[string]string{"Sec-GPC": "1"}, DefaultPolicy(), []Signal{gpc}},
		{"gpc spaces", map[string]string{"sec-gpc": " 1 "}, DefaultPolicy(), []Signal{gpc}},
		{"gpc zero", map[string]string{"Sec-GPC": "0"}, DefaultPolicy(), nil},
		{"gpc garbage", map[string]string{"Sec-GPC": "yes"}, DefaultPolicy(), nil},
		{"dnt", map[string]string{"DNT": "1"}, DefaultPolicy(), []Signal{dnt}},
		{"both", map[string]string{"DNT": "1", "Sec-GPC": "1"}, DefaultPolicy(), []Signal{gpc, dnt}},
		{"gpc not honoured", map[string]string{"DNT": "1", "Sec-GPC": "1"}, noGPC, []Signal{dnt}},
		{"dnt not honoured", map[string]string{"DNT": "1", "Sec-GPC": "1"}, noDNT, []Signal{gpc}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			if got := FromHeaders(h, tt.p); !slices.Equal(got, tt.want) {
				t.Errorf("FromHeaders = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFromPixel(t *testing.T) {
	nonNecessary := set(Analytics, Personalization, Marketing)
	tests := []struct {
		v       string
		granted Set
		denied  Set
		err     bool
	}{
		{"", Set{}, Set{}, false},
		{" , ,", Set{}, Set{}, false},
		{"analytics", set(Analytics), Set{}, false},
		{"analytics,marketing:0", set(Analytics), set(Marketing), false},
		{"Analytics=1, marketing = 0 ,personalization:1", set(Analytics, Personalization), set(Marketing), false},
		{"analytics,", set(Analytics), Set{}, false},
		{"none", Set{}, nonNecessary, false},
		{"0", Set{}, nonNecessary, false},
		{"NONE,analytics", set(Analytics), nonNecessary, false},
		{"all", set(Necessary, Analytics, Personalization, Marketing), Set{}, false},
		{"1,marketing:0", set(Necessary, Analytics, Personalization, Marketing), set(Marketing), false},
		{"unknown,analytics", set(Analytics), Set{}, false},
		{"analytics:2", Set{}, Set{}, true},
		{"analytics:", Set{}, Set{}, true},
		{":1", Set{}, Set{}, true},
		{"analytics:1:0", Set{}, Set{}, true},
		{"none:1", Set{}, Set{}, true},
		{strings.Repeat("analytics,", 200), Set{}, Set{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.v, func(t *testing.T) {
			got, err := FromPixel(tt.v)
			if tt.err != (err != nil) || (err != nil && !errors.Is(err, ErrInvalidConsent)) {
				t.Fatalf("FromPixel err = %v, want error %v", err, tt.err)
			}
			want := sig(SourcePixel, tt.granted, tt.denied)
			if got != want {
				t.Errorf("FromPixel = %+v, want %+v", got, want)
			}
		})
	}
	// "none" combined with a grant leaves only necessary (denial wins).
	s, _ := FromPixel("none,analytics")
	if d := Decide(DefaultPolicy(), s); d.Granted != set(Necessary) || d.Outcome != Anonymous {
		t.Errorf("none,analytics decided %v", d)
	}
}

// pixelString formats a signal in the pixel format.
func pixelString(s Signal) string {
	var parts []string
	parts = append(parts, s.Granted.Names()...)
	for _, n := range s.Denied.Names() {
		parts = append(parts, n+":0")
	}
	return strings.Join(parts, ",")
}

func FuzzFromPixel(f *testing.F) {
	for _, s := range []string{"", "analytics", "analytics,marketing:0", "none", "all,marketing=0", "x:2", " Analytics = 1 ,", "0,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := FromPixel(v)
		if s.Source != SourcePixel {
			t.Fatalf("source %q", s.Source)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidConsent) {
				t.Fatalf("error %v does not wrap ErrInvalidConsent", err)
			}
			return
		}
		if (s.Granted.bits|s.Denied.bits)&^allBits() != 0 {
			t.Fatalf("unregistered bits: %+v", s)
		}
		back, err := FromPixel(pixelString(s))
		if err != nil || back != s {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", v, s, pixelString(s), back, err)
		}
	})
}

func FuzzFromPayload(f *testing.F) {
	for _, s := range []string{
		"", "null", "{}", "[]",
		`{"categoryPreferences":{"Advertising":true,"Analytics":false,"C0003":true}}`,
		`{"purposes":{"analytics":true},"marketing":false,"version":[1,{"a":null}]}`,
		`{"analytics":"yes"}`, `{"analytics":true,"analytics":false}`, `{"a":1} x`,
		`{"tcf":"CQKkvwtQdas4BAKACAENFBEAAAAAAAAAAAqIAAAAAAAA.IAAA","gdprApplies":true,"analytics":true}`,
		`{"gpp":"DBABLA~CAAVAAAAAABA.QA","gppSid":[7]}`, `{"gpp":"DBABLA~CAAVAAAAAABA.QA","gppSid":"7,8"}`,
		`{"gcm":{"ad_storage":"granted","analytics_storage":false,"x":null}}`,
	} {
		f.Add([]byte(s))
	}
	p := DefaultPolicy()
	f.Fuzz(func(t *testing.T, raw []byte) {
		sigs, err := FromPayload(raw, p)
		if err != nil && !errors.Is(err, ErrInvalidConsent) {
			t.Fatalf("FromPayload error %v does not wrap ErrInvalidConsent", err)
		}
		if err != nil && sigs == nil {
			return
		}
		// Signals come only from valid JSON (with an error only when a
		// consent string inside could not be decoded).
		if len(strings.TrimSpace(string(raw))) > 0 && !jsontext.Value(raw).IsValid() {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		for i, s := range sigs {
			if !slices.Contains([]Source{SourceSegment, SourcePayload, SourceTCF, SourceGPP, SourceConsentMode}, s.Source) || (s.Granted.bits|s.Denied.bits) == 0 {
				t.Fatalf("bad signal %+v", s)
			}
			if i > 0 && s.Source == sigs[i-1].Source {
				t.Fatalf("duplicate source %q", s.Source)
			}
		}
		if d := Decide(p, sigs...); !d.Granted.Has(Necessary) {
			t.Fatalf("necessary not granted: %v", d)
		}
	})
}
