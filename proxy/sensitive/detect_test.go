package sensitive

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func detector(t testing.TB, p Policy) *Detector {
	t.Helper()
	d, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func scan(t testing.TB, d *Detector, in Input) *Findings {
	t.Helper()
	var f Findings
	d.Scan(&in, &f)
	return &f
}

func TestTermListsParse(t *testing.T) {
	tr, err := loadTrie()
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.nodes) < 1000 {
		t.Errorf("only %d trie nodes", len(tr.nodes))
	}
	// Every category has terms for the names and page layers in every
	// language; the values layer is health only.
	for _, lang := range Languages {
		data, _ := termFiles.ReadFile("terms/" + lang + ".txt")
		b := newBuilder()
		if err := parseTerms(b, lang, string(data)); err != nil {
			t.Fatal(err)
		}
		lt := b.freeze()
		var names, page, values Categories
		for _, in := range lt.infos {
			names |= in[LayerNames]
			page |= in[LayerPage]
			values |= in[LayerValues]
		}
		for c := Category(0); c < NationalID; c++ {
			if !names.Has(c) || !page.Has(c) {
				t.Errorf("%s: %s lacks names or page terms", lang, c)
			}
		}
		if values != 0 && values != (Categories(0)).With(Health) {
			t.Errorf("%s: values layer has %v, want health only", lang, values.Names())
		}
	}
}

func TestTermSyntaxErrors(t *testing.T) {
	for _, text := range []string{
		"diabetes",                       // outside a section
		"[health]\nx",                    // no layers
		"[healthy: names]\nx",            // unknown category
		"[health: names brains]\nx",      // unknown layer
		"[health: names]\nab*",           // stem too short
		"[health: names]\ntumor+",        // + without @endings
		"[health: names]\nme*dical",      // * inside
		"@stems x\n[health: names]\nabc", // unknown directive
	} {
		if err := parseTerms(newBuilder(), "t", text); err == nil {
			t.Errorf("%q parsed", text)
		}
	}
}

func TestNormalize(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"bloodType", "blood type"},
		{"HIVStatus", "hiv status"},
		{"medical_condition", "medical condition"},
		{"MEDICAL-CONDITION", "medical condition"},
		{"Diabète  de type 2", "diabete de type 2"},
		{"Straße", "strasse"},
		{"l'hôpital", "l hopital"},
		{"e\u0301cole", "ecole"},
		{"Œuvre Ærø", "oeuvre aero"},
		{"  --x--  ", "x"},
		{"covid19", "covid19"},
		{"ÉGLISE", "eglise"},
		{"Ψυχιατρική", "ψυχιατρική"}, // other scripts: lower-cased only
		{"", ""},
	} {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Modes: JSON escapes and URL escapes are decoded.
	read := func(s string, mode uint8) string {
		n := newNorm(s, mode)
		var b []byte
		for {
			c, ok := n.next()
			if !ok {
				return string(b)
			}
			b = append(b, c)
		}
	}
	if got := read(`diab\u00e8te\nsant\u00E9`, srcJSON); got != "diabete sante" {
		t.Errorf("JSON mode: %q", got)
	}
	if got := read("/sant%C3%A9/diab%C3%A8te%2", srcURL); got != "sante diabete 2" {
		t.Errorf("URL mode: %q", got)
	}
}

// fixture is one detection the lists must make.
type fixture struct {
	lang  string
	cat   Category
	layer Layer
	in    Input
}

func props(kv ...string) []byte {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return b
}

// nameFixtures are property or trait names, per language and category.
var nameFixtures = map[string][NationalID]string{
	"en": {"medicalCondition", "ethnicity", "religion", "political_party", "union_member", "sexual_orientation", "biometric_id", "genetic_test_result", "criminal_record"},
	"fr": {"etat_de_sante", "origine_ethnique", "confession_religieuse", "opinion_politique", "adhesion_syndicale", "orientation_sexuelle", "empreinte_digitale", "test_genetique", "casier_judiciaire"},
	"de": {"Gesundheitszustand", "ethnische_Herkunft", "Religionszugehörigkeit", "Parteimitgliedschaft", "Gewerkschaftsmitglied", "sexuelle_Orientierung", "Fingerabdruck", "Gentest", "Vorstrafen"},
	"es": {"estado_de_salud", "origen_etnico", "religión", "afiliación_política", "afiliación_sindical", "orientación_sexual", "huella_dactilar", "prueba_genética", "antecedentes_penales"},
	"it": {"stato_di_salute", "origine_etnica", "religione", "orientamento_politico", "iscrizione_al_sindacato", "orientamento_sessuale", "impronta_digitale", "test_genetico", "casellario_giudiziale"},
}

