package consent

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"slices"
	"testing"

	"github.com/vigie-dev/vigie/consent/gpp"
	"github.com/vigie-dev/vigie/consent/tcf"
)

func TestConsentModeParams(t *testing.T) {
	p := DefaultPolicy()
	an, mk := set(Analytics), set(Marketing)
	tests := []struct {
		name, gcs, gcd  string
		granted, denied Set
		err             bool
	}{
		{"nothing", "", "", Set{}, Set{}, false},
		{"gcs all denied", "G100", "", Set{}, set(Analytics, Marketing), false},
		{"gcs analytics granted, ads denied", "G101", "", an, mk, false},
		{"gcs both granted (marketing needs ad_user_data too)", "G111", "", an, Set{}, false},
		{"gcs analytics denied (marketing also needs ad_user_data)", "G110", "", Set{}, an, false},
		{"gcs not set", "G1--", "", Set{}, Set{}, false},
		{"gcd value passed as gcs", "11r1r1r1r5", "", Set{}, Set{}, true},
		{"gcd granted variants", "", "11t1v1n1r5", set(Analytics, Marketing), Set{}, false},
		{"gcd denied variants", "", "11p1q1m1u5", Set{}, set(Analytics, Marketing), false},
		{"gcd one ads signal denied", "", "11v1v1v1u5", an, mk, false},
		{"gcd not set", "", "13l3l3l3l1", Set{}, Set{}, false},
		{"gcd unknown letter is not set", "", "11e1t1t1t5", an, Set{}, false},
		{"gcd analytics denied, gcs grants: denial wins", "G111", "11t1p1t1t5", set(Marketing), an, false},
		{"gcs denies, gcd grants: denial wins", "G100", "11v1v1v1v5", Set{}, set(Analytics, Marketing), false},
		{"gcs wrong prefix", "G200", "", Set{}, Set{}, true},
		{"gcs wrong flag", "G1x0", "", Set{}, Set{}, true},
		{"gcs too long", "G1001", "", Set{}, Set{}, true},
		{"gcd too short", "", "11p1t1p1t", Set{}, Set{}, true},
		{"gcd digit where a letter goes", "", "1111t1p1t5", Set{}, Set{}, true},
		{"gcd letter where a digit goes", "", "1pp1t1p1t5", Set{}, Set{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := FromConsentMode(tt.gcs, tt.gcd, p)
			if tt.err {
				if !errors.Is(err, ErrInvalidConsent) || s != (Signal{Source: SourceConsentMode}) {
					t.Fatalf("FromConsentMode = %v, %v; want ErrInvalidConsent", s, err)
				}
				return
			}
			if err != nil || s != sig(SourceConsentMode, tt.granted, tt.denied) {
				t.Errorf("FromConsentMode = %+v, %v; want granted %v denied %v", s, err, tt.granted, tt.denied)
			}
		})
	}
	// A custom mapping: marketing needs ad_storage only.
	custom := DefaultPolicy()
	custom.ConsentMode = map[Purpose][]string{Marketing: {"ad_storage"}}
	if s, _ := FromConsentMode("G110", "", custom); s != sig(SourceConsentMode, mk, Set{}) {
		t.Errorf("custom mapping: %+v", s)
	}
}

func FuzzConsentMode(f *testing.F) {
	for _, s := range [][2]string{{"G100", ""}, {"G1--", "11p1t1p1t5"}, {"", "13l3l3l3l1"}, {"G111", "11e1v1u1r5"}, {"x", "y"}} {
		f.Add(s[0], s[1])
	}
	p := DefaultPolicy()
	f.Fuzz(func(t *testing.T, gcs, gcd string) {
		s, err := FromConsentMode(gcs, gcd, p)
		if s.Source != SourceConsentMode {
			t.Fatalf("source %q", s.Source)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidConsent) || s.Granted.bits|s.Denied.bits != 0 {
				t.Fatalf("FromConsentMode = %v, %v", s, err)
			}
			return
		}
		if s.Granted.bits&s.Denied.bits != 0 || s.Granted.Has(Necessary) || s.Denied.Has(Necessary) {
			t.Fatalf("contradictory or necessary signal %+v", s)
		}
		// gcs alone never grants marketing under the default mapping (it
		// carries no ad_user_data).
		if gcd == "" && s.Granted.Has(Marketing) {
			t.Fatalf("gcs alone granted marketing: %+v", s)
		}
	})
}

