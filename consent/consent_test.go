package consent

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func set(ps ...Purpose) Set { return NewSet(ps...) }

func sig(src Source, granted, denied Set) Signal {
	return Signal{Source: src, Granted: granted, Denied: denied}
}

// explicitSources are every source that is not gpc/dnt, plus an unknown one
// (treated as explicit).
var explicitSources = []Source{SourcePayload, SourceSegment, SourcePixel, SourceLedger, SourceTCF, SourceConsentMode, "future"}

// withRegistry runs f and restores the purpose registry afterwards.
func withRegistry(t *testing.T) {
	t.Helper()
	saved := registry.Load()
	t.Cleanup(func() { registry.Store(saved) })
}

func TestDecide(t *testing.T) {
	def := DefaultPolicy()
	with := func(f func(*Policy)) Policy { p := DefaultPolicy(); f(&p); return p }
	optOut := with(func(p *Policy) { p.Defaults = set(Necessary, Analytics, Marketing) })
	drop := with(func(p *Policy) { p.Unconsented = Drop })
	noGPC := with(func(p *Policy) { p.HonorGPC = false })
	noDNT := with(func(p *Policy) { p.HonorDNT = false })
	gpc := sig(SourceGPC, Set{}, set(Marketing))
	dnt := sig(SourceDNT, Set{}, set(Marketing))

	type tc struct {
		name    string
		p       Policy
		signals []Signal
		out     Outcome
		granted Set
		reason  string
	}
	tests := []tc{
		{"rule1 no signal", def, nil, Anonymous, set(Necessary), reasonNoSignal},
		{"rule1 no signal drop policy", drop, nil, Drop, set(Necessary), reasonNoSignal},
		{"rule1 opt-out defaults", optOut, nil, Pseudonymous, set(Necessary, Analytics, Marketing), reasonDefaultGrant},
		{"rule2 empty explicit signal counts as none", def, []Signal{sig(SourcePayload, Set{}, Set{})}, Anonymous, set(Necessary), reasonNoSignal},
		{"rule2 union of grants across sources", def, []Signal{sig(SourceSegment, set(Analytics), Set{}), sig(SourcePixel, set(Marketing), Set{})}, Pseudonymous, set(Necessary, Analytics, Marketing), reasonExplicitGrant},
		{"rule2 denial beats other source's grant", def, []Signal{sig(SourcePayload, set(Analytics, Marketing), Set{}), sig(SourceLedger, Set{}, set(Marketing))}, Pseudonymous, set(Necessary, Analytics), reasonExplicitGrant},
		{"rule2 denial beats grant in same signal", def, []Signal{sig(SourceTCF, set(Analytics), set(Analytics))}, Anonymous, set(Necessary), reasonExplicitDeny},
		{"rule2 denial beats default", optOut, []Signal{sig(SourceConsentMode, Set{}, set(Analytics, Marketing))}, Anonymous, set(Necessary), reasonExplicitDeny},
		{"rule2 denial order independent", def, []Signal{sig(SourceLedger, Set{}, set(Analytics)), sig(SourcePayload, set(Analytics), Set{})}, Anonymous, set(Necessary), reasonExplicitDeny},
		{"rule2 explicit denial drop policy", with(func(p *Policy) { p.Unconsented = Drop; p.Defaults = set(Necessary, Analytics) }), []Signal{sig(SourcePixel, Set{}, set(Analytics))}, Drop, set(Necessary), reasonExplicitDeny},
		{"rule2 signals but no identifying grant", def, []Signal{sig(SourcePayload, set(Necessary), set(Marketing))}, Anonymous, set(Necessary), reasonNoIdentifying},
		{"rule3 gpc beats explicit marketing grant", def, []Signal{sig(SourcePayload, set(Marketing), Set{}), gpc}, Anonymous, set(Necessary), reasonGPC},
		{"rule3 gpc not honoured", noGPC, []Signal{sig(SourcePayload, set(Marketing), Set{}), gpc}, Pseudonymous, set(Necessary, Marketing), reasonExplicitGrant},
		{"rule3 gpc removes only marketing", def, []Signal{gpc, sig(SourceSegment, set(Analytics, Marketing), Set{})}, Pseudonymous, set(Necessary, Analytics), reasonExplicitGrant},
		{"rule3 gpc beats default marketing", with(func(p *Policy) { p.Defaults = set(Necessary, Marketing) }), []Signal{gpc}, Anonymous, set(Necessary), reasonGPC},
		{"rule3 gpc never grants", def, []Signal{sig(SourceGPC, set(Analytics), Set{})}, Anonymous, set(Necessary), reasonNoSignal},
		{"rule3 dnt beats explicit marketing grant", def, []Signal{sig(SourcePixel, set(Marketing), Set{}), dnt}, Anonymous, set(Necessary), reasonDNT},
		{"rule3 dnt not honoured", noDNT, []Signal{sig(SourcePixel, set(Marketing), Set{}), dnt}, Pseudonymous, set(Necessary, Marketing), reasonExplicitGrant},
		{"rule3 dnt never grants", def, []Signal{sig(SourceDNT, set(Marketing), Set{})}, Anonymous, set(Necessary), reasonNoSignal},
		{"rule3 gpc honoured while dnt is not", noDNT, []Signal{sig(SourcePayload, set(Marketing), Set{}), gpc, dnt}, Anonymous, set(Necessary), reasonGPC},
		{"rule3 explicit denial reported before gpc", optOut, []Signal{sig(SourcePayload, Set{}, set(Analytics)), gpc}, Anonymous, set(Necessary), reasonExplicitDeny},
		{"rule4 necessary cannot be denied", def, []Signal{sig(SourcePayload, Set{}, set(Necessary))}, Anonymous, set(Necessary), reasonNoIdentifying},
		{"rule4 necessary without defaults", with(func(p *Policy) { p.Defaults = Set{} }), nil, Anonymous, set(Necessary), reasonNoSignal},
		{"rule5 custom identifying", with(func(p *Policy) { p.Identifying = set(Marketing) }), []Signal{sig(SourcePayload, set(Analytics), Set{})}, Anonymous, set(Necessary, Analytics), reasonNoIdentifying},
		{"rule5 empty identifying never pseudonymous", with(func(p *Policy) { p.Identifying = Set{} }), []Signal{sig(SourcePayload, set(Analytics), Set{})}, Anonymous, set(Necessary, Analytics), reasonNoIdentifying},
		{"rule5 necessary in identifying is ignored", with(func(p *Policy) { p.Identifying = set(Necessary) }), nil, Anonymous, set(Necessary), reasonNoSignal},
		{"rule5 invalid unconsented falls back to anonymous", with(func(p *Policy) { p.Unconsented = Pseudonymous }), nil, Anonymous, set(Necessary), reasonNoSignal},
		{"rule5 default plus explicit grant reports explicit", optOut, []Signal{sig(SourcePayload, set(Analytics), Set{})}, Pseudonymous, set(Necessary, Analytics, Marketing), reasonExplicitGrant},
	}
	for _, src := range explicitSources {
		tests = append(tests,
			tc{"grant from " + string(src), def, []Signal{sig(src, set(Personalization), Set{})}, Pseudonymous, set(Necessary, Personalization), reasonExplicitGrant},
			tc{"deny from " + string(src), optOut, []Signal{sig(src, Set{}, set(Analytics, Marketing))}, Anonymous, set(Necessary), reasonExplicitDeny},
			tc{"gpc beats grant from " + string(src), def, []Signal{sig(src, set(Marketing), Set{}), gpc}, Anonymous, set(Necessary), reasonGPC},
			tc{"dnt beats grant from " + string(src), def, []Signal{dnt, sig(src, set(Marketing), Set{})}, Anonymous, set(Necessary), reasonDNT},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.p, tt.signals...)
			want := Decision{Outcome: tt.out, Granted: tt.granted, Reason: tt.reason}
			if d != want {
				t.Errorf("Decide = %v, want %v", d, want)
			}
		})
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p := DefaultPolicy()
	signals := []Signal{sig(SourceSegment, set(Analytics), set(Marketing)), sig(SourceGPC, Set{}, set(Marketing))}
	if n := testing.AllocsPerRun(100, func() { _ = Decide(p, signals...) }); n != 0 {
		t.Errorf("Decide allocates %v times per call", n)
	}
}

