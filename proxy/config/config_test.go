package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigie-dev/vigie/consent"
)

func TestDefaultIsValid(t *testing.T) {
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.DataDir != "./vigie-data" || len(cfg.Sites) != 1 || cfg.Sites[0].WriteKeys[0] != "demo" {
		t.Fatalf("default config: %+v", cfg)
	}
}

func TestExampleFileLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "examples", "vigie.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.Retention["analytics"]) != 395*24*time.Hour || cfg.NATS.MaxInFlight != 1024 {
		t.Fatalf("example config: %+v", cfg)
	}
	if _, err := cfg.Sites[0].Policy(); err != nil {
		t.Fatal(err)
	}
	// The file shows the defaults: the same plugins and runtime settings.
	d := Default()
	d.fillDefaults()
	if !reflect.DeepEqual(cfg.Plugins, d.Plugins) {
		t.Errorf("example plugins differ from the defaults:\n%#v\n%#v", cfg.Plugins, d.Plugins)
	}
	if cfg.Storage != d.Storage {
		t.Errorf("example storage differs from the defaults:\n%+v\n%+v", cfg.Storage, d.Storage)
	}
	if !reflect.DeepEqual(cfg.PluginRuntime, d.PluginRuntime) {
		t.Errorf("example plugin_runtime differs from the defaults:\n%+v\n%+v", cfg.PluginRuntime, d.PluginRuntime)
	}
	if cfg.Limits != d.Limits || cfg.Auth != d.Auth {
		t.Errorf("example limits or auth differ from the defaults:\n%+v %+v\n%+v %+v", cfg.Limits, cfg.Auth, d.Limits, d.Auth)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	env := []string{
		"VIGIE_LISTEN=0.0.0.0:9000",
		"VIGIE_STORAGE_SYNC_WRITES=true",
		"VIGIE_STORAGE_DEDUP_WINDOW=3d",
		"VIGIE_NATS_URL=nats://n1:4222",
		"VIGIE_NATS_MAX_IN_FLIGHT=64",
		"VIGIE_TRUSTED_PROXIES=10.0.0.0/8, 192.168.0.0/16",
		`VIGIE_SITES=[{id: shop, write_keys: [k1], origins: ["https://shop.example"], consent: {unconsented: drop}}]`,
		"OTHER=ignored",
	}
	cfg, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:9000" || !cfg.Storage.SyncWrites || time.Duration(cfg.Storage.DedupWindow) != 72*time.Hour ||
		cfg.NATS.URL != "nats://n1:4222" || cfg.NATS.MaxInFlight != 64 || len(cfg.TrustedProxies) != 2 || cfg.TrustedProxies[1] != "192.168.0.0/16" {
		t.Fatalf("env not applied: %+v", cfg)
	}
	if len(cfg.Sites) != 1 || cfg.Sites[0].ID != "shop" || cfg.Sites[0].Consent.Unconsented != "drop" {
		t.Fatalf("VIGIE_SITES not applied: %+v", cfg.Sites)
	}
}

func TestInvalidConfigs(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        []string
	}{
		{"unknown field", "listn: x\n", nil},
		{"bad site id", "sites: [{id: 'Bad Site', write_keys: [k]}]\n", nil},
		{"no write key", "sites: [{id: s}]\n", nil},
		{"shared write key", "sites: [{id: a, write_keys: [k]}, {id: b, write_keys: [k]}]\n", nil},
		{"bad unconsented", "sites: [{id: a, write_keys: [k], consent: {unconsented: maybe}}]\n", nil},
		{"bad duration", "storage: {dedup_window: soon}\n", nil},
		{"bad log level", "log_level: loud\n", nil},
		{"bad env bool", "", []string{"VIGIE_STORAGE_SYNC_WRITES=perhaps"}},
		{"bad env int", "", []string{"VIGIE_NATS_MAX_IN_FLIGHT=many"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.yaml != "" {
				path = filepath.Join(t.TempDir(), "v.yaml")
				if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(path, c.env)
			if err == nil {
				t.Fatal("no error")
			}
			if c.name != "unknown field" && c.name != "bad duration" && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
		})
	}
}

