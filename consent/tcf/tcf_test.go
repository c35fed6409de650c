package tcf

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

type fixtureSet struct {
	MaxID    int    `json:"maxId"`
	Encoding string `json:"encoding"`
	IDs      []int  `json:"ids"`
}

type fixture struct {
	Name                       string      `json:"name"`
	TCString                   string      `json:"tcString"`
	Version                    int         `json:"version"`
	CreatedMs                  int64       `json:"createdMs"`
	LastUpdatedMs              int64       `json:"lastUpdatedMs"`
	CmpID                      int         `json:"cmpId"`
	CmpVersion                 int         `json:"cmpVersion"`
	ConsentScreen              int         `json:"consentScreen"`
	ConsentLanguage            string      `json:"consentLanguage"`
	VendorListVersion          int         `json:"vendorListVersion"`
	PolicyVersion              int         `json:"policyVersion"`
	IsServiceSpecific          bool        `json:"isServiceSpecific"`
	UseNonStandardTexts        bool        `json:"useNonStandardTexts"`
	SpecialFeatureOptins       []int       `json:"specialFeatureOptins"`
	PurposeConsents            []int       `json:"purposeConsents"`
	PurposeLegitimateInterests []int       `json:"purposeLegitimateInterests"`
	PurposeOneTreatment        bool        `json:"purposeOneTreatment"`
	PublisherCountryCode       string      `json:"publisherCountryCode"`
	VendorConsents             fixtureSet  `json:"vendorConsents"`
	VendorLegitimateInterests  fixtureSet  `json:"vendorLegitimateInterests"`
	VendorsDisclosed           *fixtureSet `json:"vendorsDisclosed"`
	VendorsAllowed             *fixtureSet `json:"vendorsAllowed"`
	PublisherRestrictions      []struct {
		PurposeID       int   `json:"purposeId"`
		RestrictionType int   `json:"restrictionType"`
		Vendors         []int `json:"vendors"`
	} `json:"publisherRestrictions"`
	PublisherTC *struct {
		Consents                  []int `json:"consents"`
		LegitimateInterests       []int `json:"legitimateInterests"`
		NumCustomPurposes         int   `json:"numCustomPurposes"`
		CustomConsents            []int `json:"customConsents"`
		CustomLegitimateInterests []int `json:"customLegitimateInterests"`
	} `json:"publisherTC"`
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
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Fixtures) == 0 {
		t.Fatal("no fixtures")
	}
	return doc.Fixtures
}

// ids normalises nil to empty for comparison.
func ids(v []int) []int {
	if v == nil {
		return []int{}
	}
	return v
}

func checkSet(t *testing.T, name string, got VendorSet, want fixtureSet) {
	t.Helper()
	if !got.Present() {
		t.Errorf("%s: not present", name)
	}
	if got.MaxID() != want.MaxID || got.Encoding().String() != want.Encoding {
		t.Errorf("%s: maxId %d %s, want %d %s", name, got.MaxID(), got.Encoding(), want.MaxID, want.Encoding)
	}
	if !slices.Equal(ids(got.IDs()), ids(want.IDs)) {
		t.Errorf("%s: ids %v, want %v", name, got.IDs(), want.IDs)
	}
	// Has agrees with the list at and around every boundary.
	for _, id := range append([]int{0, 1, want.MaxID, want.MaxID + 1, 65535}, want.IDs...) {
		if got.Has(id) != slices.Contains(want.IDs, id) {
			t.Errorf("%s: Has(%d) = %v", name, id, got.Has(id))
		}
	}
}