// pageFixtures are page paths (path, then a title), per language and
// category.
var pageFixtures = map[string][NationalID][2]string{
	"en": {
		{"/conditions/type-2-diabetes", "Living with multiple sclerosis"},
		{"/survey/ethnic-background", "Ethnicity and inclusion"},
		{"/community/mosques", "Find a synagogue near you"},
		{"/join/political-party", "Voting intentions 2026"},
		{"/trade-union/join", "Become a union member"},
		{"/lgbtq/events", "Online dating for bisexual singles"},
		{"/security/facial-recognition", "Biometric login"},
		{"/shop/dna-test-kit", "Genetic testing explained"},
		{"/jobs/criminal-record-check", "Criminal history disclosure"},
	},
	"fr": {
		{"/sante/diabete-de-type-2", "Vivre avec la sclérose en plaques"},
		{"/enquete/origine-ethnique", "Origines ethniques et diversité"},
		{"/communaute/mosquees", "Trouver une église"},
		{"/adherer/parti-politique", "Intentions de vote 2026"},
		{"/syndicat/adherer", "Rejoindre la CFDT"},
		{"/rencontres/site-de-rencontre-lesbienne", "Orientation sexuelle et travail"},
		{"/securite/reconnaissance-faciale", "Empreintes digitales et accès"},
		{"/boutique/test-adn", "Le test génétique expliqué"},
		{"/emploi/extrait-de-casier-judiciaire", "Condamnations pénales"},
	},
	"de": {
		{"/ratgeber/diabetes-typ-2", "Leben mit Multipler Sklerose"},
		{"/umfrage/ethnische-herkunft", "Migrationshintergrund und Beruf"},
		{"/gemeinde/moscheen", "Katholische Gottesdienste"},
		{"/mitmachen/partei", "Wahlabsicht 2026"},
		{"/gewerkschaft/beitreten", "IG Metall Mitglied werden"},
		{"/community/schwule-und-lesben", "Sexuelle Orientierung am Arbeitsplatz"},
		{"/sicherheit/gesichtserkennung", "Fingerabdrücke und Zugang"},
		{"/shop/gentest", "Genetische Untersuchung erklärt"},
		{"/jobs/fuehrungszeugnis", "Vorstrafen angeben"},
	},
	"es": {
		{"/salud/diabetes-tipo-2", "Vivir con esclerosis múltiple"},
		{"/encuesta/origen-etnico", "Grupos étnicos y diversidad"},
		{"/comunidad/mezquitas", "Encuentra una sinagoga"},
		{"/afiliate/partido-politico", "Intención de voto 2026"},
		{"/sindicato/afiliate", "Afiliación sindical"},
		{"/citas/app-de-citas-lesbianas", "Orientación sexual y trabajo"},
		{"/seguridad/reconocimiento-facial", "Huellas dactilares y acceso"},
		{"/tienda/prueba-de-adn", "La prueba genética explicada"},
		{"/empleo/certificado-de-antecedentes-penales", "Historial delictivo"},
	},
	"it": {
		{"/salute/diabete-tipo-2", "Vivere con la sclerosi multipla"},
		{"/sondaggio/origine-etnica", "Gruppi etnici e diversità"},
		{"/comunita/moschee", "Trova una sinagoga"},
		{"/iscriviti/partito-politico", "Intenzione di voto 2026"},
		{"/sindacato/iscriviti", "Iscrizione al sindacato"},
		{"/incontri/app-di-incontri-lesbiche", "Orientamento sessuale e lavoro"},
		{"/sicurezza/riconoscimento-facciale", "Impronte digitali e accesso"},
		{"/negozio/test-del-dna", "Il test genetico spiegato"},
		{"/lavoro/certificato-penale", "Precedenti penali"},
	},
}