// FuzzDecide checks the precedence invariants on arbitrary sets.
func FuzzDecide(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), true)
	f.Add(uint64(0b1110), uint64(0b0100), uint64(0b1000), uint64(0b0010), false)
	f.Fuzz(func(t *testing.T, defaults, grant, deny, ident uint64, gpcOn bool) {
		all := allBits()
		p := DefaultPolicy()
		p.Defaults, p.Identifying, p.HonorGPC = Set{defaults & all}, Set{ident & all}, gpcOn
		g, dn := Set{grant & all}, Set{deny & all}
		d := Decide(p, sig(SourcePayload, g, dn), sig(SourceGPC, Set{}, set(Marketing)))
		if !d.Granted.Has(Necessary) {
			t.Fatal("necessary not granted")
		}
		if d.Granted.bits&dn.bits&^necessaryBit != 0 {
			t.Fatalf("denied purpose granted: %v", d)
		}
		if d.Granted.bits&^(p.Defaults.bits|g.bits|necessaryBit) != 0 {
			t.Fatalf("purpose granted from nowhere: %v", d)
		}
		if gpcOn && d.Granted.Has(Marketing) {
			t.Fatalf("gpc ignored: %v", d)
		}
		if (d.Outcome == Pseudonymous) != d.Granted.HasAny(Set{p.Identifying.bits &^ necessaryBit}) {
			t.Fatalf("outcome %v inconsistent with granted %v", d.Outcome, d.Granted)
		}
		// Adding a denial never widens the grant.
		d2 := Decide(p, sig(SourcePayload, g, dn), sig(SourceGPC, Set{}, set(Marketing)), sig(SourceLedger, Set{}, set(Analytics)))
		if !d.Granted.HasAll(d2.Granted) {
			t.Fatalf("denial widened grant: %v -> %v", d, d2)
		}
	})
}

