package gpp

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/consent/tcf"
)

type fixture struct {
	Name     string      `json:"name"`
	GPP      string      `json:"gpp"`
	Sections []int       `json:"sections"`
	US       []USOptOuts `json:"us"`
	TCF      *struct {
		PurposeConsents           []int `json:"purposeConsents"`
		VendorConsents            []int `json:"vendorConsents"`
		VendorLegitimateInterests []int `json:"vendorLegitimateInterests"`
		CmpID                     int   `json:"cmpId"`
	} `json:"tcf"`
}

func loadFixtures(t testing.TB) []fixture {
	t.Helper()
	raw, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Fixtures []fixture `json:"fixtures"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Fixtures) == 0 {
		t.Fatalf("fixtures: %v", err)
	}
	return doc.Fixtures
}

func norm(v []int) []int {
	if v == nil {
		return []int{}
	}
	return v
}

// TestFixtures parses every string @iabgpp/cmpapi encoded and compares the
// sections, US opt-outs and TCF fields its decoder read back.
func TestFixtures(t *testing.T) {
	for _, f := range loadFixtures(t) {
		t.Run(f.Name, func(t *testing.T) {
			g, err := Parse(f.GPP)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !slices.Equal(g.Sections, f.Sections) {
				t.Errorf("Sections = %v, want %v", g.Sections, f.Sections)
			}
			for _, id := range f.Sections {
				if !g.Has(id) {
					t.Errorf("Has(%d) = false", id)
				}
			}
			if !slices.Equal(g.US, f.US) && !(len(g.US) == 0 && len(f.US) == 0) {
				t.Errorf("US = %+v, want %+v", g.US, f.US)
			}
			if (g.TCF == nil) != (f.TCF == nil) {
				t.Fatalf("TCF present = %v", g.TCF != nil)
			}
			if f.TCF != nil {
				if got := g.TCF.PurposesConsent.IDs(); !slices.Equal(norm(got), norm(f.TCF.PurposeConsents)) {
					t.Errorf("TCF purposes = %v, want %v", got, f.TCF.PurposeConsents)
				}
				if got := g.TCF.VendorConsents.IDs(); !slices.Equal(norm(got), norm(f.TCF.VendorConsents)) {
					t.Errorf("TCF vendors = %v, want %v", got, f.TCF.VendorConsents)
				}
				if got := g.TCF.VendorLegitimateInterests.IDs(); !slices.Equal(norm(got), norm(f.TCF.VendorLegitimateInterests)) {
					t.Errorf("TCF vendor LI = %v, want %v", got, f.TCF.VendorLegitimateInterests)
				}
				if g.TCF.CmpID != f.TCF.CmpID {
					t.Errorf("TCF cmp = %d, want %d", g.TCF.CmpID, f.TCF.CmpID)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	fx := loadFixtures(t)
	usnat := fx[0].GPP // "DBABLA~<usnat>"
	tcfOnly := ""
	for _, f := range fx {
		if f.Name == "tcf only" {
			tcfOnly = f.GPP
		}
	}
	tests := []struct {
		name string
		s    string
		tcf  bool // error also wraps tcf.ErrInvalid
	}{
		{"empty", "", false},
		{"header only, sections missing", strings.Split(usnat, "~")[0], false},
		{"extra section", usnat + "~BAAA", false},
		{"empty section", "DBABLA~", false},
		{"bad header type", "ABABLA~" + strings.Split(usnat, "~")[1], false},
		{"bad base64", "DBA*LA~CAAVAAAAAABA.QA", false},
		{"truncated header", "DBAB", false},
		{"truncated US section", "DBABLA~CA", false},
		{"US version 0", "DBABLA~AAAVAAAAAABA", false},
		{"empty gpc subsection", "DBABLA~CAAVAAAAAABA.", false},
		{"bad TCF section", strings.Split(tcfOnly, "~")[0] + "~CQuSqEAQ", true},
		{"too long", "DBABLA~" + strings.Repeat("A", MaxLen), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := Parse(tt.s)
			if !errors.Is(err, ErrInvalid) || g != nil {
				t.Fatalf("Parse = %+v, %v; want ErrInvalid", g, err)
			}
			if tt.tcf != errors.Is(err, tcf.ErrInvalid) {
				t.Errorf("wraps tcf.ErrInvalid = %v", !tt.tcf)
			}
		})
	}
}

func TestParseSID(t *testing.T) {
	tests := []struct {
		v    string
		want []int
		err  bool
	}{
		{"", nil, false},
		{"2", []int{2}, false},
		{" 2, 7 ,,8", []int{2, 7, 8}, false},
		{"-1", nil, true},
		{"2;7", nil, true},
		{"99999999999999999999", nil, true},
		{"1024", nil, true},
		{strings.Repeat("1,", 65), nil, true},
	}
	for _, tt := range tests {
		got, err := ParseSID(tt.v)
		if tt.err != (err != nil) || (err != nil && !errors.Is(err, ErrInvalid)) || !slices.Equal(got, tt.want) {
			t.Errorf("ParseSID(%q) = %v, %v", tt.v, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		f.Add(fx.GPP)
	}
	f.Add("")
	f.Add("DBABLA~")
	f.Add("DBACNYA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN")
	f.Fuzz(func(t *testing.T, s string) {
		g, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || g != nil {
				t.Fatalf("Parse = %v, %v", g, err)
			}
			return
		}
		if !slices.IsSorted(g.Sections) || len(g.Sections) != strings.Count(s, "~") {
			t.Fatalf("sections %v for %d sections", g.Sections, strings.Count(s, "~"))
		}
		for i := 1; i < len(g.Sections); i++ {
			if g.Sections[i] == g.Sections[i-1] {
				t.Fatalf("duplicate section %v", g.Sections)
			}
		}
		if (g.TCF != nil) != g.Has(SectionTCFEUv2) {
			t.Fatalf("TCF %v but sections %v", g.TCF != nil, g.Sections)
		}
		for _, u := range g.US {
			if _, ok := usLayouts[u.Section]; !ok || !g.Has(u.Section) {
				t.Fatalf("US section %d", u.Section)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for _, f := range loadFixtures(b) {
		if f.Name != "tcf and usnat and a section we skip" && f.Name != "usnat opted out of everything" {
			continue
		}
		b.Run(strings.ReplaceAll(f.Name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(f.GPP); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
