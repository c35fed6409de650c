package email

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

func testSigner(t testing.TB, active string, ids ...string) *Signer {
	t.Helper()
	var keys []Key
	for _, id := range ids {
		keys = append(keys, Key{ID: id, Secret: []byte(strings.Repeat(id, 32))[:32]})
	}
	s, err := NewSigner(keys, active)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestSignVerifyRoundTrip(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	tests := []struct {
		name string
		tok  Token
	}{
		{"open per recipient", Token{Site: "shop", Campaign: "spring-26", Recipient: "p_8f3a9c"}},
		{"click merge-tag mode", Token{Site: "shop", Campaign: "spring-26", Link: "https://shop.example/sale?utm_source=mail&x=1#top"}},
		{"honeypot", Token{Site: "s", Campaign: "c", Honeypot: true}},
		{"times", Token{Site: "s", Campaign: "c", Link: "http://a.example/", SentAt: t0, Expires: t0.Add(90 * 24 * time.Hour)}},
		{"unicode ids", Token{Site: "café", Campaign: "été/2026", Recipient: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			str, err := s.Sign(tt.tok)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range str {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
					t.Fatalf("token %q has non URL-safe %q", str, c)
				}
			}
			got, err := s.Verify(str, t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.tok {
				t.Fatalf("got %+v, want %+v", got, tt.tok)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	other := testSigner(t, "k9", "k9")
	otherSameID, _ := NewSigner([]Key{{ID: "k1", Secret: []byte("another secret of 32 bytes......")}}, "k1")
	good, _ := s.Sign(Token{Site: "s", Campaign: "c", Link: "https://good.example/"})
	evil, _ := s.Sign(Token{Site: "s", Campaign: "c", Link: "https://evil.example/"})
	forged, _ := otherSameID.Sign(Token{Site: "s", Campaign: "c", Link: "https://evil.example/"})
	unknown, _ := other.Sign(Token{Site: "s", Campaign: "c", Link: "https://evil.example/"})
	parts := strings.Split(good, ".")
	evilParts := strings.Split(evil, ".")
	// A payload with a javascript: link carrying a valid MAC: Verify must
	// still refuse it (defence in depth if Sign were bypassed).
	p := appendPayload(nil, &Token{Site: "s", Campaign: "c", Link: "javascript:alert(1)"})
	signed := b64.EncodeToString(p) + ".k1"
	mac := s.mac("k1", []byte(signed), nil)
	badLink := signed + "." + b64.EncodeToString(mac[:macLen])

	tests := []struct{ name, tok string }{
		{"empty", ""},
		{"garbage", "not-a-token"},
		{"tampered payload (other link)", evilParts[0] + "." + parts[1] + "." + parts[2]},
		{"token from another key with same id", forged},
		{"unknown key id", unknown},
		{"truncated sig", good[:len(good)-1]},
		{"sig too long", good + "A"},
		{"no sig", parts[0] + "." + parts[1] + "."},
		{"extra part", good + ".x"},
		{"sig not base64", parts[0] + "." + parts[1] + "." + strings.Repeat("!", len(parts[2]))},
		{"key id swapped", parts[0] + ".k2." + parts[2]},
		{"valid mac, javascript link", badLink},
		{"huge", strings.Repeat("A", maxTokenLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Verify(tt.tok, t0); !errors.Is(err, ErrBadToken) {
				t.Fatalf("Verify = %v, want ErrBadToken", err)
			}
		})
	}
}

func TestRotationAndExpiry(t *testing.T) {
	old := testSigner(t, "old", "old")
	rotated := testSigner(t, "new", "new", "old")
	retired := testSigner(t, "new", "new")
	tok := Token{Site: "s", Campaign: "c", Link: "https://a.example/", Expires: t0.Add(time.Hour)}
	str, _ := old.Sign(tok)
	if _, err := rotated.Verify(str, t0); err != nil {
		t.Fatalf("rotated signer rejects old key: %v", err)
	}
	if _, err := retired.Verify(str, t0); !errors.Is(err, ErrBadToken) {
		t.Fatalf("retired key accepted: %v", err)
	}
	newStr, _ := rotated.Sign(tok)
	if !strings.Contains(newStr, ".new.") {
		t.Fatalf("rotated signer did not sign with active key: %s", newStr)
	}
	got, err := rotated.Verify(str, t0.Add(2*time.Hour))
	if !errors.Is(err, ErrExpired) || got.Link != tok.Link {
		t.Fatalf("expired: got %+v, %v", got, err)
	}
	if _, err := rotated.Verify(str, t0.Add(time.Hour)); err != nil {
		t.Fatalf("at expiry instant: %v", err)
	}
}

func TestSignRejectsUnsafeLinks(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	bad := []string{
		"javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<script>", "//evil.com", "\\\\evil.com",
		"https:evil.com", "https:/evil.com", "https://evil.com\\@good.com", " https://evil.com", "https://evil.com\r\nSet-Cookie: x=1",
		"https://evil.com/%0d%0a\tx", "https://user:pw@evil.com/", "HTTPS://evil.com/", "ftp://evil.com/", "https://", "https:///path",
		"https://évil.com/", "vbscript:x", "https://a.com/\x00",
	}
	for _, l := range bad {
		if _, err := s.Sign(Token{Site: "s", Campaign: "c", Link: l}); !errors.Is(err, ErrUnsafeLink) {
			t.Errorf("Sign(%q) = %v, want ErrUnsafeLink", l, err)
		}
	}
	for _, l := range []string{"https://shop.example/a?b=c&d=%0A#x", "http://127.0.0.1:8080/"} {
		if _, err := s.Sign(Token{Site: "s", Campaign: "c", Link: l}); err != nil {
			t.Errorf("Sign(%q) = %v", l, err)
		}
	}
}

func TestNewSignerErrors(t *testing.T) {
	sec := make([]byte, 32)
	tests := []struct {
		name   string
		keys   []Key
		active string
	}{
		{"no keys", nil, "a"},
		{"active missing", []Key{{ID: "a", Secret: sec}}, "b"},
		{"short secret", []Key{{ID: "a", Secret: sec[:8]}}, "a"},
		{"bad id dot", []Key{{ID: "a.b", Secret: sec}}, "a.b"},
		{"duplicate", []Key{{ID: "a", Secret: sec}, {ID: "a", Secret: sec}}, "a"},
	}
	for _, tt := range tests {
		if _, err := NewSigner(tt.keys, tt.active); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
}

// The derived key must differ from the raw secret so a keyring secret used
// for pseudonyms cannot be used to forge tokens by the same HMAC.
func TestKeyDerivation(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	raw := []byte(strings.Repeat("k1", 32))[:32]
	if string(s.keys["k1"]) == string(raw) || len(s.keys["k1"]) != sha256.Size {
		t.Fatal("key not derived")
	}
}

func FuzzVerify(f *testing.F) {
	s := testSigner(f, "k1", "k1", "k0")
	for _, tok := range []Token{
		{Site: "s", Campaign: "c", Link: "https://a.example/x?y=1"},
		{Site: "s", Campaign: "c", Recipient: "r", Honeypot: true, SentAt: t0, Expires: t0},
	} {
		str, _ := s.Sign(tok)
		f.Add(str)
	}
	f.Add("AQA.k1.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("..")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := s.Verify(in, t0)
		if err != nil && !errors.Is(err, ErrExpired) {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if got.Link != "" && !SafeLink(got.Link) {
			t.Fatalf("verified unsafe link %q", got.Link)
		}
		again, err := s.Sign(got)
		if err != nil {
			t.Fatalf("re-sign: %v", err)
		}
		back, _ := s.Verify(again, t0)
		if back != got {
			t.Fatalf("round trip %+v != %+v", back, got)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	s := testSigner(b, "k1", "k1")
	str, _ := s.Sign(Token{Site: "shop", Campaign: "spring-26", Recipient: "p_8f3a9c0b1d2e3f40", Link: "https://shop.example/products/blue-shoes?utm_source=newsletter&utm_campaign=spring"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(str, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	s := testSigner(b, "k1", "k1")
	tok := Token{Site: "shop", Campaign: "spring-26", Recipient: "p_8f3a9c0b1d2e3f40", Link: "https://shop.example/products/blue-shoes?utm_source=newsletter&utm_campaign=spring"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(tok); err != nil {
			b.Fatal(err)
		}
	}
}