func TestSet(t *testing.T) {
	tests := []struct {
		name  string
		s     Set
		names []string
		has   []Purpose
		lacks []Purpose
	}{
		{"empty", NewSet(), nil, nil, []Purpose{Necessary, Analytics}},
		{"sorted names", NewSet(Personalization, Marketing, Analytics), []string{"analytics", "marketing", "personalization"}, []Purpose{Analytics, Marketing}, []Purpose{Necessary}},
		{"duplicates collapse", NewSet(Analytics, Analytics), []string{"analytics"}, []Purpose{Analytics}, []Purpose{Marketing}},
		{"unknown ignored", NewSet("nope", Necessary), []string{"necessary"}, []Purpose{Necessary}, []Purpose{"nope", "Necessary"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Names(); !slices.Equal(got, tt.names) {
				t.Errorf("Names = %v, want %v", got, tt.names)
			}
			if tt.s.Len() != len(tt.names) {
				t.Errorf("Len = %d, want %d", tt.s.Len(), len(tt.names))
			}
			if got := tt.s.String(); got != strings.Join(tt.names, ",") {
				t.Errorf("String = %q", got)
			}
			for _, p := range tt.has {
				if !tt.s.Has(p) {
					t.Errorf("Has(%q) = false", p)
				}
			}
			for _, p := range tt.lacks {
				if tt.s.Has(p) {
					t.Errorf("Has(%q) = true", p)
				}
			}
		})
	}
	a, ab := NewSet(Analytics), NewSet(Analytics, Marketing)
	if !ab.HasAll(a) || a.HasAll(ab) || !ab.HasAll(Set{}) || !a.HasAny(ab) || a.HasAny(NewSet(Marketing)) {
		t.Error("HasAll/HasAny wrong")
	}
}

func TestParseSet(t *testing.T) {
	s, err := ParseSet(" Analytics", "marketing ")
	if want := NewSet(Analytics, Marketing); err != nil || s != want {
		t.Fatalf("ParseSet = %v, %v", s, err)
	}
	if _, err := ParseSet("analytics", "analytcs"); !errors.Is(err, ErrUnknownPurpose) {
		t.Errorf("typo: err = %v, want ErrUnknownPurpose", err)
	}
}

