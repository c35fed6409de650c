package crm

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/plugins/crm/delivery"
	"github.com/vigie-dev/vigie/plugins/crm/delivery/deliverytest"
)

func TestParseDefaultsAndErrors(t *testing.T) {
	c, err := Parse([]byte(`{"connector":"brevo","brevo":{"api_key":{"env":"BREVO_API_KEY"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Purposes) != 1 || c.Purposes[0] != DefaultPurpose || c.Location != "EU" ||
		c.RetryFor != delivery.Duration(DefaultRetryFor) || c.Backoff.Max != delivery.Duration(DefaultMaxBackoff) {
		t.Errorf("defaults: %+v", c)
	}
	if env := c.EnvSecrets(); len(env) != 1 || env[0] != "BREVO_API_KEY" {
		t.Errorf("env secrets %v", env)
	}
	const hub = `"connector":"hubspot","hubspot":{"token":{"env":"T"}}`
	for _, tc := range []struct{ name, json, field string }{
		{"empty", ``, "connector"},
		{"no connector", `{"purposes":["marketing"]}`, "connector"},
		{"unknown connector", `{"connector":"salesforce"}`, "connector"},
		{"no block", `{"connector":"hubspot"}`, "hubspot"},
		{"other block", `{` + hub + `,"brevo":{}}`, "brevo"},
		{"unknown field", `{` + hub + `,"colour":"red"}`, "colour"},
		{"unknown connector field", `{"connector":"hubspot","hubspot":{"token":{"env":"T"},"tokn":1}}`, "hubspot.tokn"},
		{"wrong type", `{` + hub + `,"purposes":"marketing"}`, "purposes"},
		{"empty purpose", `{` + hub + `,"purposes":[""]}`, "purposes[0]"},
		{"bad property", `{` + hub + `,"fields":{"first name":"trait.first_name"}}`, "fields.first name"},
		{"bad source", `{` + hub + `,"fields":{"x":"vault.email"}}`, "fields.x"},
		{"bad profile field", `{` + hub + `,"fields":{"x":"profile.city"}}`, "fields.x"},
		{"bad duration", `{` + hub + `,"timeout":"soon"}`, "timeout"},
		{"backoff", `{` + hub + `,"backoff":{"min":"1m","max":"1s"}}`, "backoff.max"},
		{"location", `{` + hub + `,"location":"Europe"}`, "location"},
		{"no token", `{"connector":"hubspot","hubspot":{}}`, "hubspot.token"},
		{"literal token", `{"connector":"hubspot","hubspot":{"token":"pat-na1-secret"}}`, "hubspot.token"},
		{"settings in the block", `{"connector":"hubspot","hubspot":{"token":{"env":"T"},"allow_private":true}}`, "hubspot"},
		{"no url", `{"connector":"webhook","webhook":{"secrets":[{"env":"S"}]}}`, "webhook.url"},
		{"no secret", `{"connector":"webhook","webhook":{"url":"https://hooks.example.com/v"}}`, "webhook.secrets"},
		{"env and file", `{"connector":"webhook","webhook":{"url":"https://hooks.example.com/v","secrets":[{"env":"S","file":"/f"}]}}`, "webhook.secrets[0]"},
		{"plain http", `{"connector":"webhook","webhook":{"url":"http://hooks.example.com/v","secrets":[{"env":"S"}]}}`, "webhook.url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json))
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			if msg := strings.TrimPrefix(err.Error(), ErrConfig.Error()+": "); !strings.HasPrefix(msg, tc.field+":") {
				t.Errorf("error %q does not start with the field %s", msg, tc.field)
			}
			if strings.Contains(err.Error(), "pat-na1-secret") {
				t.Errorf("error %q quotes the secret", err)
			}
		})
	}
}

// TestSSRFRefusedAtConfiguration: a destination pointing at loopback
// (without allow_private), at the cloud metadata service (always), or at
// a host name resolving to loopback (a test resolver) is refused when it
// is configured, naming the field.
func TestSSRFRefusedAtConfiguration(t *testing.T) {
	resolver := deliverytest.StartDNS(t, map[string]netip.Addr{
		"crm.internal.test": netip.MustParseAddr("127.0.0.1"),
		"metadata.test":     netip.MustParseAddr("169.254.169.254"),
	})
	t.Setenv("TEST_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	webhook := func(url string, private bool) []byte {
		p := ""
		if private {
			p = `,"allow_private":true`
		}
		return []byte(`{"connector":"webhook"` + p + `,"webhook":{"url":"` + url + `","secrets":[{"env":"TEST_WEBHOOK_SECRET"}]}}`)
	}
	for _, tc := range []struct {
		name    string
		config  []byte
		atParse bool // refused by Parse already (no DNS needed)
	}{
		{"loopback", webhook("https://127.0.0.1/hook", false), true},
		{"loopback IPv6", webhook("https://[::1]/hook", false), true},
		{"metadata service", webhook("https://169.254.169.254/latest/meta-data", false), true},
		{"metadata service, allow_private", webhook("http://169.254.169.254/latest/meta-data", true), true},
		{"private", webhook("https://10.0.0.8/hook", false), true},
		{"name resolving to loopback", webhook("https://crm.internal.test/hook", false), false},
		{"name resolving to the metadata service, allow_private", webhook("http://metadata.test/x", true), false},
		{"HubSpot base_url on loopback", []byte(`{"connector":"hubspot","hubspot":{"token":{"env":"TEST_WEBHOOK_SECRET"},"base_url":"https://127.0.0.1"}}`), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, perr := Parse(tc.config)
			if tc.atParse != (perr != nil) {
				t.Fatalf("Parse: %v (refused at parse: want %v)", perr, tc.atParse)
			}
			err := NewDestination(Options{Resolver: resolver}).Configure(context.Background(), tc.config)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "url: ") || !strings.Contains(err.Error(), "not allowed") {
				t.Errorf("Configure: %v, want a refused address naming the url field", err)
			}
		})
	}
	// The same name with allow_private is accepted (the fakes of the
	// tests listen on 127.0.0.1).
	if err := NewDestination(Options{Resolver: resolver}).Configure(context.Background(), webhook("http://crm.internal.test/hook", true)); err != nil {
		t.Errorf("allow_private: %v", err)
	}
}
