package email

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPreferenceToken(t *testing.T) {
	s := testSigner(t, "k1", "k1", "k0")
	const site, rcpt = "shop", "-rRzATlnaxqcdqUV-18sqg"
	tok, err := s.SignPreference(site, rcpt, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range tok {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			t.Fatalf("token %q has non URL-safe %q", tok, c)
		}
	}
	gs, gr, err := s.VerifyPreference(tok, t0)
	if err != nil || gs != site || gr != rcpt {
		t.Fatalf("VerifyPreference = %q %q %v", gs, gr, err)
	}
	old := testSigner(t, "k0", "k0")
	oldTok, _ := old.SignPreference(site, rcpt, time.Time{})
	if _, _, err := s.VerifyPreference(oldTok, t0); err != nil {
		t.Fatalf("a token of a rotated (not retired) key: %v", err)
	}
	retired := testSigner(t, "k1", "k1")
	if _, _, err := retired.VerifyPreference(oldTok, t0); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a retired key's token: %v", err)
	}
	expiring, _ := s.SignPreference(site, rcpt, t0.Add(time.Hour))
	if _, _, err := s.VerifyPreference(expiring, t0.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}

	// Other values of the same signer open no preference page, and a
	// preference token is neither a recipient value nor a campaign token.
	rv, _ := s.SignRecipient(site, rcpt, time.Time{})
	ct, _ := s.Sign(Token{Site: site, Campaign: "c", Recipient: rcpt})
	flip := []byte(tok)
	flip[3] ^= 1
	bad := []string{rv, ct, string(flip), tok + "x", strings.Replace(tok, ".k1.", ".k0.", 1), "", "a.b.c", strings.Repeat("a", 600)}
	for _, b := range bad {
		if _, _, err := s.VerifyPreference(b, t0); !errors.Is(err, ErrBadToken) {
			t.Errorf("VerifyPreference(%.40q) = %v, want ErrBadToken", b, err)
		}
	}
	if _, err := s.VerifyRecipient(site, tok, t0); !errors.Is(err, ErrBadToken) {
		t.Errorf("a preference token verified as a recipient value: %v", err)
	}
	if _, err := s.Verify(tok, t0); !errors.Is(err, ErrBadToken) {
		t.Errorf("a preference token verified as a campaign token: %v", err)
	}
}

func TestPreferenceNonce(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	tok, _ := s.SignPreference("shop", "r1", time.Time{})
	other, _ := s.SignPreference("shop", "r2", time.Time{})
	n := s.PreferenceNonce(tok, t0)
	tests := []struct {
		name, tok, nonce string
		now              time.Time
		ok               bool
	}{
		{"fresh", tok, n, t0.Add(time.Minute), true},
		{"expired", tok, n, t0.Add(PreferenceNonceTTL + time.Second), false},
		{"from the future", tok, s.PreferenceNonce(tok, t0.Add(time.Hour)), t0, false},
		{"another token's page", other, n, t0, false},
		{"altered time", tok, "1" + n, t0, false},
		{"empty", tok, "", t0, false},
		{"another signer", tok, testSigner(t, "k2", "k2").PreferenceNonce(tok, t0), t0, false},
	}
	for _, tt := range tests {
		if got := s.CheckPreferenceNonce(tt.tok, tt.nonce, tt.now); got != tt.ok {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestUnsubscribeHeaders(t *testing.T) {
	h, err := UnsubscribeHeaders("https://shop.example/t", "abc.k1.def")
	if err != nil || h.ListUnsubscribe != "<https://shop.example/t/p/abc.k1.def>" || h.ListUnsubscribePost != "List-Unsubscribe=One-Click" {
		t.Fatalf("%+v %v", h, err)
	}
	if h, err := UnsubscribeHeaders("https://shop.example/t/", "*|VIGIE_PREF|*"); err != nil || h.ListUnsubscribe != "<https://shop.example/t/p/*|VIGIE_PREF|*>" {
		t.Fatalf("merge tag: %+v %v", h, err)
	}
	for _, bad := range [][2]string{{"ftp://x/", "t"}, {"https://x/?a", "t"}, {"https://x/", "a>b"}, {"https://x/", "a\r\nBcc: x"}, {"https://x/", ""}} {
		if _, err := UnsubscribeHeaders(bad[0], bad[1]); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