// valueFixtures are free-text health values, per language.
var valueFixtures = map[string][]string{
	"en": {"I was diagnosed with diabetes last year", "refill of my antidepressants", "Hearing aids for my father"},
	"fr": {"j'ai été diagnostiquée l'an dernier", "suivi de ma chimiothérapie", "un fauteuil roulant pour ma mère"},
	"de": {"Ich habe seit Jahren Diabetes", "Termin zur Chemotherapie", "Hörgeräte für meinen Vater"},
	"es": {"me diagnosticaron diabetes", "sesión de quimioterapia", "audífonos para mi padre"},
	"it": {"mi hanno diagnosticato il diabete", "ciclo di chemioterapia", "una sedia a rotelle per mia madre"},
}

// TestFixtures: every category in every language, in every layer it has.
func TestFixtures(t *testing.T) {
	d := detector(t, DefaultPolicy())
	var fs []fixture
	for _, lang := range Languages {
		for c := Category(0); c < NationalID; c++ {
			name := nameFixtures[lang][c]
			fs = append(fs,
				fixture{lang, c, LayerNames, Input{Properties: props(name, "x")}},
				fixture{lang, c, LayerNames, Input{Traits: []byte(`{"profile":{"answers":[{"` + name + `":true}]}}`)}},
				fixture{lang, c, LayerPage, Input{Path: pageFixtures[lang][c][0]}},
				fixture{lang, c, LayerPage, Input{Title: pageFixtures[lang][c][1]}},
				fixture{lang, c, LayerPage, Input{Name: pageFixtures[lang][c][1]}},
			)
		}
		for _, v := range valueFixtures[lang] {
			fs = append(fs, fixture{lang, Health, LayerValues, Input{Properties: props("message", v)}})
		}
	}
	for _, f := range fs {
		got := scan(t, d, f.in)
		if !got.Layers[f.layer].Has(f.cat) {
			t.Errorf("%s %s %s: %+v: found %s", f.lang, f.cat, f.layer, f.in.pretty(), got.String())
		}
	}
}

func (in Input) pretty() string {
	return strings.TrimSpace(string(in.Properties) + " " + string(in.Traits) + " " + in.Path + " " + in.Title + " " + in.Name)
}

// TestWordBoundaries: terms match whole words only (with their declared
// stems and endings), never inside other words.
func TestWordBoundaries(t *testing.T) {
	d := detector(t, DefaultPolicy())
	for _, tt := range []struct {
		title string
		want  Categories
	}{
		{"Healthy snacks", 0},
		{"Health & Beauty", 0},
		{"Gluten-free and genetically modified free", 0},
		{"Party supplies", 0},
		{"Credit union savings", 0},
		{"European Union shipping", 0},
		{"Christian Dior perfume", 0},
		{"Diabetic socks", Categories(0).With(Health)},
		{"Tumors", Categories(0).With(Health)},
		{"Diabetes-friendly recipes", Categories(0).With(Health)},
		{"Hiving bees", 0},
		{"The Syndicate (film)", 0},
		{"Gewerkschaftsbund", Categories(0).With(TradeUnion)},
		{"Schwangerschaftstest kaufen", Categories(0).With(Health)},
		{"Transgender", Categories(0).With(SexLife)},
		{"transgenders", Categories(0).With(SexLife)},
	} {
		got := scan(t, d, Input{Title: tt.title})
		if got.Layers[LayerPage] != tt.want {
			t.Errorf("%q: %s, want %v", tt.title, got.String(), tt.want.Names())
		}
	}
}

func TestNationalIDValues(t *testing.T) {
	d := detector(t, DefaultPolicy())
	for _, tt := range []struct {
		props string
		want  bool
	}{
		{`{"nir":"1 85 05 78 006 084 91"}`, true},
		{`{"ssn":"078-05-1120"}`, true},
		{`{"n":185057800608491}`, true},
		{`{"phone":"+33 6 12 34 56 78"}`, false},
		{`{"at":"2026-11-26T10:00:00.123Z","uuid":"6f1c2b7a-0d3e-4c55-8a9b-2e1f0c3d4b5a"}`, false},
		{`{"order":1764151200123,"price":59.9}`, false},
	} {
		got := scan(t, d, Input{Properties: []byte(tt.props)})
		if got.Layers[LayerValues].Has(NationalID) != tt.want {
			t.Errorf("%s: %s, want national_id %v", tt.props, got.String(), tt.want)
		}
	}
}

