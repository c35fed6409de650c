package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/consent"
)

// TestSiteMinimisationValidation: each data-minimisation setting is
// checked, and the error names the field.
func TestSiteMinimisationValidation(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"every setting", func(c *Config) {
			s := &c.Sites[0]
			s.Mode, s.ExportClickIDs = ModeStandard, []string{"gclid"}
			s.Anonymous = Anonymous{TimeGranularity: Duration(15 * time.Minute), Region: true, IDPathPatterns: []string{`^ord-\d+$`}}
			s.Consent.PseudonymRotation, s.Consent.CookieLifetime = "daily", Duration(180*24*time.Hour)
		}, ""},
		{"unknown mode", func(c *Config) { c.Sites[0].Mode = "lax" }, "sites[0].mode"},
		{"granularity not dividing a day", func(c *Config) { c.Sites[0].Anonymous.TimeGranularity = Duration(7 * time.Hour) }, "sites[0].anonymous.time_granularity"},
		{"granularity below a second", func(c *Config) { c.Sites[0].Anonymous.TimeGranularity = Duration(time.Millisecond) }, "sites[0].anonymous.time_granularity"},
		{"bad pattern", func(c *Config) { c.Sites[0].Anonymous.IDPathPatterns = []string{"("} }, "sites[0].anonymous.id_path_patterns"},
		{"pattern matching everything", func(c *Config) { c.Sites[0].Anonymous.IDPathPatterns = []string{".*"} }, "sites[0].anonymous.id_path_patterns"},
		{"weekly rotation", func(c *Config) { c.Sites[0].Consent.PseudonymRotation = "weekly" }, "sites[0].consent.pseudonym_rotation"},
		{"cookie over 13 months", func(c *Config) { c.Sites[0].Consent.CookieLifetime = Duration(400 * 24 * time.Hour) }, "sites[0].consent.cookie_lifetime"},
		{"empty exported click id", func(c *Config) { c.Sites[0].ExportClickIDs = []string{" "} }, "sites[0].export_click_ids"},
		{"ipv6 database alone", func(c *Config) { c.GeoIP.IPv6Database = "/x.mmdb" }, "geoip.ipv6_database"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.fillDefaults()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// TestCNILConditions: a cnil_exempt site is refused, condition by
// condition, when its configuration breaks the exemption; the defaults
// meet it (the external plugin is left to the start).
func TestCNILConditions(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(*Config)
		unmet  string // the condition that fails, "" for none
		reason string
	}{
		{"defaults", func(*Config) {}, "", ""},
		{"marketing by default", func(c *Config) {
			c.Sites[0].Consent.Defaults = []consent.Purpose{consent.Necessary, consent.Analytics, consent.Marketing}
		}, "analytics only, first party", "marketing"},
		{"analytics profiled", func(c *Config) {
			c.PluginRuntime.ProfilePurposes = []consent.Purpose{consent.Analytics}
		}, "no profiling, no CRM", "analytics"},
		{"postal codes", func(c *Config) {
			c.Plugins = []Plugin{{Name: "geoip", Config: map[string]any{"postal": true}}}
		}, "IP truncated, location no finer than city", "postal"},
		{"anonymous data forever", func(c *Config) { c.Retention["anonymous"] = 0 }, "data ≤ 25 months", "retention.anonymous is forever"},
		{"analytics 3 years", func(c *Config) { c.Retention["analytics"] = Duration(3 * 365 * 24 * time.Hour) }, "data ≤ 25 months", "retention.analytics is 1095d"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.fillDefaults()
			c.Sites[0].Mode = ModeCNILExempt
			tc.edit(&c)
			conds := c.CNILConditions(c.Sites[0])
			if len(conds) != 9 {
				t.Fatalf("%d conditions, want 9", len(conds))
			}
			for _, cond := range conds {
				if cond.Detail == "" {
					t.Errorf("%s: no detail", cond.Name)
				}
				if cond.Met == (cond.Name == tc.unmet) {
					t.Errorf("%s: met %v (%s)", cond.Name, cond.Met, cond.Detail)
				}
				if cond.Name == tc.unmet && !strings.Contains(cond.Detail, tc.reason) {
					t.Errorf("%s: detail %q, want it to say %q", cond.Name, cond.Detail, tc.reason)
				}
			}
			err := c.Validate()
			if (err != nil) != (tc.unmet != "") || err != nil && !strings.Contains(err.Error(), "sites[0].mode: cnil_exempt: "+tc.unmet) {
				t.Fatalf("Validate = %v, want the unmet condition %q", err, tc.unmet)
			}
		})
	}
	// An external plugin cannot be judged from the file: met, checked at start.
	c := Default()
	c.fillDefaults()
	c.Sites[0].Mode = ModeCNILExempt
	c.Plugins = append(c.Plugins, Plugin{Name: "crm", Path: "/opt/crm", SHA256: strings.Repeat("a", 64)})
	for _, cond := range c.CNILConditions(c.Sites[0]) {
		if cond.Name == "no plugin receiving identifiers" && (!cond.Met || !cond.AtStart || !strings.Contains(cond.Detail, "crm")) {
			t.Errorf("external plugin: %+v", cond)
		}
	}
}
