package sensitive

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzNormalize: the normalizer never panics, emits tokens separated by
// single spaces, is idempotent, and the stack fast path agrees with the
// iterator in every mode.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"bloodType", "HIVStatus", "Diabète de type 2", "/sant%C3%A9/x%2", `a\u00e9\n"b`, "ÆØÅ æøå ß", "e\u0301", "\xff\xfe", "%", `\`, `\u12`} {
		f.Add(s)
	}
	d := detector(f, DefaultPolicy())
	f.Fuzz(func(t *testing.T, s string) {
		n := Normalize(s)
		if strings.HasPrefix(n, " ") || strings.HasSuffix(n, " ") || strings.Contains(n, "  ") {
			t.Fatalf("Normalize(%q) = %q: stray spaces", s, n)
		}
		for _, r := range n {
			if r != ' ' && r != utf8.RuneError && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				t.Fatalf("Normalize(%q) = %q: emits %q", s, n, r)
			}
			if r < utf8.RuneSelf && 'A' <= r && r <= 'Z' {
				t.Fatalf("Normalize(%q) = %q: upper case", s, n)
			}
		}
		if utf8.ValidString(s) {
			if n2 := Normalize(n); n2 != n {
				t.Fatalf("not idempotent: %q → %q → %q", s, n, n2)
			}
		}
		for _, mode := range []uint8{srcPlain, srcJSON, srcURL} {
			var buf [fastLen]byte
			fast := d.t.matchText(&buf, s, mode, LayerPage)
			slow := d.t.match(newNorm(s, mode), LayerPage)
			if fast != slow {
				t.Fatalf("%q mode %d: fast %v, iterator %v", s, mode, fast.Names(), slow.Names())
			}
		}
		var fs Findings
		d.Scan(&Input{Path: s, Title: s, Name: s + "!"}, &fs)
	})
}

// FuzzScanJSON: scanning any valid JSON never panics, and stripping what
// matched leaves valid JSON.
func FuzzScanJSON(f *testing.F) {
	for _, s := range []string{`{"medicalCondition":"x"}`, `{"a":[{"religion":1},{"b":"diabetes"}]}`, `{"x\u00e9":"\ud83d\ude00 HIV"}`, `[]`, `"diabetes"`, `{"n":185057800608491}`} {
		f.Add(s)
	}
	d := detector(f, DefaultPolicy())
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		var fs Findings
		d.Scan(&Input{Properties: []byte(s), Traits: []byte(s)}, &fs)
		for _, out := range [][]byte{fs.StripProperties([]byte(s), fs.Categories), fs.StripTraits([]byte(s), fs.Categories), DropMembers([]byte(s), "a", "b")} {
			if !json.Valid(out) {
				t.Fatalf("%s stripped to invalid %s", s, out)
			}
		}
		for _, h := range fs.Hits {
			if h.Layer == LayerValues && h.Example != h.Category.Marker() {
				t.Fatalf("value example %q shows more than the marker", h.Example)
			}
		}
	})
}
