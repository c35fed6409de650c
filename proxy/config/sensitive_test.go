package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/sensitive"
)

func loadYAML(t *testing.T, y string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path, nil)
}

func TestSensitiveConfig(t *testing.T) {
	cfg, err := loadYAML(t, `
sites:
  - id: clinic
    write_keys: [k1]
    sensitive:
      actions: {health: require_consent, religion: drop_event, trade_union: drop_field}
      sensitive_paths: {"/clinic/*": health, "/chapel": religion}
      layers: {values: false}
  - id: shop
    write_keys: [k2]
`)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cfg.Sites[0].SensitivePolicy()
	if err != nil {
		t.Fatal(err)
	}
	if p.Actions[sensitive.Health] != sensitive.RequireConsent || p.Actions[sensitive.Religion] != sensitive.DropEvent ||
		p.Actions[sensitive.TradeUnion] != sensitive.DropField || p.Actions[sensitive.SexLife] != sensitive.Anonymous ||
		p.Actions[sensitive.NationalID] != sensitive.DropField {
		t.Errorf("actions: %v", p.Actions)
	}
	if !p.Names || p.Values || !p.Page || len(p.Paths) != 2 || p.Paths[0] != (sensitive.PathRule{Pattern: "/chapel", Category: sensitive.Religion}) {
		t.Errorf("policy: %+v", p)
	}
	// require_consent registers the purpose, so that consent signals and
	// category maps can name it; it is not among the purposes shown.
	if _, err := consent.ParseSet("sensitive"); err != nil {
		t.Errorf("sensitive not registered: %v", err)
	}
	for _, pi := range cfg.Purposes {
		if pi.Name == consent.Sensitive {
			t.Error("sensitive became a configured purpose")
		}
	}
	d, err := cfg.Sites[1].SensitivePolicy()
	if err != nil || d.Actions != sensitive.DefaultPolicy().Actions || !d.Names || !d.Values || !d.Page || len(d.Paths) != 0 {
		t.Errorf("default site policy %+v, %v", d, err)
	}
}

func TestSensitiveConfigInvalid(t *testing.T) {
	for _, tt := range []struct{ name, sensitive, field string }{
		{"unknown category", `{actions: {helth: anonymous}}`, "sites[0].sensitive.actions.helth"},
		{"unknown action", `{actions: {health: hide}}`, "sites[0].sensitive.actions.health"},
		{"path category", `{sensitive_paths: {"/x/*": healthy}}`, `sites[0].sensitive.sensitive_paths["/x/*"]`},
		{"relative path", `{sensitive_paths: {"clinic/*": health}}`, "sites[0].sensitive.sensitive_paths"},
		{"layer not a bool", `{layers: {page: maybe}}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, "sites: [{id: a, write_keys: [k], sensitive: "+tt.sensitive+"}]\n")
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.field != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field+":")) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
		})
	}
	// The purpose sensitive cannot be a default: it must be explicit.
	_, err := loadYAML(t, "sites: [{id: a, write_keys: [k], consent: {defaults: [necessary, sensitive]}, sensitive: {actions: {health: require_consent}}}]\n")
	if err == nil || !strings.Contains(err.Error(), "sites[0].consent") {
		t.Errorf("sensitive as a default purpose: %v", err)
	}
}
