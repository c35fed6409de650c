package email

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignRecipientRoundTrip(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	long := strings.Repeat("p", maxRecipientLen)
	tests := []struct {
		name, site, recipient string
		expires               time.Time
	}{
		{"pseudonym", "shop", "-rRzATlnaxqcdqUV-18sqg", time.Time{}},
		{"with expiry", "shop", "-rRzATlnaxqcdqUV-18sqg", t0.Add(90 * 24 * time.Hour)},
		{"longest recipient", strings.Repeat("s", maxFieldLen), long, time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := s.SignRecipient(tt.site, tt.recipient, tt.expires)
			if err != nil {
				t.Fatal(err)
			}
			if len(v) > maxRecipientValue {
				t.Fatalf("value of %d characters does not fit a 255-byte merge field", len(v))
			}
			for _, c := range v {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
					t.Fatalf("value %q has non URL-safe %q", v, c)
				}
			}
			if strings.ContainsAny(v[:1], "=+-@") {
				t.Fatalf("value %q would be read as a spreadsheet formula", v)
			}
			got, err := s.VerifyRecipient(tt.site, v, t0)
			if err != nil || got != tt.recipient {
				t.Fatalf("VerifyRecipient = %q, %v", got, err)
			}
		})
	}
	if v, _ := s.SignRecipient("shop", "-rRzATlnaxqcdqUV-18sqg", time.Time{}); len(v) > 64 {
		t.Fatalf("a pseudonym's value takes %d characters: %s", len(v), v)
	}
}

func TestSignRecipientRefuses(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	for _, tt := range []struct{ site, recipient string }{
		{"", "p"}, {"shop", ""}, {"shop", strings.Repeat("p", maxRecipientLen+1)}, {strings.Repeat("s", maxFieldLen+1), "p"},
	} {
		if _, err := s.SignRecipient(tt.site, tt.recipient, time.Time{}); !errors.Is(err, ErrConfig) {
			t.Errorf("SignRecipient(%d-byte site, %d-byte recipient) = %v", len(tt.site), len(tt.recipient), err)
		}
	}
}

func TestVerifyRecipientRejects(t *testing.T) {
	s := testSigner(t, "k1", "k1")
	good, _ := s.SignRecipient("shop", "p_alice", time.Time{})
	expired, _ := s.SignRecipient("shop", "p_alice", t0.Add(-time.Second))
	campaign, _ := s.Sign(Token{Site: "shop", Campaign: "c", Recipient: "p_alice"})
	parts := strings.Split(good, ".")
	// A valid MAC over a payload of the wrong version, and over one with no
	// recipient: Verify must still refuse them.
	forge := func(payload []byte) string {
		signed := b64.EncodeToString(payload) + ".k1"
		mac := s.recipientMAC("k1", "shop", signed, nil)
		return signed + "." + b64.EncodeToString(mac[:macLen])
	}
	tests := []struct {
		name, site, v string
		want          error
	}{
		{"empty", "shop", "", ErrBadToken},
		{"clear id", "shop", "user-42", ErrBadToken},
		{"other site", "other", good, ErrBadToken},
		{"site prefix", "sho", good, ErrBadToken},
		{"truncated", "shop", good[:len(good)-2], ErrBadToken},
		{"extra part", "shop", good + ".x", ErrBadToken},
		{"no signature", "shop", parts[0] + "." + parts[1] + ".", ErrBadToken},
		{"unknown key id", "shop", parts[0] + ".k9." + parts[2], ErrBadToken},
		{"campaign token", "shop", campaign, ErrBadToken},
		{"too long", "shop", strings.Repeat("A", maxRecipientValue+1), ErrBadToken},
		{"wrong version", "shop", forge([]byte{tokenVersion, 0, 'p'}), ErrBadToken},
		{"no recipient", "shop", forge([]byte{recipientVersion, 0}), ErrBadToken},
		{"expired", "shop", expired, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.VerifyRecipient(tt.site, tt.v, t0)
			if !errors.Is(err, tt.want) || got != "" {
				t.Fatalf("VerifyRecipient = %q, %v; want %v", got, err, tt.want)
			}
		})
	}
	// A recipient value never verifies as a campaign token either.
	if _, err := s.Verify(good, t0); !errors.Is(err, ErrBadToken) {
		t.Fatalf("recipient value verified as a campaign token: %v", err)
	}
}

func FuzzVerifyRecipient(f *testing.F) {
	s := testSigner(f, "k1", "k1", "k0")
	for _, exp := range []time.Time{{}, t0, t0.Add(time.Hour)} {
		v, _ := s.SignRecipient("shop", "-rRzATlnaxqcdqUV-18sqg", exp)
		f.Add("shop", v)
	}
	campaign, _ := s.Sign(Token{Site: "shop", Campaign: "c", Recipient: "r"})
	f.Add("shop", campaign)
	f.Add("shop", "UgA.k1.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("", "..")
	f.Add("shop", "user-42")
	f.Fuzz(func(t *testing.T, site, v string) {
		got, err := s.VerifyRecipient(site, v, t0)
		if err != nil {
			if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrExpired) {
				t.Fatalf("unexpected error %v", err)
			}
			if got != "" {
				t.Fatalf("recipient %q returned with %v", got, err)
			}
			return
		}
		if got == "" || len(got) > maxRecipientLen {
			t.Fatalf("verified recipient of %d bytes", len(got))
		}
		// Only Sign makes valid values: re-signing what verified gives a
		// value that verifies to the same recipient, and the input was
		// signed for this site only.
		again, err := s.SignRecipient(site, got, time.Time{})
		if err != nil {
			t.Fatalf("re-sign: %v", err)
		}
		if back, err := s.VerifyRecipient(site, again, t0); err != nil || back != got {
			t.Fatalf("round trip %q != %q (%v)", back, got, err)
		}
		if _, err := s.VerifyRecipient(site+"x", v, t0); err == nil {
			t.Fatalf("value verified for two sites")
		}
	})
}

func BenchmarkVerifyRecipient(b *testing.B) {
	s := testSigner(b, "k1", "k1")
	v, _ := s.SignRecipient("shop", "-rRzATlnaxqcdqUV-18sqg", t0.Add(time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.VerifyRecipient("shop", v, t0); err != nil {
			b.Fatal(err)
		}
	}
}
