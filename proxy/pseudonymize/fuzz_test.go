package pseudonymize

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets of the decoders and parsers the scanner is made of. Run one
// with e.g. `go test ./proxy/pseudonymize -run '^$' -fuzz FuzzDecodeAll
// -fuzztime 30s`; what they find is kept under testdata/fuzz.

func FuzzDecodeAll(f *testing.F) {
	for _, s := range []string{"jane%2540example.org", `a\u0040b`, `\u{1F600}`, "&amp;#64;", "%zz%4", "\\x4", "&#x110000;", "%C3%A9", "%FF", "\uff20", "&", "\\u{", "&nGt;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, changed := decodeAll(s)
		if changed == (d == s) {
			t.Fatalf("decodeAll(%q) = %q, changed %v", s, d, changed)
		}
		if changed && !utf8.ValidString(d) {
			t.Fatalf("decodeAll(%q) = %q: invalid UTF-8", s, d)
		}
		// Decoding runs until stable (within maxDecodeRounds, which short
		// input cannot exhaust).
		if len(s) < 32 {
			if again, ok := decodeAll(d); ok {
				t.Fatalf("decodeAll not stable: %q → %q → %q", s, d, again)
			}
		}
		// Text percent-encoded twice decodes back to itself.
		if utf8.ValidString(s) && !strings.ContainsAny(s, "%\\&\uff20\ufe6b") {
			if got, _ := decodeAll("x" + url.PathEscape(url.PathEscape(s)) + "y"); got != "x"+s+"y" {
				t.Fatalf("double percent-encoding of %q decoded to %q", s, got)
			}
		}
	})
}

func FuzzMatchIPv6(f *testing.F) {
	for _, s := range []string{"2001:db8::1", "[fe80::1%eth0]:80", "::ffff:192.0.2.1", "10:30:00", "a::b", ":::", "1:2:3:4:5:6:7:8", "2001:db8:abcd:12:3456:789a:bcde:f012."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i < len(s); i++ {
			if !isHex(s[i]) && s[i] != ':' {
				continue
			}
			a, b, ok := matchIPv6(s, i)
			if !ok {
				continue
			}
			if a > i || b <= i || b > len(s) || (a < i && (s[a] != '[' || s[b-1] != ']')) {
				t.Fatalf("matchIPv6(%q, %d) = %d, %d", s, i, a, b)
			}
			cand := strings.Trim(s[a:b], "[]")
			if z := strings.IndexByte(cand, '%'); z >= 0 {
				cand = cand[:z]
			}
			if _, err := netip.ParseAddr(cand); err != nil {
				t.Fatalf("matchIPv6(%q, %d) matched %q: %v", s, i, s[a:b], err)
			}
		}
	})
}

func FuzzIDChecks(f *testing.F) {
	for _, s := range []string{"FR76 3000 6000 0112 3456 7890 189", "AB 12 34 56 C", "2 85 05 2A 006 084 82", "RSSMRA85T10A562S", "X1234567L",
		"4111111111111111", "86095742719", "85073003328", "ZZ", "fr76", "2A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// No check panics on any input, and the classes agree with the checks.
		if cl := classifyIDRun(s); cl != NumClasses && cl != ClassIBAN && cl != ClassNationalID {
			t.Fatalf("classifyIDRun(%q) = %s", s, cl)
		}
		if allDigits(s) && len(s) <= 19 {
			cl := classifyDigits(s)
			if (cl == ClassCard) != isCard(s) {
				t.Fatalf("classifyDigits(%q) = %s, isCard %v", s, cl, isCard(s))
			}
			if isCard(s) && !luhnRef(s) {
				t.Fatalf("isCard(%q) without Luhn", s)
			}
		}
		if isIBAN(s) && (len(s) != ibanLength(s) || len(s) < 15) {
			t.Fatalf("isIBAN(%q) with a wrong length", s)
		}
		for i := 0; i < len(s); i++ {
			if isAlpha(s[i]) {
				if end, cl := matchGroupedID(s, i); cl != NumClasses && (end <= i || end > len(s)) {
					t.Fatalf("matchGroupedID(%q, %d) = %d", s, i, end)
				}
			}
			if end := matchGroupedNIR(s, i); end != 0 && (end <= i || end > len(s)) {
				t.Fatalf("matchGroupedNIR(%q, %d) = %d", s, i, end)
			}
			if isDigit(s[i]) || s[i] == '+' || s[i] == '(' {
				var c Counts
				if end, cl, retry := matchNumberSpan(s, i, i%2 == 0, &c); end > len(s) || end <= i || (cl == NumClasses && retry <= i) {
					t.Fatalf("matchNumberSpan(%q, %d) = %d, %s, %d", s, i, end, cl, retry)
				}
			}
		}
	})
}

