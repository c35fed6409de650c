package register

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/sdk"
)

func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Organization = config.Organization{Name: "Shop SAS", Address: "1 rue de la Paix, Paris", Contact: "privacy@shop.example",
		DPO: config.Party{Name: "Ada DPO", Contact: "dpo@shop.example"}}
	cfg.Purposes = append(cfg.Purposes, consent.PurposeInfo{Name: "research", Description: "Product research panels."})
	cfg.Retention["research"] = config.Duration(90 * 24 * time.Hour)
	cfg.Retention["marketing"] = config.Duration(200 * 24 * time.Hour)
	cfg.Sites = append(cfg.Sites, config.Site{ID: "shop", WriteKeys: []string{"k"}, Consent: config.ConsentPolicy{Unconsented: "drop"}})
	cfg.Plugins = append(config.DefaultPlugins(), config.Plugin{Name: "crm", Path: "/opt/crm", SHA256: strings.Repeat("a", 64)})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRegisterListsEveryPurposePluginAndRetention(t *testing.T) {
	cfg := testConfig(t)
	ps := Plugins(cfg, nil)
	// The external plugin's manifest as the running server would know it.
	for i := range ps {
		if ps[i].Name == "crm" {
			ps[i].Manifest = &sdk.Manifest{Name: "crm", Version: "1", Description: "Syncs contacts to the CRM.",
				Kinds: []sdk.Kind{sdk.KindSyncer}, Purposes: []string{"marketing"}, Capabilities: []sdk.Capability{sdk.CapContactsResolve}}
		}
	}
	reg := Build(Input{Config: cfg, Plugins: ps, Generator: "Vigie test",
		Recipients:  []Recipient{{Name: "Acme CRM", Kind: Processor, Receives: "contacts", PersonalData: true, Purposes: []string{"marketing"}, Country: "us", Guarantee: "SCCs"}},
		GeneratedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})

	// Every configured purpose has a fiche, and anonymous counts too (the
	// demo site keeps them).
	var refs []string
	for _, a := range reg.Activities {
		refs = append(refs, a.Reference.Value)
	}
	for _, p := range cfg.Purposes {
		if !slices.Contains(refs, "vigie-"+string(p.Name)) {
			t.Errorf("no activity for purpose %s: %v", p.Name, refs)
		}
	}
	if !slices.Contains(refs, "vigie-anonymous") {
		t.Errorf("no activity for anonymous counts: %v", refs)
	}
	act := func(ref string) Activity {
		for _, a := range reg.Activities {
			if a.Reference.Value == "vigie-"+ref {
				return a
			}
		}
		t.Fatalf("no activity %s", ref)
		return Activity{}
	}

	// Every plugin is a recipient of the activities whose data it gets.
	names := func(a Activity) (out []string) {
		for _, r := range a.Recipients.Value {
			out = append(out, strings.Fields(r.Name)[0])
		}
		return out
	}
	wantRecipients := map[string][]string{
		"marketing":       {"Vigie", "geoip", "segments", "crm", "Acme"},
		"analytics":       {"Vigie", "geoip"},
		"personalization": {"Vigie", "geoip", "segments"},
		"necessary":       {"Vigie", "geoip"},
		"anonymous":       {"Vigie", "geoip"},
	}
	for ref, want := range wantRecipients {
		if got := names(act(ref)); !slices.Equal(got, want) {
			t.Errorf("%s recipients %v, want %v", ref, got, want)
		}
	}
	for _, r := range act("marketing").Recipients.Value {
		if strings.HasPrefix(r.Name, "crm") && (!r.PersonalData || !strings.Contains(r.Receives, "contact details")) {
			t.Errorf("contacts.resolve plugin not shown receiving personal data: %+v", r)
		}
		if strings.HasPrefix(r.Name, "geoip") && r.PersonalData {
			t.Errorf("geoip shown receiving contact details: %+v", r)
		}
	}
	if tr := act("marketing").Transfers.Value; !tr.Any || len(tr.List) != 1 || tr.List[0].Country != "US" || tr.List[0].Guarantee != "SCCs" {
		t.Errorf("transfer to the US not listed: %+v", tr)
	}
	hasLocation := func(a Activity) bool {
		return slices.ContainsFunc(a.DataCategories.Value, func(c DataCategory) bool { return c.CategoryFR == "Données de localisation" })
	}
	if hasLocation(act("analytics")) {
		t.Error("location data listed without a GeoIP database")
	}
	cfg.Plugins[0].Config = map[string]any{"database": "/var/lib/geoip/city.mmdb"}
	if !hasLocation(buildActivity(Input{Config: cfg, Plugins: ps}, "analytics", "")) {
		t.Error("location data not listed with a GeoIP database")
	}
	if tr := act("analytics").Transfers.Value; tr.Any {
		t.Errorf("analytics shows a transfer: %+v", tr)
	}

	// Every retention setting appears with its value.
	settings := map[string]int{}
	for _, a := range reg.Activities {
		for _, rp := range a.Retention.Value {
			if rp.Setting != "" {
				settings[rp.Setting] = rp.Days
			}
		}
	}
	for k, v := range cfg.Retention {
		if got, ok := settings["retention."+k]; !ok || got != int(time.Duration(v)/(24*time.Hour)) {
			t.Errorf("retention.%s: register says %d days (listed %v), config %v", k, got, ok, time.Duration(v))
		}
	}
	for _, s := range []string{"nats.max_age", "plugin_runtime.profile_ttl", "storage.dedup_window"} {
		if _, ok := settings[s]; !ok {
			t.Errorf("%s not in the register", s)
		}
	}
	if settings["nats.max_age"] != 7 {
		t.Errorf("nats.max_age: %d days", settings["nats.max_age"])
	}

	// Organization, Art. 30(1)(a), with the CNIL's labels.
	o := reg.Organization
	if o.Controller.Value.Name != "Shop SAS" || o.Controller.LabelFR == "" || o.Controller.Article != "30(1)(a)" ||
		o.DPO.Value == nil || o.DPO.Value.Contact != "dpo@shop.example" || o.Representative.Value != nil {
		t.Errorf("organization: %+v", o)
	}
	if len(reg.ToComplete) != 0 {
		t.Errorf("to complete: %v", reg.ToComplete)
	}

	// Each Art. 30(1) item (b)–(g) is in every fiche, labelled in English
	// and French.
	js, err := reg.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Activities []map[string]struct {
			Label   string `json:"label"`
			LabelFR string `json:"label_fr"`
			Article string `json:"article"`
		}
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	items := map[string]string{"purposes": "30(1)(b)", "data_subjects": "30(1)(c)", "data_categories": "30(1)(c)",
		"recipients": "30(1)(d)", "transfers": "30(1)(e)", "retention": "30(1)(f)", "security_measures": "30(1)(g), 32(1)"}
	for _, a := range raw.Activities {
		for k, art := range items {
			s := a[k]
			if s.Article != art || s.Label == "" || s.LabelFR == "" {
				t.Errorf("item %s: %+v", k, s)
			}
		}
	}

	md := string(reg.Markdown())
	for _, want := range []string{"# Register of processing activities (Registre des activités de traitement)",
		"Shop SAS", "dpo@shop.example", "Finalité(s) du traitement effectué", "Catégories de personnes concernées",
		"Mesures de sécurité", "Transferts des données hors UE", "`retention.research`", "| 90 days |",
		"crm (external plugin)", "Acme CRM", "Chiffrement des données", "Contrôle d'accès des utilisateurs"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	for _, p := range cfg.Purposes {
		if !strings.Contains(md, fmt.Sprintf("`vigie-%s`", p.Name)) {
			t.Errorf("markdown lacks purpose %s", p.Name)
		}
	}
}

// Offline, a built-in is described from its own manifest and an external
// plugin is said to be unknown; a missing organization is to complete.
func TestRegisterOffline(t *testing.T) {
	cfg := testConfig(t)
	cfg.Organization = config.Organization{}
	ps := Plugins(cfg, nil)
	if len(ps) != 3 || ps[0].Manifest == nil || ps[0].Manifest.Name != "geoip" || !slices.Contains(ps[0].Manifest.Kinds, sdk.KindEnricher) ||
		ps[1].Manifest == nil || !slices.Contains(ps[1].Manifest.Kinds, sdk.KindSegmenter) || ps[2].Manifest != nil {
		t.Fatalf("plugins: %+v", ps)
	}
	reg := Build(Input{Config: cfg, Plugins: ps})
	joined := strings.Join(reg.ToComplete, "\n")
	if !strings.Contains(joined, "organization.name") || !strings.Contains(joined, `plugin "crm"`) {
		t.Fatalf("to complete: %v", reg.ToComplete)
	}
	if !strings.Contains(string(reg.Markdown()), "to complete") {
		t.Error("markdown does not say what to complete")
	}
}