func TestSensitivePaths(t *testing.T) {
	p := DefaultPolicy()
	p.Page = false // only the declared paths
	p.Paths = []PathRule{
		{Pattern: "/clinic/*", Category: Health},
		{Pattern: "/shop/*/pharmacy", Category: Health},
		{Pattern: "/sante-*/", Category: Health},
		{Pattern: "/vote", Category: PoliticalOpinion},
	}
	d := detector(t, p)
	for _, tt := range []struct {
		path string
		want Categories
	}{
		{"/clinic", Categories(0).With(Health)},
		{"/clinic/", Categories(0).With(Health)},
		{"/Clinic/oncology/rdv", Categories(0).With(Health)},
		{"/clinics", 0},
		{"/shop/fr/pharmacy", Categories(0).With(Health)},
		{"/shop/fr/pharmacy/x", 0},
		{"/sant%65-femmes", Categories(0).With(Health)},
		{"/vote/", Categories(0).With(PoliticalOpinion)},
		{"/vote/results", 0},
		{"//vote", Categories(0).With(PoliticalOpinion)},
		{"/", 0},
	} {
		got := scan(t, d, Input{Path: tt.path})
		if got.Layers[LayerSensitivePaths] != tt.want || got.Categories != tt.want {
			t.Errorf("%q: %s, want %v", tt.path, got.String(), tt.want.Names())
		}
	}
	for _, bad := range []string{"clinic/*", "/a?b", "/a//b", "/a/**", ""} {
		if _, err := New(Policy{Paths: []PathRule{{Pattern: bad}}}); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
	f := scan(t, d, Input{Path: "/clinic/x"})
	if len(f.Hits) != 1 || f.Hits[0].Pattern != "/clinic/*" || f.Hits[0].Layer != LayerSensitivePaths || f.Hits[0].Field != "page.path" {
		t.Errorf("hits: %+v", f.Hits)
	}
}

// TestLayersOff: a layer switched off finds nothing.
func TestLayersOff(t *testing.T) {
	in := Input{Properties: []byte(`{"religion":"x","note":"diabetes"}`), Path: "/lgbt/", Title: "Gewerkschaft"}
	for _, tt := range []struct {
		name  string
		set   func(*Policy)
		layer Layer
	}{
		{"names", func(p *Policy) { p.Names = false }, LayerNames},
		{"values", func(p *Policy) { p.Values = false }, LayerValues},
		{"page", func(p *Policy) { p.Page = false }, LayerPage},
	} {
		p := DefaultPolicy()
		tt.set(&p)
		f := scan(t, detector(t, p), in)
		if f.Layers[tt.layer] != 0 {
			t.Errorf("%s off: %s", tt.name, f.String())
		}
		for l := LayerNames; l <= LayerPage; l++ {
			if l != tt.layer && f.Layers[l] == 0 {
				t.Errorf("%s off: layer %s lost too: %s", tt.name, l, f.String())
			}
		}
	}
}

// TestHitsRedacted: hits name fields, never values; examples replace the
// match by its marker and are scrubbed.
func TestHitsRedacted(t *testing.T) {
	d := detector(t, DefaultPolicy())
	f := scan(t, d, Input{
		Properties: []byte(`{"form":{"medicalHistory":"asthma since 2001","notes":"Diagnosed with HIV, call jane@example.org"}}`),
		Path:       "/users/jane@example.org/oncology",
		Title:      "Oncology appointment for Mr John Smith",
	})
	want := map[string]Hit{
		"health/names":  {Field: "properties.form.medicalHistory", Example: "properties.form.[health]History"},
		"health/values": {Field: "properties.form.medicalHistory", Example: "[health]"},
		"health/page":   {Field: "page.path", Example: "/users/[email]/[health]"},
	}
	got := map[string]Hit{}
	for _, h := range f.Hits {
		got[h.Category.String()+"/"+h.Layer.String()] = Hit{Field: h.Field, Example: h.Example}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
	for _, h := range f.Hits {
		for _, secret := range []string{"asthma", "2001", "jane", "HIV", "John", "Smith"} {
			if strings.Contains(h.Example+h.Field, secret) {
				t.Errorf("hit %+v shows %q", h, secret)
			}
		}
	}
}

func TestVerdict(t *testing.T) {
	p := DefaultPolicy()
	p.Actions[Health] = DropField
	p.Actions[Religion] = DropEvent
	p.Actions[SexLife] = RequireConsent
	d := detector(t, p)
	for _, tt := range []struct {
		name    string
		in      Input
		granted bool
		want    Verdict
	}{
		{"nothing", Input{Title: "Shoes"}, false, Verdict{}},
		{"drop field", Input{Title: "Diabetes"}, false, Verdict{DropFields: Categories(0).With(Health)}},
		{"drop event wins", Input{Title: "Diabetes at the mosque"}, false, Verdict{DropEvent: true, DropFields: Categories(0).With(Health)}},
		{"consent missing", Input{Title: "LGBT"}, false, Verdict{Anonymous: true}},
		{"consent given", Input{Title: "LGBT"}, true, Verdict{}},
		{"anonymous default", Input{Title: "Trade union"}, true, Verdict{Anonymous: true}},
	} {
		if got := d.Verdict(scan(t, d, tt.in), tt.granted); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestStrip(t *testing.T) {
	d := detector(t, DefaultPolicy())
	raw := []byte(`{"a":1, "religion" : "x", "items":[{"sku":"9","allergies":["nuts"]},{"sku":"10"}],"note":"chemotherapy day","z":{"medical":{"deep":1}}}`)
	f := scan(t, d, Input{Properties: raw})
	if got := string(f.StripProperties(raw, Categories(0).With(Health))); got != `{"a":1,"religion":"x","items":[{"sku":"9"},{"sku":"10"}],"z":{}}` {
		t.Errorf("strip health: %s", got)
	}
	if got := string(f.StripProperties(raw, f.Categories)); got != `{"a":1,"items":[{"sku":"9"},{"sku":"10"}],"z":{}}` {
		t.Errorf("strip all: %s", got)
	}
	if got := f.StripProperties(raw, Categories(0).With(Genetic)); &got[0] != &raw[0] {
		t.Error("nothing to strip: raw should come back as is")
	}
	if got := string(DropMembers([]byte(`{"path":"/x","url":"u","title":"t","k":[1,2]}`), "path", "url")); got != `{"title":"t","k":[1,2]}` {
		t.Errorf("DropMembers: %s", got)
	}
	var v any
	for _, s := range [][]byte{f.StripProperties(raw, f.Categories), DropMembers(raw, "a", "z")} {
		if err := json.Unmarshal(s, &v); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}

// TestFastPathAgrees: the stack fast path reads what the iterator reads.
func TestFastPathAgrees(t *testing.T) {
	for _, s := range []string{"bloodType", "HIVStatus", "x", "ABCdef", "a1B2c3", "  --x--  ", "covid19Test", "URLPath", "a\\nb", "%41b"} {
		for _, mode := range []uint8{srcPlain, srcJSON, srcURL} {
			var buf [fastLen]byte
			n, ok := normalizeASCII(&buf, s, mode)
			if !ok {
				continue
			}
			it := newNorm(s, mode)
			var b []byte
			for {
				c, ok := it.next()
				if !ok {
					break
				}
				b = append(b, c)
			}
			if string(buf[:n]) != string(b) {
				t.Errorf("%q mode %d: fast %q, iterator %q", s, mode, buf[:n], b)
			}
		}
	}
}

func TestNames(t *testing.T) {
	for c := Category(0); c < NumCategories; c++ {
		got, err := ParseCategory(c.String())
		if err != nil || got != c || c.Label() == "" || c.Article() == "" {
			t.Errorf("%d: %v %v", c, got, err)
		}
	}
	if _, err := ParseCategory("healthy"); !errors.Is(err, ErrUnknownCategory) {
		t.Errorf("healthy: %v", err)
	}
	for _, l := range AllLayers() {
		if got, err := ParseLayer(l.String()); err != nil || got != l {
			t.Errorf("%v: %v", l, err)
		}
	}
	if _, err := ParseLayer("titles"); !errors.Is(err, ErrUnknownLayer) {
		t.Errorf("titles: %v", err)
	}
	for _, a := range []Action{Anonymous, DropField, DropEvent, RequireConsent} {
		if got, err := ParseAction(a.String()); err != nil || got != a {
			t.Errorf("%v: %v", a, err)
		}
	}
	s := Categories(0).With(SexLife).With(Health)
	if !slices.Equal(s.Names(), []string{"health", "sex_life"}) {
		t.Error(s.Names())
	}
}
