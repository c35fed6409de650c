package pseudonymize

import (
	"strings"
	"testing"
	"unsafe"
)

func TestScrubText(t *testing.T) {
	tests := []struct{ in, want string }{
		// e-mails
		{"mail john.doe+x@example.co.uk now", "mail [email] now"},
		{"<JANE@Example.ORG>", "<[email]>"},
		{"mailto:a_b@sub.example.io.", "mailto:[email]."},
		{"..lead@example.com", "..[email]"},
		{"jöhn@exämple.fr", "[email]"},
		{"user@localhost", "user@localhost"},
		{"a@b.c", "a@b.c"},
		{"@handle and foo@ bar", "@handle and foo@ bar"},
		// phones
		{"call +33 6 12 34 56 78 today", "call [phone] today"},
		{"+1 (415) 555-0100", "[phone]"},
		{"(415) 555-0100", "[phone]"},
		{"0612345678", "[phone]"},
		{"06.12.34.56.78", "[phone]"},
		{"415-555-0100", "[phone]"},
		{"tel:+442071838750", "tel:[phone]"},
		{"1-800-555-0100", "[phone]"},
		// not phones
		{"on 2026-11-26 at 10:30", "on 2026-11-26 at 10:30"},
		{"2026-11-26 10:30:00", "2026-11-26 10:30:00"},
		{"price 1,299.00 EUR", "price 1,299.00 EUR"},
		{"v1.2.3", "v1.2.3"},
		{"Chrome 131.0.6778.86", "Chrome 131.0.6778.86"},
		{"Windows 10.0.19041.1", "Windows 10.0.19041.1"},
		{"ISBN 978-3-16-148410-0", "ISBN 978-3-16-148410-0"},
		{"room 12345678", "room 12345678"},
		{"1 2 3 4 5 6 7 8 9 10", "1 2 3 4 5 6 7 8 9 10"},
		{"+12", "+12"},
		// numbers
		{"order 123456789", "order [number]"},
		{"card 4111 1111 1111 1112", "card [number]"}, // fails Luhn
		{"card 4111 1111 1111 1111", "card [card]"},
		{"1 299 000 000", "[number]"},
		{"ref12345678901xyz", "ref[number]xyz"},
		// ip
		{"from 192.168.1.10:8080", "from [ip]:8080"},
		{"999.1.1.1", "999.1.1.1"},
		// tokens
		{"sid=8f7d6a5c4b3e2f1a0b9c8d7e6f5a", "sid=[secret]"},
		{"id=8f7d6a5c4b3e2f1a0b9c8d7e6f5a", "id=[token]"},
		{"id 123e4567-e89b-12d3-a456-426614174000", "id [token]"},
		{"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", "[secret]"},
		{"sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "sha [token]"},
		{"my-awesome-blog-post-2026-edition", "my-awesome-blog-post-2026-edition"},
		{"abcdefghijklmnopqrstuvwxyzabcdef", "abcdefghijklmnopqrstuvwxyzabcdef"},
		// untouched
		{"", ""},
		{"Hello, world — Pricing", "Hello, world — Pricing"},
		// several
		{"a@b.io, +33612345678 and 123456789", "[email], [phone] and [number]"},
	}
	for _, tt := range tests {
		got := ScrubText(tt.in, nil)
		if got != tt.want {
			t.Errorf("ScrubText(%q, nil) = %q, want %q", tt.in, got, tt.want)
		}
		if again := ScrubText(got, nil); again != got {
			t.Errorf("not idempotent: %q → %q", got, again)
		}
	}
}

func TestScrubTextNoAllocWhenClean(t *testing.T) {
	for _, s := range []string{"Pricing – Acme", "on 2026-11-26 at 10:30", "v1.2.3"} {
		if got := ScrubText(s, nil); unsafe.StringData(got) != unsafe.StringData(s) {
			t.Errorf("ScrubText(%q, nil) returned a copy", s)
		}
		if n := testing.AllocsPerRun(100, func() { _ = ScrubText(s, nil) }); n != 0 {
			t.Errorf("ScrubText(%q, nil) allocs = %v", s, n)
		}
	}
}

func FuzzScrubText(f *testing.F) {
	for _, s := range []string{"", "hello", "+33 6 12 34 56 78", "a@b.co", "2026-11-26", "192.168.0.1", "x 0612345678 y",
		"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "(415) 555-0100", "1 299 000 000", "@@..--", "\xff\xfe@x.com"} {
		f.Add(s, " tail")
	}
	const email = "jane.doe@example.com"
	f.Fuzz(func(t *testing.T, prefix, suffix string) {
		for _, s := range []string{prefix, prefix + suffix} {
			once := ScrubText(s, nil)
			if twice := ScrubText(once, nil); twice != once {
				t.Fatalf("not idempotent: %q → %q → %q", s, once, twice)
			}
		}
		s := prefix + " " + email + " " + suffix
		if out := ScrubText(s, nil); strings.Contains(out, email) {
			t.Fatalf("seeded e-mail survived: %q → %q", s, out)
		}
	})
}
