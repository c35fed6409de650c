package register

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/sensitive"
)

// TestRegisterSpecialCategories: the register has a row per special
// category with each site's action, and every activity says how they are
// handled.
func TestRegisterSpecialCategories(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sites[1].Sensitive = config.SiteSensitive{
		Actions:        map[string]string{"health": "require_consent", "religion": "drop_event"},
		SensitivePaths: map[string]string{"/clinic/*": "health"},
		Layers:         config.SensitiveLayers{Values: new(bool)},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := Build(Input{Config: cfg})
	rows := r.SpecialCategories.Value
	if len(rows) != int(sensitive.NumCategories) || r.SpecialCategories.Article != "9, 10" {
		t.Fatalf("%d rows: %+v", len(rows), r.SpecialCategories)
	}
	got := map[string]SiteHandling{}
	for _, row := range rows {
		if row.Label == "" || row.Article == "" || len(row.Sites) != 2 {
			t.Errorf("row %+v", row)
		}
		for _, h := range row.Sites {
			got[row.Category+"/"+h.Site] = h
		}
	}
	for k, want := range map[string]string{
		"health/demo": "anonymous", "health/shop": "require_consent", "religion/shop": "drop_event",
		"sex_life/shop": "anonymous", "national_id/demo": "drop_field",
	} {
		if got[k].Action != want || got[k].Effect == "" {
			t.Errorf("%s: %+v, want %s", k, got[k], want)
		}
	}
	if h := got["health/shop"]; strings.Join(h.SensitivePaths, ",") != "/clinic/*" || strings.Join(h.Layers, ",") != "names,page,sensitive_paths" {
		t.Errorf("health/shop: %+v", h)
	}
	for _, a := range r.Activities {
		if !strings.Contains(a.SensitiveData.Value, "never profiled") || !strings.Contains(a.SensitiveData.Value, `"sensitive"`) {
			t.Errorf("%s: %q", a.Reference.Value, a.SensitiveData.Value)
		}
	}
	md := string(r.Markdown())
	if !strings.Contains(md, "Données sensibles") || !strings.Contains(md, "| shop | `require_consent` |") {
		t.Errorf("markdown lacks the special categories:\n%s", md[strings.LastIndex(md, "##"):])
	}
	b, err := r.JSON()
	if err != nil || !json.Valid(b) || !strings.Contains(string(b), `"special_categories"`) {
		t.Errorf("JSON: %v", err)
	}
}
