package consent

import (
	"errors"
	"testing"
)

func TestFromConsentManagement(t *testing.T) {
	def := DefaultPolicy()
	ketch := DefaultPolicy()
	ketch.ConsentManagement = map[string]map[string][]Purpose{
		"Ketch": {"behavioral_advertising": {Marketing}, "Web_Analytics": {Analytics}},
	}
	tests := []struct {
		name string
		raw  string
		p    Policy
		want Signal
		err  bool
	}{
		{"absent", ``, def, Signal{}, false},
		{"null", `null`, def, Signal{}, false},
		{"empty lists", `{"provider":"custom","allowedConsentIds":[],"deniedConsentIds":[]}`, def, Signal{}, false},
		{"onetrust groups", `{"provider":"oneTrust","allowedConsentIds":["C0001","C0002","C0003"],"deniedConsentIds":["C0004","C0005"],"resolutionStrategy":"and"}`, def,
			sig(SourceConsentManagement, set(Necessary, Analytics, Personalization), set(Marketing)), false},
		{"onetrust everything denied", `{"provider":"oneTrust","allowedConsentIds":["C0001"],"deniedConsentIds":["C0002","C0003","C0004"]}`, def,
			sig(SourceConsentManagement, set(Necessary), set(Analytics, Personalization, Marketing)), false},
		{"iubenda purpose ids, numbers too", `{"provider":"iubenda","allowedConsentIds":["1",4],"deniedConsentIds":[5,"2","3"]}`, def,
			sig(SourceConsentManagement, set(Necessary, Analytics), set(Personalization, Marketing)), false},
		{"iubenda ids mean nothing for another provider", `{"provider":"custom","allowedConsentIds":["4"]}`, def, Signal{}, false},
		{"custom provider, plain names through categories", `{"provider":"custom","allowedConsentIds":["Analytics"],"deniedConsentIds":["advertising"]}`, def,
			sig(SourceConsentManagement, set(Analytics), set(Marketing)), false},
		{"no provider", `{"allowedConsentIds":["C0002"]}`, def, sig(SourceConsentManagement, set(Analytics), Set{}), false},
		{"site map, provider and ids ignore case", `{"provider":"ketch","allowedConsentIds":["web_analytics"],"deniedConsentIds":["BEHAVIORAL_ADVERTISING"]}`, ketch,
			sig(SourceConsentManagement, set(Analytics), set(Marketing)), false},
		{"unknown ids ignored", `{"provider":"oneTrust","allowedConsentIds":["C0099","x"],"deniedConsentIds":["y"]}`, def, Signal{}, false},
		// C0004 and C0005 both map to marketing: under "and" one denial
		// denies it, under "or" one grant grants it.
		{"and: one denied id denies", `{"provider":"oneTrust","allowedConsentIds":["C0004"],"deniedConsentIds":["C0005"],"resolutionStrategy":"and"}`, def,
			sig(SourceConsentManagement, Set{}, set(Marketing)), false},
		{"default strategy is and", `{"provider":"oneTrust","allowedConsentIds":["C0004"],"deniedConsentIds":["C0005"]}`, def,
			sig(SourceConsentManagement, Set{}, set(Marketing)), false},
		{"or: one allowed id grants", `{"provider":"oneTrust","allowedConsentIds":["C0004"],"deniedConsentIds":["C0005"],"resolutionStrategy":"OR"}`, def,
			sig(SourceConsentManagement, set(Marketing), Set{}), false},
		{"other keys and nulls ignored", `{"provider":null,"extra":{"a":[1]},"allowedConsentIds":null,"deniedConsentIds":["C0004"]}`, def,
			sig(SourceConsentManagement, Set{}, set(Marketing)), false},
		{"not an object", `[]`, def, Signal{}, true},
		{"ids not an array", `{"allowedConsentIds":"C0002"}`, def, Signal{}, true},
		{"id of the wrong type", `{"allowedConsentIds":[true]}`, def, Signal{}, true},
		{"fractional id", `{"allowedConsentIds":[1.5]}`, def, Signal{}, true},
		{"provider not a string", `{"provider":1}`, def, Signal{}, true},
		{"malformed", `{"allowedConsentIds":[`, def, Signal{}, true},
		{"trailing data", `{} {}`, def, Signal{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromConsentManagement([]byte(tt.raw), tt.p)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrInvalidConsent) {
				t.Fatalf("err %v does not wrap ErrInvalidConsent", err)
			}
			if got.Source != SourceConsentManagement || got.Granted != tt.want.Granted || got.Denied != tt.want.Denied {
				t.Fatalf("got %+v, want granted %v denied %v", got, tt.want.Granted, tt.want.Denied)
			}
		})
	}
}

func TestFromConsentManagementDecides(t *testing.T) {
	// A RudderStack visitor who allowed analytics only in OneTrust is
	// pseudonymous for analytics; one who denied it is anonymous.
	p := DefaultPolicy()
	s, err := FromConsentManagement([]byte(`{"provider":"oneTrust","allowedConsentIds":["C0001","C0002"],"deniedConsentIds":["C0003","C0004"]}`), p)
	if err != nil {
		t.Fatal(err)
	}
	if d := Decide(p, s); d.Outcome != Pseudonymous || d.Granted != set(Necessary, Analytics) || d.Reason != reasonExplicitGrant {
		t.Fatalf("allowed analytics: %v", d)
	}
	s, _ = FromConsentManagement([]byte(`{"provider":"oneTrust","allowedConsentIds":["C0001"],"deniedConsentIds":["C0002","C0003","C0004"]}`), p)
	if d := Decide(p, s); d.Outcome != Anonymous || d.Granted != set(Necessary) {
		t.Fatalf("denied everything: %v", d)
	}
}

func TestConsentManagementPolicyValidation(t *testing.T) {
	for name, m := range map[string]map[string]map[string][]Purpose{
		"unknown purpose":          {"ketch": {"x": {"nope"}}},
		"empty provider":           {" ": {"x": {Analytics}}},
		"empty id":                 {"ketch": {"": {Analytics}}},
		"providers differ by case": {"Ketch": {"a": {Analytics}}, "custom": {}, "ketch": {"b": {Analytics}}},
	} {
		p := DefaultPolicy()
		p.ConsentManagement = m
		if err := p.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}