func FuzzReplaceCued(f *testing.F) {
	for _, s := range []string{"Dear Jane Doe,", "password=x", "Authorization: Bearer abc123456", "Basic dXNlcjpwYXNz", "name: ", "Mr", "M. ", "Hello World",
		"je m'appelle", "Regards,\n\n", "nom : \"", "pin:[secret]"} {
		f.Add(s, "Zoë")
	}
	f.Fuzz(func(t *testing.T, s, name string) {
		out, changed := replaceCued(s, nil)
		if !changed && out != s {
			t.Fatalf("replaceCued(%q) changed the text without saying so", s)
		}
		if scrubbed := ScrubText(s, nil); ScrubText(scrubbed, nil) != scrubbed {
			t.Fatalf("not idempotent: %q → %q", s, scrubbed)
		}
		// A capitalized name after "Dear " is replaced.
		if nameWordOnly(name) {
			in := "Dear " + name + " Canaryson, " + s
			if got := ScrubText(in, nil); strings.Contains(got, "Canaryson") {
				t.Fatalf("name survived: %q → %q", in, got)
			}
		}
	})
}

// nameWordOnly reports a capitalized word of letters only that is no stop
// word.
func nameWordOnly(w string) bool {
	e, upper := nameWord(w, 0)
	if w == "" || e != len(w) || !upper || strings.ContainsAny(w, "-'’") {
		return false
	}
	lw := strings.ToLower(w)
	return !notNames[lw] && !honorifics[lw] && !greetings[lw]
}

// FuzzScrubTextClasses seeds one item of every class into fuzzed text: none
// may survive, whatever surrounds it.
func FuzzScrubTextClasses(f *testing.F) {
	for _, s := range []string{"", "x", "0", "@", "%", "&#", "\u00a0", "+", "(", "[", "eyJ", "FR", "Mr", ":", "=", "1 2"} {
		f.Add(s, s)
	}
	items := []struct{ text, leak string }{
		{"jane.doe%2540example.org", "jane.doe"},
		{"+33\u00a06\u00a012\u00a034\u00a056\u00a078", "12\u00a034\u00a056"},
		{"4111 1111 1111 1111", "1111 1111 1111"},
		{"FR76 3000 6000 0112 3456 7890 189", "0112 3456"},
		{"185057800608491", "185057800608491"},
		{"AB123456C", "AB123456C"},
		{"2001:db8:abcd:12:3456:789a:bcde:f012", "3456:789a"},
		{"198.51.100.73", "198.51.100.73"},
		{"AKIAIOSFODNN7EXAMPLE", "IOSFODNN7"},
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWD"},
	}
	f.Fuzz(func(t *testing.T, before, after string) {
		for _, it := range items {
			in := before + " " + it.text + " " + after
			out := ScrubText(in, nil)
			if strings.Contains(out, it.leak) && !strings.Contains(before+after, it.leak) {
				t.Fatalf("%q survived: %q → %q", it.leak, in, out)
			}
			if again := ScrubText(out, nil); again != out {
				t.Fatalf("not idempotent: %q → %q → %q", in, out, again)
			}
		}
	})
}