func TestRegister(t *testing.T) {
	withRegistry(t)
	if err := Register("crm_sync", "crm_sync", Analytics); err != nil {
		t.Fatal(err)
	}
	s := NewSet("crm_sync", Analytics)
	if !s.Has("crm_sync") || !slices.Equal(s.Names(), []string{"analytics", "crm_sync"}) {
		t.Errorf("custom purpose not in set: %v", s.Names())
	}
	if sg, err := FromPixel("CRM_SYNC,analytics:0"); err != nil || !sg.Granted.Has("crm_sync") {
		t.Errorf("pixel does not know custom purpose: %v %v", sg, err)
	}
	if sg, _ := FromPixel("none"); !sg.Denied.Has("crm_sync") || sg.Denied.Has(Necessary) {
		t.Errorf("none must deny custom purposes but not necessary: %v", sg.Denied)
	}
	for _, bad := range []Purpose{"", "Upper", "1abc", "a b", "é", Purpose(strings.Repeat("a", 65))} {
		if err := Register(bad); !errors.Is(err, ErrInvalidPurpose) {
			t.Errorf("Register(%q) = %v, want ErrInvalidPurpose", bad, err)
		}
	}
	before := len(*registry.Load())
	var many []Purpose
	for i := range maxPurposes {
		many = append(many, Purpose("p"+strings.Repeat("x", i)))
	}
	if err := Register(many...); !errors.Is(err, ErrInvalidPurpose) {
		t.Errorf("overfull registry: err = %v", err)
	}
	if after := len(*registry.Load()); after != before {
		t.Errorf("failed Register changed the registry: %d -> %d", before, after)
	}
	if err := Register(many[:maxPurposes-before]...); err != nil {
		t.Errorf("filling the registry exactly: %v", err)
	}
	if got := (Set{allBits()}).Len(); got != maxPurposes {
		t.Errorf("full registry: allBits has %d purposes", got)
	}
}

func TestOutcome(t *testing.T) {
	for _, o := range []Outcome{Drop, Anonymous, Pseudonymous} {
		got, err := ParseOutcome(strings.ToUpper(o.String()))
		if err != nil || got != o {
			t.Errorf("ParseOutcome(%q) = %v, %v", o, got, err)
		}
	}
	for _, s := range []string{"", "keep", "drop "} {
		if _, err := ParseOutcome(s); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("ParseOutcome(%q) err = %v", s, err)
		}
	}
	if _, err := Outcome(0).MarshalText(); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("MarshalText(0) err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	with := func(f func(*Policy)) Policy { p := DefaultPolicy(); f(&p); return p }
	tests := []struct {
		name string
		p    Policy
		want []error // nil: valid
	}{
		{"default", DefaultPolicy(), nil},
		{"drop", with(func(p *Policy) { p.Unconsented = Drop }), nil},
		{"zero unconsented", with(func(p *Policy) { p.Unconsented = 0 }), []error{ErrInvalidPolicy}},
		{"pseudonymous unconsented", with(func(p *Policy) { p.Unconsented = Pseudonymous }), []error{ErrInvalidPolicy}},
		{"necessary identifying", with(func(p *Policy) { p.Identifying = set(Necessary, Analytics) }), []error{ErrInvalidPolicy}},
		{"unknown purpose in category", with(func(p *Policy) { p.Categories["Stats"] = []Purpose{"stats"} }), []error{ErrUnknownPurpose}},
		{"case-duplicate categories", with(func(p *Policy) { p.Categories["ANALYTICS"] = []Purpose{Marketing} }), []error{ErrInvalidPolicy}},
		{"empty category", with(func(p *Policy) { p.Categories[" "] = []Purpose{Analytics} }), []error{ErrInvalidPolicy}},
		{"several problems", with(func(p *Policy) { p.Unconsented = 0; p.Categories["x"] = []Purpose{"y"} }), []error{ErrInvalidPolicy, ErrUnknownPurpose}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("Validate = %v, want errors %v", err, tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Validate = %v, want it to wrap %v", err, w)
				}
			}
		})
	}
}