// TestFixtures decodes every string the IAB reference encoder produced and
// compares every field with what the reference decoder read back.
func TestFixtures(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range loadFixtures(t) {
		t.Run(f.Name, func(t *testing.T) {
			tc, err := Decode(f.TCString)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			scalars := []struct {
				name      string
				got, want any
			}{
				{"version", tc.Version, f.Version},
				{"created", tc.Created, time.UnixMilli(f.CreatedMs).UTC()},
				{"lastUpdated", tc.LastUpdated, time.UnixMilli(f.LastUpdatedMs).UTC()},
				{"cmpId", tc.CmpID, f.CmpID},
				{"cmpVersion", tc.CmpVersion, f.CmpVersion},
				{"consentScreen", tc.ConsentScreen, f.ConsentScreen},
				{"consentLanguage", tc.ConsentLanguage, f.ConsentLanguage},
				{"vendorListVersion", tc.VendorListVersion, f.VendorListVersion},
				{"policyVersion", tc.PolicyVersion, f.PolicyVersion},
				{"isServiceSpecific", tc.IsServiceSpecific, f.IsServiceSpecific},
				{"useNonStandardTexts", tc.UseNonStandardTexts, f.UseNonStandardTexts},
				{"purposeOneTreatment", tc.PurposeOneTreatment, f.PurposeOneTreatment},
				{"publisherCC", tc.PublisherCC, f.PublisherCountryCode},
				{"specialFeatureOptins", ids(tc.SpecialFeatureOptins.IDs()), ids(f.SpecialFeatureOptins)},
				{"purposeConsents", ids(tc.PurposesConsent.IDs()), ids(f.PurposeConsents)},
				{"purposeLI", ids(tc.PurposesLITransparency.IDs()), ids(f.PurposeLegitimateInterests)},
			}
			for _, s := range scalars {
				if g, w := jsonOf(s.got), jsonOf(s.want); g != w {
					t.Errorf("%s = %s, want %s", s.name, g, w)
				}
			}
			for id := 0; id <= 25; id++ {
				if tc.PurposeConsent(id) != slices.Contains(f.PurposeConsents, id) || tc.PurposeLI(id) != slices.Contains(f.PurposeLegitimateInterests, id) {
					t.Errorf("purpose %d: consent %v li %v", id, tc.PurposeConsent(id), tc.PurposeLI(id))
				}
			}
			checkSet(t, "vendorConsents", tc.VendorConsents, f.VendorConsents)
			checkSet(t, "vendorLI", tc.VendorLegitimateInterests, f.VendorLegitimateInterests)
			for _, id := range f.VendorConsents.IDs {
				if !tc.VendorConsent(id) {
					t.Errorf("VendorConsent(%d) = false", id)
				}
			}
			for _, id := range f.VendorLegitimateInterests.IDs {
				if !tc.VendorLI(id) {
					t.Errorf("VendorLI(%d) = false", id)
				}
			}
			seen["consents "+f.VendorConsents.Encoding] = true
			seen["li "+f.VendorLegitimateInterests.Encoding] = true
			for _, opt := range []struct {
				name string
				got  VendorSet
				want *fixtureSet
			}{{"disclosed", tc.DisclosedVendors, f.VendorsDisclosed}, {"allowed", tc.AllowedVendors, f.VendorsAllowed}} {
				if opt.want == nil {
					if opt.got.Present() {
						t.Errorf("%s present, want absent", opt.name)
					}
					continue
				}
				seen[opt.name+" "+opt.want.Encoding] = true
				checkSet(t, opt.name, opt.got, *opt.want)
			}
			// Restrictions: the reference merges entries by (purpose, type).
			type key struct{ p, typ int }
			got := map[key][]int{}
			for _, r := range tc.PublisherRestrictions {
				k := key{r.PurposeID, int(r.Type)}
				got[k] = append(got[k], r.Vendors.IDs()...)
			}
			if len(got) != len(f.PublisherRestrictions) {
				t.Errorf("%d restriction groups, want %d", len(got), len(f.PublisherRestrictions))
			}
			for _, w := range f.PublisherRestrictions {
				k := key{w.PurposeID, w.RestrictionType}
				g := slices.Clone(got[k])
				slices.Sort(g)
				if !slices.Equal(g, w.Vendors) {
					t.Errorf("restriction %v: vendors %v, want %v", k, g, w.Vendors)
				}
				seen["restriction "+RestrictionType(w.RestrictionType).String()] = true
				for _, v := range w.Vendors {
					if rt, ok := tc.Restriction(w.PurposeID, v); !ok || (rt != RestrictionType(w.RestrictionType) && rt != NotAllowed) {
						t.Errorf("Restriction(%d, %d) = %v, %v", w.PurposeID, v, rt, ok)
					}
				}
			}
			if _, ok := tc.Restriction(63, 65535); ok {
				t.Error("restriction from nowhere")
			}
			if (tc.Publisher == nil) != (f.PublisherTC == nil) {
				t.Fatalf("publisher TC present = %v", tc.Publisher != nil)
			}
			if p, w := tc.Publisher, f.PublisherTC; p != nil {
				seen["publisher tc"] = true
				if !slices.Equal(ids(p.Consents.IDs()), ids(w.Consents)) || !slices.Equal(ids(p.LITransparency.IDs()), ids(w.LegitimateInterests)) ||
					p.NumCustomPurposes != w.NumCustomPurposes || !slices.Equal(ids(p.CustomConsents.IDs()), ids(w.CustomConsents)) ||
					!slices.Equal(ids(p.CustomLITransparency.IDs()), ids(w.CustomLegitimateInterests)) {
					t.Errorf("publisher TC = %+v, want %+v", *p, *w)
				}
			}
		})
	}
	// The fixture set must exercise every encoding and segment.
	for _, k := range []string{"consents bitfield", "consents range", "li bitfield", "li range", "disclosed bitfield", "disclosed range",
		"allowed bitfield", "restriction not_allowed", "restriction require_consent", "restriction require_li", "publisher tc"} {
		if !seen[k] {
			t.Errorf("fixtures never exercise %s", k)
		}
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// bitWriter builds TC strings bit by bit for the error cases.
type bitWriter struct{ bits []byte }

func (w *bitWriter) put(v uint64, n int) *bitWriter {
	for i := n - 1; i >= 0; i-- {
		w.bits = append(w.bits, byte(v>>uint(i)&1))
	}
	return w
}

func (w *bitWriter) String() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := slices.Clone(w.bits)
	for len(b)%6 != 0 {
		b = append(b, 0)
	}
	var sb strings.Builder
	for i := 0; i < len(b); i += 6 {
		v := 0
		for _, x := range b[i : i+6] {
			v = v<<1 | int(x)
		}
		sb.WriteByte(alphabet[v])
	}
	return sb.String()
}

// core writes a core segment up to (not including) the vendor consents.
func core(version uint64, lang uint64) *bitWriter {
	w := &bitWriter{}
	w.put(version, 6).put(17000000000, 36).put(17000000000, 36).put(7, 12).put(1, 12).put(0, 6)
	w.put(lang, 12).put(100, 12).put(4, 6).put(0, 1).put(0, 1).put(0, 12)
	w.put(1<<23, 24).put(0, 24).put(0, 1).put(5<<6|17, 12) // purpose 1 consented, CC "FR"
	return w
}

// emptySet writes an empty bitfield vendor set.
func emptySet(w *bitWriter) *bitWriter { return w.put(0, 16).put(0, 1) }

// rangeSet writes a range vendor set with entries [start,end].
func rangeSet(w *bitWriter, maxID int, entries ...[2]int) *bitWriter {
	w.put(uint64(maxID), 16).put(1, 1).put(uint64(len(entries)), 12)
	for _, e := range entries {
		if e[0] == e[1] {
			w.put(0, 1).put(uint64(e[0]), 16)
		} else {
			w.put(1, 1).put(uint64(e[0]), 16).put(uint64(e[1]), 16)
		}
	}
	return w
}

func TestDecodeHandBuilt(t *testing.T) {
	const en = 4<<6 | 13
	valid := func() *bitWriter { return emptySet(emptySet(core(2, en))).put(0, 12) }
	restriction := func(purpose, typ int, entries ...[2]int) string {
		w := emptySet(emptySet(core(2, en))).put(1, 12).put(uint64(purpose), 6).put(uint64(typ), 2).put(uint64(len(entries)), 12)
		for _, e := range entries {
			w.put(1, 1).put(uint64(e[0]), 16).put(uint64(e[1]), 16)
		}
		return w.String()
	}
	seg := func(typ int, f func(*bitWriter)) string {
		w := (&bitWriter{}).put(uint64(typ), 3)
		f(w)
		return w.String()
	}
	disclosed := seg(1, func(w *bitWriter) { rangeSet(w, 9, [2]int{3, 9}) })
	tests := []struct {
		name string
		s    string
		ok   bool
	}{
		{"valid minimal", valid().String(), true},
		{"valid range consents", emptySet(rangeSet(core(2, en), 10, [2]int{1, 3}, [2]int{10, 10})).put(0, 12).String(), true},
		{"valid restriction", restriction(2, 1, [2]int{5, 70}), true},
		{"valid disclosed", valid().String() + "." + disclosed, true},
		{"empty", "", false},
		{"version 1", emptySet(emptySet(core(1, en))).put(0, 12).String(), false},
		{"version 3", emptySet(emptySet(core(3, en))).put(0, 12).String(), false},
		{"truncated core", valid().String()[:20], false},
		{"truncated before restrictions", emptySet(emptySet(core(2, en))).String()[:40], false},
		{"bad base64", "CO*" + valid().String()[3:], false},
		{"padding", valid().String() + "==", false},
		{"bad language letter", emptySet(emptySet(core(2, 30<<6|1))).put(0, 12).String(), false},
		{"range end before start", emptySet(rangeSet(core(2, en), 10, [2]int{5, 3})).put(0, 12).String(), false},
		{"range beyond max id", emptySet(rangeSet(core(2, en), 10, [2]int{5, 11})).put(0, 12).String(), false},
		{"range vendor zero", emptySet(rangeSet(core(2, en), 10, [2]int{0, 0})).put(0, 12).String(), false},
		{"range count larger than input", emptySet(core(2, en)).put(10, 16).put(1, 1).put(4095, 12).String(), false},
		{"bitfield longer than input", emptySet(core(2, en)).put(65535, 16).put(0, 1).String(), false},
		{"restriction type 3", restriction(2, 3, [2]int{1, 2}), false},
		{"restriction purpose 0", restriction(0, 0, [2]int{1, 2}), false},
		{"restriction range reversed", restriction(2, 0, [2]int{9, 2}), false},
		{"restriction count larger than input", emptySet(emptySet(core(2, en))).put(4095, 12).String(), false},
		{"unknown segment type", valid().String() + "." + seg(5, func(w *bitWriter) { w.put(0, 20) }), false},
		{"core segment twice", valid().String() + "." + valid().String(), false},
		{"repeated disclosed", valid().String() + "." + disclosed + "." + disclosed, false},
		{"empty segment", valid().String() + ".", false},
		{"truncated publisher TC", valid().String() + "." + seg(3, func(w *bitWriter) { w.put(0, 48).put(63, 6) }), false},
		{"too long", valid().String() + "." + seg(1, func(w *bitWriter) { w.put(0, 6*MaxLen) }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := Decode(tt.s)
			if tt.ok {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !tc.PurposeConsent(1) || tc.PurposeConsent(2) || tc.PublisherCC != "FR" || tc.ConsentLanguage != "EN" || tc.CmpID != 7 {
					t.Errorf("decoded %+v", tc)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || tc != nil {
				t.Fatalf("Decode = %v, %v; want ErrInvalid", tc, err)
			}
			if len(tt.s) > 8 && strings.Contains(err.Error(), tt.s[:8]) {
				t.Errorf("error quotes the input: %v", err)
			}
		})
	}
	tc, err := Decode(emptySet(rangeSet(core(2, en), 10, [2]int{1, 3}, [2]int{10, 10})).put(0, 12).String())
	if err != nil {
		t.Fatal(err)
	}
	if got := tc.VendorConsents.IDs(); !slices.Equal(got, []int{1, 2, 3, 10}) || tc.VendorConsent(4) || tc.VendorConsents.Encoding() != Range {
		t.Errorf("range ids %v", got)
	}
	tc, err = Decode(restriction(2, 1, [2]int{5, 70}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p, v int
		ok   bool
	}{{2, 5, true}, {2, 70, true}, {2, 4, false}, {2, 71, false}, {3, 5, false}} {
		if rt, ok := tc.Restriction(c.p, c.v); ok != c.ok || (ok && rt != RequireConsent) {
			t.Errorf("Restriction(%d,%d) = %v, %v", c.p, c.v, rt, ok)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, fx := range loadFixtures(f) {
		f.Add(fx.TCString)
	}
	f.Add("")
	f.Add("CPzHq4APzHq4AAHABBENAXEAAP_gAAAAAAAAJNNV")
	f.Add("A.B.C")
	f.Fuzz(func(t *testing.T, s string) {
		tc, err := Decode(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || tc != nil {
				t.Fatalf("Decode = %v, %v", tc, err)
			}
			return
		}
		if tc.Version != 2 || len(tc.ConsentLanguage) != 2 || len(tc.PublisherCC) != 2 {
			t.Fatalf("accepted bad header: %+v", tc)
		}
		for _, vs := range []VendorSet{tc.VendorConsents, tc.VendorLegitimateInterests, tc.DisclosedVendors, tc.AllowedVendors} {
			if vs.MaxID() > maxVendorID {
				t.Fatalf("max id %d", vs.MaxID())
			}
			for _, id := range []int{-1, 0, 1, vs.MaxID(), vs.MaxID() + 1} {
				_ = vs.Has(id)
			}
		}
		for _, r := range tc.PublisherRestrictions {
			if r.Type > RequireLI || r.PurposeID < 1 {
				t.Fatalf("bad restriction %+v", r)
			}
			_, _ = tc.Restriction(r.PurposeID, r.Vendors.MaxID())
		}
		if tc.Publisher != nil && tc.Publisher.NumCustomPurposes > 63 {
			t.Fatalf("custom purposes %d", tc.Publisher.NumCustomPurposes)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for _, f := range loadFixtures(b) {
		b.Run(strings.ReplaceAll(f.Name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(f.TCString)))
			for b.Loop() {
				if _, err := Decode(f.TCString); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
