package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/config"
)

// TestUntrustedProxyWarning: hits forwarded by a proxy that
// trusted_proxies does not list get one warning (naming the kind of peer,
// never an address), not one per hit; a trusted proxy, or no forwarding
// header, gets none.
func TestUntrustedProxyWarning(t *testing.T) {
	const warning = "trusted_proxies does not list"
	for _, c := range []struct {
		name    string
		trusted []string
		header  string
		want    int
	}{
		{"untrusted loopback proxy", nil, "X-Forwarded-For", 1},
		{"Forwarded header", nil, "Forwarded", 1},
		{"trusted proxy", []string{"127.0.0.1/32", "::1/128"}, "X-Forwarded-For", 0},
		{"no proxy", nil, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := startLean(t, func(cfg *config.Config) { cfg.TrustedProxies = c.trusted })
			for range 3 {
				hdr := basicAuth("demo")
				switch c.header {
				case "X-Forwarded-For":
					hdr.Set("X-Forwarded-For", "203.0.113.7")
				case "Forwarded":
					hdr.Set("Forwarded", "for=203.0.113.7;proto=https")
				}
				if status, body := in.Do("POST", "/v1/track", []byte(`{"event":"Proxied","anonymousId":"a"}`), hdr); status != http.StatusOK {
					t.Fatalf("track: %d %s", status, body)
				}
			}
			logs := in.Logs()
			if n := strings.Count(logs, warning); n != c.want {
				t.Fatalf("%d warnings, want %d:\n%s", n, c.want, logs)
			}
			if c.want > 0 && !strings.Contains(logs, "from a loopback address") {
				t.Fatalf("the warning does not say which kind of proxy:\n%s", logs)
			}
			if strings.Contains(logs, "203.0.113.7") {
				t.Fatalf("an address in the logs:\n%s", logs)
			}
		})
	}
}
