package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// lean runs no plugin (they are not what these tests are about).
func lean(c *config.Config) { c.Plugins = []config.Plugin{} }

// vigieCmd runs the vigie command line on in's data dir and master key.
func vigieCmd(t *testing.T, in *proxytest.Instance, args ...string) (string, error) {
	t.Helper()
	t.Setenv("VIGIE_MASTER_KEY", in.MasterKey())
	var out, errOut bytes.Buffer
	err := run(context.Background(), append(args, "--data-dir", in.Config.DataDir), &out, &errOut)
	return out.String(), err
}

// eventually retries check for a few seconds (the server reloads the
// keyring within a second).
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTokensApplyWithoutRestart: a token made by `vigie tokens create`
// works on the running server within seconds, with its role's rights
// only, and stops working once revoked.
func TestTokensApplyWithoutRestart(t *testing.T) {
	in := proxytest.Start(t, lean)
	get := func(tok, path string) int {
		code, _ := in.Do("GET", path, nil, http.Header{"Authorization": {"Bearer " + tok}})
		return code
	}
	onTerminal(t, false)
	if _, err := vigieCmd(t, in, "tokens", "create", "--role", "marketer"); err == nil || !strings.Contains(err.Error(), "--print") {
		t.Fatalf("create to a non-terminal without --print: %v", err)
	}
	if _, err := vigieCmd(t, in, "tokens", "create", "--role", "root", "--print"); err == nil || !strings.Contains(err.Error(), "marketer") {
		t.Fatalf("create with an unknown role: %v", err)
	}
	out, err := vigieCmd(t, in, "tokens", "create", "--role", "marketer", "--name", "Ann", "--print")
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out)
	if !tokenPattern.MatchString(tok) {
		t.Fatalf("create printed %q", out)
	}
	eventually(t, "the new token accepted", func() bool { return get(tok, "/admin/v1/stats") == 200 })
	if code := get(tok, "/admin/v1/events?site=demo"); code != http.StatusForbidden {
		t.Fatalf("marketer on the events listing: %d, want 403", code)
	}
	list, err := vigieCmd(t, in, "tokens", "list")
	if err != nil || !strings.Contains(list, "t2\tmarketer\t") || !strings.Contains(list, "\tAnn") || strings.Contains(list, tok) {
		t.Fatalf("tokens list: %v\n%s", err, list)
	}
	if _, err := vigieCmd(t, in, "tokens", "revoke", "t1"); err == nil || !strings.Contains(err.Error(), "last admin") {
		t.Fatalf("revoking the only admin token: %v", err)
	}
	if _, err := vigieCmd(t, in, "tokens", "revoke", "t2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the revoked token refused", func() bool { return get(tok, "/admin/v1/stats") == http.StatusUnauthorized })
	if code := get(in.AdminToken(), "/admin/v1/events?site=demo"); code != 200 {
		t.Fatalf("the admin token after a revocation: %d", code)
	}
}

// TestSitesAdd: `vigie sites add` goes through the admin API while Vigie
// runs (the site takes hits at once) and writes the data dir when it does
// not; the configuration's sites cannot be shadowed.
func TestSitesAdd(t *testing.T) {
	in := proxytest.Start(t, lean)
	if _, err := vigieCmd(t, in, "sites", "add", "shop", "--origin", "https://shop.example"); err == nil || !strings.Contains(err.Error(), "VIGIE_ADMIN_TOKEN") {
		t.Fatalf("sites add while running, no token: %v", err)
	}
	t.Setenv("VIGIE_ADMIN_TOKEN", in.AdminToken())
	out, err := vigieCmd(t, in, "sites", "add", "shop", "--origin", "https://shop.example", "--write-key", "shop-key-0001", "--server", in.URL)
	if err != nil || !strings.Contains(out, "site shop added, write key shop-key-0001") {
		t.Fatalf("sites add: %v %s", err, out)
	}
	if code, body := in.Post("/v1/track", "shop-key-0001", `{"event":"Bought","anonymousId":"a1"}`); code != 200 {
		t.Fatalf("hit on the new site: %d %s", code, body)
	}
	if _, err := vigieCmd(t, in, "sites", "add", "demo", "--server", in.URL); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("adding the configured site again: %v", err)
	}
	in.Stop()
	out, err = vigieCmd(t, in, "sites", "add", "blog", "--origin", "https://blog.example")
	if err != nil || !strings.Contains(out, "site blog added, write key wk_") {
		t.Fatalf("sites add offline: %v %s", err, out)
	}
	wk := strings.TrimSpace(out[strings.Index(out, "wk_"):])
	if _, err := vigieCmd(t, in, "sites", "add", "shop"); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("adding a stored site again offline: %v", err)
	}
	in.Restart()
	for key, site := range map[string]string{"shop-key-0001": "shop", wk: "blog"} {
		if code, body := in.Post("/v1/track", key, `{"event":"Read","anonymousId":"a2"}`); code != 200 {
			t.Fatalf("hit on %s after a restart: %d %s", site, code, body)
		}
	}
}
