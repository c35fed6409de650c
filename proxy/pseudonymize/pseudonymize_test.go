package pseudonymize

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func newTestP(t testing.TB, keys ...Key) *Pseudonymizer {
	t.Helper()
	if len(keys) == 0 {
		keys = []Key{{ID: "k1", Secret: secret(1)}}
	}
	p, err := New(Config{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		keys []Key
		want error
	}{
		{"no keys", nil, ErrNoKeys},
		{"short secret", []Key{{ID: "a", Secret: make([]byte, 31)}}, ErrShortSecret},
		{"empty id", []Key{{ID: "", Secret: secret(1)}}, ErrKeyID},
		{"duplicate id", []Key{{ID: "a", Secret: secret(1)}, {ID: "a", Secret: secret(2)}}, ErrKeyID},
		{"second key short", []Key{{ID: "a", Secret: secret(1)}, {ID: "b", Secret: []byte("x")}}, ErrShortSecret},
		{"ok", []Key{{ID: "a", Secret: secret(1)}, {ID: "b", Secret: secret(2)}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(Config{Keys: tt.keys})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && p.KeyID() != tt.keys[0].ID {
				t.Fatalf("KeyID = %q, want %q", p.KeyID(), tt.keys[0].ID)
			}
		})
	}
}

// refID computes the documented pseudonym independently.
func refID(key []byte, site string, k Kind, value string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte{byte(k), 0})
	m.Write([]byte(site))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func TestIDMatchesSpec(t *testing.T) {
	p := newTestP(t)
	tests := []struct {
		site  string
		kind  Kind
		value string
	}{
		{"site-a", AnonymousID, "anon-123"},
		{"site-a", UserID, "user@example.com"},
		{"", GroupID, "g"},
		{"site-b", MessageID, string(make([]byte, 300))},
	}
	for _, tt := range tests {
		got := p.ID(tt.site, tt.kind, tt.value)
		if want := refID(secret(1), tt.site, tt.kind, tt.value); got != want {
			t.Errorf("ID(%q,%d) = %q, want %q", tt.site, tt.kind, got, want)
		}
		if len(got) != 22 {
			t.Errorf("len = %d, want 22", len(got))
		}
		if app := p.AppendID([]byte("x:"), tt.site, tt.kind, tt.value); string(app) != "x:"+got {
			t.Errorf("AppendID = %q", app)
		}
	}
	if got := p.ID("s", UserID, ""); got != "" {
		t.Errorf("empty value → %q", got)
	}
	if got := p.AppendID(nil, "s", UserID, ""); len(got) != 0 {
		t.Errorf("AppendID empty value → %q", got)
	}
}

func TestIDDomainSeparation(t *testing.T) {
	p := newTestP(t)
	other := newTestP(t, Key{ID: "k2", Secret: secret(2)})
	base := p.ID("shop", UserID, "42")
	tests := []struct {
		name string
		got  string
	}{
		{"other site", p.ID("shop2", UserID, "42")},
		{"other kind", p.ID("shop", AnonymousID, "42")},
		{"group kind", p.ID("shop", GroupID, "42")},
		{"other value", p.ID("shop", UserID, "43")},
		{"shifted separator", p.ID("shop4", UserID, "2")},
		{"other key", other.ID("shop", UserID, "42")},
	}
	for _, tt := range tests {
		if tt.got == base {
			t.Errorf("%s: pseudonym collides with base %q", tt.name, base)
		}
	}
	if again := p.ID("shop", UserID, "42"); again != base {
		t.Errorf("not deterministic: %q vs %q", again, base)
	}
}

func TestIDsRotation(t *testing.T) {
	old := Key{ID: "2025", Secret: secret(7)}
	before := newTestP(t, old)
	stored := before.ID("site", UserID, "u-1")

	rotated := newTestP(t, Key{ID: "2026", Secret: secret(8)}, old)
	if rotated.KeyID() != "2026" {
		t.Fatalf("KeyID = %q", rotated.KeyID())
	}
	ids := rotated.IDs("site", UserID, "u-1")
	if len(ids) != 2 {
		t.Fatalf("IDs len = %d", len(ids))
	}
	if ids[0] != rotated.ID("site", UserID, "u-1") {
		t.Errorf("IDs[0] is not the active-key pseudonym")
	}
	if ids[1] != stored {
		t.Errorf("old-key pseudonym not found after rotation: %v vs %q", ids, stored)
	}
	if ids[0] == stored {
		t.Errorf("new key produced the old pseudonym")
	}
	if got := rotated.IDs("site", UserID, ""); got != nil {
		t.Errorf("IDs of empty = %v", got)
	}
}

func TestAppendIDNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool is randomized under -race")
	}
	p := newTestP(t)
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(200, func() {
		buf = p.AppendID(buf[:0], "site", UserID, "user-123456")
	})
	if allocs != 0 {
		t.Errorf("AppendID allocs = %v, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(200, func() { _ = p.ID("site", UserID, "user-123456") })
	if allocs > 1 {
		t.Errorf("ID allocs = %v, want ≤ 1", allocs)
	}
}

func TestIDConcurrent(t *testing.T) {
	p := newTestP(t)
	want := p.ID("s", UserID, "v")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if got := p.ID("s", UserID, "v"); got != want {
					t.Errorf("concurrent ID = %q, want %q", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestTruncateIP(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"203.0.113.77", "203.0.113.0/24", true},
		{"10.1.2.3", "10.1.2.0/24", true},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1::/48", true},
		{"::ffff:198.51.100.9", "198.51.100.0/24", true},
		{"fe80::1%eth0", "fe80::/48", true},
		{"::1", "::/48", true},
		{"", "", false},
		{"not-an-ip", "", false},
		{"203.0.113.7:443", "", false},
		{"[2001:db8::1]", "", false},
		{"256.1.1.1", "", false},
	}
	for _, tt := range tests {
		got, ok := TruncateIP(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("TruncateIP(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPIIKeyMatching(t *testing.T) {
	p := newTestP(t)
	custom, err := New(Config{Keys: []Key{{ID: "a", Secret: secret(1)}}, PIIKeys: []string{"Customer-Ref", "addr*"}})
	if err != nil {
		t.Fatal(err)
	}
	none, err := New(Config{Keys: []Key{{ID: "a", Secret: secret(1)}}, PIIKeys: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		p    *Pseudonymizer
		name string
		want bool
	}{
		{p, "email", true},
		{p, "E-Mail", true},
		{p, "email_address", true},
		{p, "emailAddress", true},
		{p, "workEmail", true},
		{p, "first_name", true},
		{p, "LastName", true},
		{p, "phone_number", true},
		{p, "Telephone", true},
		{p, "ip_address", true},
		{p, "Password2", true},
		{p, "iphone_model", false},
		{p, "iphone_phone", true},
		{p, "headphones", false},
		{p, "page_name", false},
		{p, "product", false},
		{p, "city", false},
		{p, "rénom", false},
		{custom, "customer_ref", true},
		{custom, "address_line_3", true},
		{custom, "name", true}, // the defaults always apply
		{custom, "contact_email", true},
		{none, "name", true}, // `pii_keys: []` in YAML is an empty, non-nil list
		{none, "Prénom", true},
		{p, "prenom", true},
		{p, "Prénom", true},
		{p, "NOM", true},
		{p, "Vorname", true},
		{p, "nachname", true},
		{p, "telefono", true},
		{p, "nombre", true},
		{p, "apellidos", true},
		{p, "adresse", true},
		{p, "adresse_postale", true},
		{p, "Dirección", true},
		{p, "Straße", true},
		{p, "codice_fiscale", true},
		{p, "customer", true},
		{p, "full_name", true},
		{p, "user_agent", true},
		{p, "courriel", true},
		{p, "csrf_token", true},
		{p, "pk_vid", true},
		{p, "plan", false},
		{p, "nombre_de_produits", false},
		{p, "pagename", false},
		{p, "client_type", false},
	}
	for _, tt := range tests {
		if _, got := tt.p.pii.isPII(nil, tt.name); got != tt.want {
			t.Errorf("isPII(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