type tcfFixture struct {
	Name                       string `json:"name"`
	TCString                   string `json:"tcString"`
	PurposeConsents            []int  `json:"purposeConsents"`
	PurposeLegitimateInterests []int  `json:"purposeLegitimateInterests"`
	VendorConsents             struct {
		IDs []int `json:"ids"`
	} `json:"vendorConsents"`
	VendorLegitimateInterests struct {
		IDs []int `json:"ids"`
	} `json:"vendorLegitimateInterests"`
	PublisherRestrictions []struct {
		PurposeID       int   `json:"purposeId"`
		RestrictionType int   `json:"restrictionType"`
		Vendors         []int `json:"vendors"`
	} `json:"publisherRestrictions"`
}

// fixtures loads the reference-encoded strings of the tcf and gpp packages.
func fixtures[T any](t *testing.T, path string) map[string]T {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Fixtures []json.RawMessage `json:"fixtures"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]T{}
	for _, r := range doc.Fixtures {
		var name struct{ Name string }
		var v T
		if json.Unmarshal(r, &name) != nil || json.Unmarshal(r, &v) != nil {
			t.Fatal("bad fixture")
		}
		out[name.Name] = v
	}
	return out
}

func TestFromTCF(t *testing.T) {
	fx := fixtures[tcfFixture](t, "tcf/testdata/fixtures.json")
	all := set(Analytics, Personalization, Marketing)
	def := DefaultPolicy()
	with := func(f func(*TCFMapping)) Policy { p := DefaultPolicy(); f(&p.TCF); return p }
	pubOnly := with(func(m *TCFMapping) { m.Purposes = map[Purpose][]int{Analytics: {1, 10}}; m.PublisherTC = true })
	coreOnly := with(func(m *TCFMapping) { m.Purposes = map[Purpose][]int{Analytics: {1, 10}} })

	restr := fx["publisher restrictions"]
	inRestr := func(purpose, typ, v int) bool {
		for _, r := range restr.PublisherRestrictions {
			if r.PurposeID == purpose && r.RestrictionType == typ && slices.Contains(r.Vendors, v) {
				return true
			}
		}
		return false
	}
	// Pick vendors from the fixture: consented but purpose 1 not allowed;
	// consented and unrestricted; not consented.
	var blocked, free, absent int
	for v := 1; v <= 200; v++ {
		c := slices.Contains(restr.VendorConsents.IDs, v)
		r := false
		for p := 1; p <= 11; p++ {
			r = r || inRestr(p, 0, v) || inRestr(p, 1, v) || inRestr(p, 2, v)
		}
		switch {
		case c && inRestr(1, 0, v) && blocked == 0:
			blocked = v
		case c && !r && free == 0:
			free = v
		case !c && !r && absent == 0:
			absent = v
		}
	}
	if blocked == 0 || free == 0 || absent == 0 {
		t.Fatalf("fixture lacks vendors: %d %d %d", blocked, free, absent)
	}
	vendor := func(v int) Policy { return with(func(m *TCFMapping) { m.VendorID = v }) }

	tests := []struct {
		name            string
		fixture         string
		gdpr            bool
		p               Policy
		granted, denied Set
	}{
		{"no consent denies every mapped purpose", "minimal empty consent", true, def, Set{}, all},
		{"gdpr does not apply", "minimal empty consent", false, def, Set{}, Set{}},
		{"all purposes grant all", "bitfield vendors, all purposes", true, def, all, Set{}},
		{"measurement purposes grant analytics only", "range vendors, long runs", true, def, set(Analytics), set(Personalization, Marketing)},
		{"publisher TC used when configured", "publisher TC with custom purposes", true, pubOnly, set(Analytics), Set{}},
		{"core purposes used by default", "publisher TC with custom purposes", true, coreOnly, Set{}, set(Analytics)},
		{"our vendor consented, unrestricted", "publisher restrictions", true, vendor(free), all, Set{}},
		{"our vendor not allowed purpose 1", "publisher restrictions", true, vendor(blocked), Set{}, all},
		{"our vendor without consent", "publisher restrictions", true, vendor(absent), Set{}, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := fx[tt.fixture]
			if !ok {
				t.Fatalf("no fixture %q", tt.fixture)
			}
			s, err := FromTCF(f.TCString, tt.gdpr, tt.p)
			if err != nil || s != sig(SourceTCF, tt.granted, tt.denied) {
				t.Errorf("FromTCF = %+v, %v; want granted %v denied %v", s, err, tt.granted, tt.denied)
			}
		})
	}
	// Legitimate interest: purpose 7 under RequireLI for some vendors.
	for _, v := range []int{1, 3, 9, 11} {
		if !inRestr(7, 2, v) {
			continue
		}
		p := with(func(m *TCFMapping) {
			m.VendorID, m.Purposes, m.LegitimateInterest = v, map[Purpose][]int{Marketing: {7}}, []int{7}
		})
		want := slices.Contains(restr.PurposeLegitimateInterests, 7) && slices.Contains(restr.VendorLegitimateInterests.IDs, v)
		s, _ := FromTCF(restr.TCString, true, p)
		if s.Granted.Has(Marketing) != want || s.Denied.Has(Marketing) == want {
			t.Errorf("require-LI vendor %d: %+v, want granted %v", v, s, want)
		}
		p.TCF.LegitimateInterest = nil // consent would not do: the publisher requires LI
		if s, _ := FromTCF(restr.TCString, true, p); !s.Denied.Has(Marketing) {
			t.Errorf("require-LI vendor %d without LI mapping: %+v", v, s)
		}
	}
	s, err := FromTCF("CO-not-a-tc-string", true, def)
	if !errors.Is(err, ErrInvalidConsent) || !errors.Is(err, tcf.ErrInvalid) || s != (Signal{Source: SourceTCF}) {
		t.Errorf("invalid string: %+v, %v", s, err)
	}
}

type gppFixture struct {
	GPP string `json:"gpp"`
}

func TestFromGPP(t *testing.T) {
	fx := fixtures[gppFixture](t, "gpp/testdata/fixtures.json")
	mk := set(Marketing)
	tests := []struct {
		name, fixture   string
		sid             []int
		granted, denied Set
	}{
		{"usnat opt-out denies marketing", "usnat opted out of everything", nil, Set{}, mk},
		{"usnat no opt-out says nothing", "usnat did not opt out", nil, Set{}, Set{}},
		{"usnat gpc", "usnat sharing only with gpc", []int{7}, Set{}, mk},
		{"usca sale", "usca sale opt out", nil, Set{}, mk},
		{"usva targeted", "usva targeted advertising", nil, Set{}, mk},
		{"usco", "usco sale with gpc", nil, Set{}, mk},
		{"usut", "usut targeted advertising", nil, Set{}, mk},
		{"usct", "usct sale", nil, Set{}, mk},
		{"section not applicable", "usca sale opt out", []int{7}, Set{}, Set{}},
		{"tcf section mapped", "tcf only", nil, set(Analytics), set(Personalization, Marketing)},
		{"tcf section not applicable", "tcf only", []int{7}, Set{}, Set{}},
		{"skipped section only", "uspv1 only (skipped)", nil, Set{}, Set{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := FromGPP(fx[tt.fixture].GPP, tt.sid, DefaultPolicy())
			if err != nil || s != sig(SourceGPP, tt.granted, tt.denied) {
				t.Errorf("FromGPP = %+v, %v; want granted %v denied %v", s, err, tt.granted, tt.denied)
			}
		})
	}
	if _, err := FromGPP("DBABLA~", nil, DefaultPolicy()); !errors.Is(err, ErrInvalidConsent) || !errors.Is(err, gpp.ErrInvalid) {
		t.Errorf("invalid gpp: %v", err)
	}
}

func TestFromQuery(t *testing.T) {
	tf := fixtures[tcfFixture](t, "tcf/testdata/fixtures.json")
	gf := fixtures[gppFixture](t, "gpp/testdata/fixtures.json")
	allTCF := tf["bitfield vendors, all purposes"].TCString
	optOut := gf["usnat opted out of everything"].GPP
	all := set(Analytics, Personalization, Marketing)
	tests := []struct {
		name    string
		q       url.Values
		want    []Signal
		errs    int
		outcome Outcome
		granted Set
	}{
		{"none", url.Values{}, nil, 0, Anonymous, set(Necessary)},
		{"pixel", url.Values{"consent": {"analytics"}}, []Signal{sig(SourcePixel, set(Analytics), Set{})}, 0, Pseudonymous, set(Necessary, Analytics)},
		{"tcf grants all", url.Values{"gdpr": {"1"}, "gdpr_consent": {allTCF}}, []Signal{sig(SourceTCF, all, Set{})}, 0, Pseudonymous, set(Necessary, Analytics, Personalization, Marketing)},
		{"tcf ignored when gdpr=0", url.Values{"gdpr": {"0"}, "gdpr_consent": {allTCF}}, nil, 0, Anonymous, set(Necessary)},
		{"pixel denial beats tcf grant", url.Values{"gdpr_consent": {allTCF}, "consent": {"analytics:0"}},
			[]Signal{sig(SourcePixel, Set{}, set(Analytics)), sig(SourceTCF, all, Set{})}, 0, Pseudonymous, set(Necessary, Personalization, Marketing)},
		{"gpp opt-out beats tcf grant", url.Values{"gdpr_consent": {allTCF}, "gpp": {optOut}, "gpp_sid": {"7"}},
			[]Signal{sig(SourceTCF, all, Set{}), sig(SourceGPP, Set{}, set(Marketing))}, 0, Pseudonymous, set(Necessary, Analytics, Personalization)},
		{"consent mode denial beats pixel grant", url.Values{"consent": {"analytics,marketing"}, "gcs": {"G101"}, "gcd": {"11p1t1p1p5"}},
			[]Signal{sig(SourcePixel, set(Analytics, Marketing), Set{}), sig(SourceConsentMode, set(Analytics), set(Marketing))}, 0, Pseudonymous, set(Necessary, Analytics)},
		{"invalid tcf reported, others kept", url.Values{"gdpr_consent": {"garbage!"}, "consent": {"analytics"}},
			[]Signal{sig(SourcePixel, set(Analytics), Set{})}, 1, Pseudonymous, set(Necessary, Analytics)},
		{"invalid everything", url.Values{"gdpr_consent": {"x"}, "gpp": {"y"}, "gcs": {"z"}, "consent": {"a:2"}}, nil, 4, Anonymous, set(Necessary)},
		{"invalid gpp_sid drops gpp", url.Values{"gpp": {optOut}, "gpp_sid": {"x"}}, nil, 1, Anonymous, set(Necessary)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := FromQuery(tt.q, DefaultPolicy())
			if !slices.Equal(got, tt.want) || len(errs) != tt.errs {
				t.Fatalf("FromQuery = %+v, %v; want %+v and %d errors", got, errs, tt.want, tt.errs)
			}
			for _, err := range errs {
				if !errors.Is(err, ErrInvalidConsent) {
					t.Errorf("error %v does not wrap ErrInvalidConsent", err)
				}
			}
			if d := Decide(DefaultPolicy(), got...); d.Outcome != tt.outcome || d.Granted != tt.granted {
				t.Errorf("Decide = %v; want %v %v", d, tt.outcome, tt.granted)
			}
		})
	}
}

func TestFromPayloadStandards(t *testing.T) {
	tf := fixtures[tcfFixture](t, "tcf/testdata/fixtures.json")
	gf := fixtures[gppFixture](t, "gpp/testdata/fixtures.json")
	allTCF := tf["bitfield vendors, all purposes"].TCString
	optOut := gf["usnat opted out of everything"].GPP
	tcfOnly := gf["tcf only"].GPP
	all := set(Analytics, Personalization, Marketing)
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	tests := []struct {
		name    string
		raw     string
		want    []Signal
		err     bool
		granted Set // Decide under the default policy
	}{
		{"tcf", `{"tcf":` + q(allTCF) + `}`, []Signal{sig(SourceTCF, all, Set{})}, false, set(Necessary, Analytics, Personalization, Marketing)},
		{"tcString and gdprApplies false", `{"tcString":` + q(allTCF) + `,"gdprApplies":false}`, nil, false, set(Necessary)},
		{"explicit denial beats tcf grant", `{"analytics":false,"TCF":` + q(allTCF) + `}`,
			[]Signal{sig(SourcePayload, Set{}, set(Analytics)), sig(SourceTCF, all, Set{})}, false, set(Necessary, Personalization, Marketing)},
		{"segment denial beats tcf grant", `{"categoryPreferences":{"advertising":false},"tcf":` + q(allTCF) + `}`,
			[]Signal{sig(SourceSegment, Set{}, set(Marketing)), sig(SourceTCF, all, Set{})}, false, set(Necessary, Analytics, Personalization)},
		{"gpp with sid array", `{"gpp":` + q(optOut) + `,"gppSid":[7]}`, []Signal{sig(SourceGPP, Set{}, set(Marketing))}, false, set(Necessary)},
		{"gpp sid string excludes section", `{"gpp":` + q(tcfOnly) + `,"gppSid":"7"}`, nil, false, set(Necessary)},
		{"gpp tcf section", `{"gpp":` + q(tcfOnly) + `,"gppSid":null}`, []Signal{sig(SourceGPP, set(Analytics), set(Personalization, Marketing))}, false, set(Necessary, Analytics)},
		{"consent mode object", `{"googleConsentMode":{"analytics_storage":"granted","ad_storage":"DENIED","ad_user_data":true,"other":[1],"ad_personalization":null}}`,
			[]Signal{sig(SourceConsentMode, set(Analytics), set(Marketing))}, false, set(Necessary, Analytics)},
		{"gcm booleans", `{"gcm":{"ad_storage":true,"ad_user_data":true,"ad_personalization":true}}`, []Signal{sig(SourceConsentMode, set(Marketing), Set{})}, false, set(Necessary, Marketing)},
		{"consent mode denial beats tcf grant", `{"gcm":{"analytics_storage":"denied"},"tcf":` + q(allTCF) + `}`,
			[]Signal{sig(SourceTCF, all, Set{}), sig(SourceConsentMode, Set{}, set(Analytics))}, false, set(Necessary, Personalization, Marketing)},
		{"invalid tcf keeps the others", `{"analytics":true,"tcf":"nope"}`, []Signal{sig(SourcePayload, set(Analytics), Set{})}, true, set(Necessary, Analytics)},
		{"invalid gppSid string drops gpp", `{"gpp":` + q(optOut) + `,"gppSid":"x"}`, nil, true, set(Necessary)},
		{"tcf not a string", `{"tcf":1}`, nil, true, set(Necessary)},
		{"gppSid of floats", `{"gpp":"x","gppSid":[1.5]}`, nil, true, set(Necessary)},
		{"consent mode bad value", `{"gcm":{"ad_storage":"yes"}}`, nil, true, set(Necessary)},
		{"consent mode not an object", `{"gcm":"G100"}`, nil, true, set(Necessary)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromPayload([]byte(tt.raw), DefaultPolicy())
			if tt.err != (err != nil) || (err != nil && !errors.Is(err, ErrInvalidConsent)) {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("FromPayload = %+v, want %+v", got, tt.want)
			}
			if d := Decide(DefaultPolicy(), got...); d.Granted != tt.granted {
				t.Errorf("Decide = %v, want granted %v", d, tt.granted)
			}
		})
	}
}

func TestValidateMappings(t *testing.T) {
	with := func(f func(*Policy)) Policy { p := DefaultPolicy(); f(&p); return p }
	tests := []struct {
		name string
		p    Policy
		want error
	}{
		{"vendor id too large", with(func(p *Policy) { p.TCF.VendorID = 70000 }), ErrInvalidPolicy},
		{"tcf purpose out of range", with(func(p *Policy) { p.TCF.Purposes[Analytics] = []int{0} }), ErrInvalidPolicy},
		{"li for purpose 1", with(func(p *Policy) { p.TCF.LegitimateInterest = []int{1} }), ErrInvalidPolicy},
		{"li for purpose 4", with(func(p *Policy) { p.TCF.LegitimateInterest = []int{7, 4} }), ErrInvalidPolicy},
		{"unknown purpose in tcf", with(func(p *Policy) { p.TCF.Purposes["nope"] = []int{1} }), ErrUnknownPurpose},
		{"necessary in tcf", with(func(p *Policy) { p.TCF.Purposes[Necessary] = []int{1} }), ErrInvalidPolicy},
		{"unknown consent mode signal", with(func(p *Policy) { p.ConsentMode[Analytics] = []string{"analytics"} }), ErrInvalidPolicy},
		{"unknown purpose in consent mode", with(func(p *Policy) { p.ConsentMode["nope"] = []string{"ad_storage"} }), ErrUnknownPurpose},
	}
	for _, tt := range tests {
		if err := tt.p.Validate(); !errors.Is(err, tt.want) {
			t.Errorf("%s: Validate = %v, want %v", tt.name, err, tt.want)
		}
	}
	ok := with(func(p *Policy) { p.TCF.VendorID = 1234; p.TCF.LegitimateInterest = []int{2, 7, 8, 9, 10, 11} })
	if err := ok.Validate(); err != nil {
		t.Errorf("valid mapping: %v", err)
	}
}