func TestAckWaitWithinTheDuplicateWindow(t *testing.T) {
	cases := []struct {
		name, yaml string
		bad        bool
	}{
		{"defaults", "", false},
		{"ack wait equal to the window", "plugin_runtime: {ack_wait: 30s}\n", true},
		{"window shortened below the default ack wait", "nats: {duplicate_window: 5s}\n", true},
		{"both raised", "nats: {duplicate_window: 2m}\nplugin_runtime: {ack_wait: 1m}\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadYAML(t, c.yaml)
			switch {
			case !c.bad && err != nil:
				t.Fatalf("refused: %v", err)
			case c.bad && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "plugin_runtime.ack_wait") || !strings.Contains(err.Error(), "nats.duplicate_window")):
				t.Fatalf("want an error naming plugin_runtime.ack_wait and nats.duplicate_window, got %v", err)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "48h": 48 * time.Hour, "30d": 30 * 24 * time.Hour, "1.5d": 36 * time.Hour} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if d, err := ParseDuration("13mo"); err != nil || d < 395*24*time.Hour || d > 396*24*time.Hour {
		t.Errorf("13mo = %v, %v", d, err)
	}
	for _, bad := range []string{"", "d", "-3d", "soon", "3x"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestSecretsComeFromTheEnvironmentOnlyAndNeverPrint(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "vigie.yaml")
	// A secret in the file is not a field: the file is refused.
	os.WriteFile(p, []byte("keys:\n  master_key: vigie-mk-x\n"), 0o600)
	if _, err := Load(p, nil); err == nil {
		t.Fatal("a master key in the file was accepted")
	}
	os.WriteFile(p, []byte("production: true\nkeys:\n  master_key_command: [pass, show, vigie]\n"), 0o600)
	cfg, err := Load(p, []string{"VIGIE_MASTER_KEY=vigie-mk-secretvalue", "VIGIE_ADMIN_TOKEN=token-secretvalue", "VIGIE_KEYS_MASTER_KEY_FILE=/etc/vigie/mk"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Keys.MasterKey.Reveal() != "vigie-mk-secretvalue" || cfg.Keys.AdminToken.Reveal() != "token-secretvalue" ||
		cfg.Keys.MasterKeyFile != "/etc/vigie/mk" || !cfg.Production || len(cfg.Keys.MasterKeyCommand) != 3 ||
		cfg.Keys.SecretsDir != "./vigie-secrets" || time.Duration(cfg.Keys.CommandTimeout) != 30*time.Second {
		t.Fatalf("keys: %+v", cfg.Keys)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cfg", "keys", cfg.Keys.MasterKey)
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(cfg.Keys)
	if err != nil || !strings.Contains(string(j), `"[secret]"`) {
		t.Fatalf("json: %s %v", j, err)
	}
	for _, shown := range []string{fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg), logged.String(), string(y), string(j)} {
		if strings.Contains(shown, "secretvalue") {
			t.Fatalf("a secret was printed: %s", shown)
		}
	}
	if _, err := Load("", []string{"VIGIE_ADMIN_TOKEN=token-secretvalue", "VIGIE_KEYS_ADMIN_TOKEN_FILE=/x"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("token from both env and file: %v", err)
	}
	if _, err := Load("", []string{`VIGIE_KEYS_MASTER_KEY_COMMAND=[""]`}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty command: %v", err)
	}
}

// TestSiteConsentManagementAndTestToken: a site's consent_management is
// merged per provider over the built-in map (providers ignore case), a
// bad purpose is refused naming the site, and the test token never
// prints.
func TestSiteConsentManagementAndTestToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vigie.yaml")
	os.WriteFile(p, []byte(`sites:
  - id: shop
    write_keys: [k1]
    test_token: test-token-secretvalue
    consent:
      consent_management:
        IUBENDA: {"2": [analytics]}
        ketch: {behavioral_advertising: [marketing]}
`), 0o600)
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := cfg.Sites[0].Policy()
	if err != nil {
		t.Fatal(err)
	}
	iub, ketch := pol.ConsentManagement[consent.ProviderIubenda], pol.ConsentManagement["ketch"]
	if fmt.Sprint(iub["1"], iub["2"], iub["5"], ketch["behavioral_advertising"]) != "[necessary] [analytics] [marketing] [marketing]" || len(pol.ConsentManagement) != 2 {
		t.Fatalf("consent_management: %v", pol.ConsentManagement)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", cfg, cfg), "secretvalue") {
		t.Fatal("the test token was printed")
	}
	os.WriteFile(p, []byte("sites:\n  - id: shop\n    write_keys: [k1]\n    consent:\n      consent_management:\n        ketch: {x: [nope]}\n"), 0o600)
	if _, err := Load(p, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "sites[0].consent") {
		t.Fatalf("unknown purpose: %v", err)
	}
}

func TestRightsValidation(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       string // "" = valid; else a field the error names
	}{
		{"defaults", "", ""},
		{"max age longer than the shortest retention", "nats: {max_age: 40d}\n", "retention.necessary"},
		{"max age equal to it", "nats: {max_age: 30d}\n", ""},
		{"max age below an hour", "nats: {max_age: 10m}\n", "nats.max_age"},
		{"max age below the duplicate window", "nats: {max_age: 2h, duplicate_window: 3h}\n", "nats.duplicate_window"},
		{"shorter anonymous retention", "nats: {max_age: 5d}\nretention: {anonymous: 2d}\n", "retention.anonymous"},
		{"audit retention is not an event retention", "retention: {audit: 1d}\n", ""},
		{"forever retention does not bound", "nats: {max_age: 40d}\nretention: {necessary: 0s}\n", ""},
		{"dpo without name", "organization: {dpo: {contact: dpo@shop.example}}\n", "organization.dpo.name"},
		{"dpo without any contact", "organization: {dpo: {name: Ada}}\n", "organization.dpo.contact"},
		{"empty joint controller", "organization: {joint_controllers: [{}]}\n", "organization.joint_controllers[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadYAML(t, c.yaml)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatal("accepted")
			case c.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %q does not name %s", err, c.want)
			}
			if err == nil && c.name == "defaults" {
				if time.Duration(cfg.NATS.MaxAge) != 7*24*time.Hour || cfg.RetentionOf(RetentionAudit) != 3*365*24*time.Hour ||
					cfg.RetentionOf(RetentionRequests) != 3*365*24*time.Hour {
					t.Fatalf("defaults: max_age %v, retention %v", cfg.NATS.MaxAge, cfg.Retention)
				}
				if f, d := cfg.ShortestRetention(); f != "retention.necessary" || d != 30*24*time.Hour {
					t.Fatalf("shortest: %s %v", f, d)
				}
				if cfg.LongestRetention() != 760*24*time.Hour {
					t.Fatalf("longest: %v", cfg.LongestRetention())
				}
			}
		})
	}
}

func TestOrganizationProblem(t *testing.T) {
	for _, c := range []struct {
		org  Organization
		want []string
	}{
		{Organization{}, []string{"organization.name", "organization.contact"}},
		{Organization{Name: "Shop SAS"}, []string{"organization.contact"}},
		{Organization{Name: "Shop SAS", Contact: "privacy@shop.example"}, nil},
	} {
		cfg := Default()
		cfg.Organization = c.org
		p := cfg.OrganizationProblem()
		if (p == "") != (c.want == nil) {
			t.Fatalf("%+v: %q", c.org, p)
		}
		for _, w := range c.want {
			if !strings.Contains(p, w) {
				t.Errorf("%q does not name %s", p, w)
			}
		}
	}
}