func TestPolicyYAML(t *testing.T) {
	p := DefaultPolicy()
	src := `
unconsented: drop
defaults: [necessary, Analytics]
identifying: marketing, personalization
honor_gpc: false
categories:
  Stats: [analytics]
`
	if err := yaml.Unmarshal([]byte(src), &p); err != nil {
		t.Fatal(err)
	}
	if p.Unconsented != Drop || p.Defaults != set(Necessary, Analytics) || p.Identifying != set(Marketing, Personalization) || p.HonorGPC || !p.HonorDNT {
		t.Errorf("decoded policy wrong: %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}

	out, err := yaml.Marshal(DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var back Policy
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, DefaultPolicy()) {
		t.Errorf("round trip:\n%s\ngot %+v", out, back)
	}

	for _, bad := range []struct {
		src  string
		want error
	}{
		{"defaults: [necessary, nope]", ErrUnknownPurpose},
		{"defaults: {a: b}", ErrInvalidPolicy},
		{"unconsented: maybe", ErrInvalidPolicy},
	} {
		var p Policy
		if err := yaml.Unmarshal([]byte(bad.src), &p); !errors.Is(err, bad.want) {
			t.Errorf("%q: err = %v, want %v", bad.src, err, bad.want)
		}
	}
}

func TestDecisionString(t *testing.T) {
	d := Decide(DefaultPolicy(), sig(SourcePayload, set(Analytics), Set{}))
	if got, want := d.String(), `pseudonymous granted=analytics,necessary reason="explicit grant"`; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestDefaultPurposes(t *testing.T) {
	var names []Purpose
	for _, pi := range DefaultPurposes() {
		if pi.Description == "" {
			t.Errorf("%s has no description", pi.Name)
		}
		names = append(names, pi.Name)
	}
	if NewSet(names...) != (Set{allBits()}) || len(names) != 4 {
		t.Errorf("DefaultPurposes = %v, want the four built-ins", names)
	}
}

func TestDecisionLimit(t *testing.T) {
	def := DefaultPolicy()
	drop := DefaultPolicy()
	drop.Unconsented = Drop
	analytics := set(Necessary, Analytics)
	cases := []struct {
		name    string
		p       Policy
		d       Decision
		want    Outcome
		granted string
	}{
		{"analytics kept", def, Decision{Outcome: Pseudonymous, Granted: set(Necessary, Analytics, Marketing, Personalization)}, Pseudonymous, "analytics,necessary"},
		{"marketing only becomes anonymous", def, Decision{Outcome: Pseudonymous, Granted: set(Necessary, Marketing)}, Anonymous, "necessary"},
		{"or dropped", drop, Decision{Outcome: Pseudonymous, Granted: set(Necessary, Personalization)}, Drop, "necessary"},
		{"anonymous stays", def, Decision{Outcome: Anonymous, Granted: set(Necessary)}, Anonymous, "necessary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.d.Limit(tc.p, analytics)
			if got.Outcome != tc.want || got.Granted.String() != tc.granted {
				t.Errorf("Limit = %v, want %v granted=%s", got, tc.want, tc.granted)
			}
		})
	}
}

// TestSensitivePurpose: the purpose "sensitive" is not built in (nor a
// default one), can never be a default purpose, and once registered a payload grants it explicitly, on
// top of an identifying purpose, without making an event pseudonymous by
// itself.
func TestSensitivePurpose(t *testing.T) {
	for _, pi := range DefaultPurposes() {
		if pi.Name == Sensitive {
			t.Fatal("sensitive is among the default purposes")
		}
	}
	if err := Register(Sensitive); err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	bad := DefaultPolicy()
	bad.Defaults = NewSet(Necessary, Sensitive)
	if err := bad.Validate(); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("sensitive as a default purpose: %v", err)
	}
	for _, tt := range []struct {
		payload   string
		outcome   Outcome
		sensitive bool
	}{
		{`{"analytics":true,"sensitive":true}`, Pseudonymous, true},
		{`{"analytics":true}`, Pseudonymous, false},
		{`{"sensitive":true}`, Anonymous, true},
		{`{"analytics":true,"sensitive":false}`, Pseudonymous, false},
	} {
		sigs, err := FromPayload([]byte(tt.payload), p)
		if err != nil {
			t.Fatal(err)
		}
		d := Decide(p, sigs...)
		if d.Outcome != tt.outcome || d.Granted.Has(Sensitive) != tt.sensitive {
			t.Errorf("%s: %v, want %v with sensitive %v", tt.payload, d, tt.outcome, tt.sensitive)
		}
	}
	// A blanket grant is not the explicit consent special categories need.
	for v, want := range map[string]bool{"all": false, "1": false, "1,sensitive": true, "analytics,sensitive:1": true} {
		sig, err := FromPixel(v)
		if err != nil || sig.Granted.Has(Sensitive) != want {
			t.Errorf("FromPixel(%q) = %v, %v: sensitive granted should be %v", v, sig, err, want)
		}
	}
}
