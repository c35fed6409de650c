package register

import (
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/config"
)

// TestRegisterListsTheResponseProfiling: with the response plugin
// enabled, the activities of the purposes it models (its purposes, any
// of) say it profiles, with the Art. 21 and 22 information and its data
// category; the others do not; without the plugin none does.
func TestRegisterListsTheResponseProfiling(t *testing.T) {
	for _, tc := range []struct {
		name     string
		plugin   *config.Plugin
		profiled map[string]bool
	}{
		{"not enabled", nil, map[string]bool{}},
		{"disabled", &config.Plugin{Name: "response", Disabled: true, Config: map[string]any{"message_types": []any{map[string]any{"name": "promo"}}}}, map[string]bool{}},
		{"default purposes", &config.Plugin{Name: "response", Config: map[string]any{"message_types": []any{map[string]any{"name": "promo"}}}},
			map[string]bool{"personalization": true, "marketing": true}},
		{"marketing only", &config.Plugin{Name: "response", Config: map[string]any{"purposes": []any{"marketing"}, "message_types": []any{map[string]any{"name": "promo"}}}},
			map[string]bool{"marketing": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tc.plugin != nil {
				cfg.Plugins = append(cfg.Plugins, *tc.plugin)
			}
			reg := Build(Input{Config: cfg, Plugins: Plugins(cfg, nil)})
			md := string(reg.Markdown())
			for _, a := range reg.Activities {
				purpose := strings.TrimPrefix(a.Reference.Value, "vigie-")
				var says, art21, cat bool
				for _, s := range a.Purposes.Value.Sub.Value {
					says = says || strings.HasPrefix(s, "Profiling (Art. 4(4)) by the response plugin")
					art21 = art21 || strings.HasPrefix(s, "Right to object (Art. 21(2)-(3))")
				}
				for _, c := range a.DataCategories.Value {
					cat = cat || c.Category == "Response profile"
				}
				if want := tc.profiled[purpose]; says != want || art21 != want || cat != want {
					t.Errorf("%s: profiling %v, Art. 21 %v, category %v; want %v", purpose, says, art21, cat, want)
				}
			}
			if strings.Contains(md, "Automated decisions (Art. 22)") != (len(tc.profiled) > 0) {
				t.Errorf("the Markdown register and the plugin disagree on Art. 22")
			}
		})
	}
}
