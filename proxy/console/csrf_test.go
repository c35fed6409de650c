package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestCSRFRefused: a state-changing console request (a page's form, or
// the admin API with the session cookie) without the session's CSRF
// token, with another's, or from another origin is refused and changes
// nothing; with the token, from the console's origin, it goes through.
// A sign-in posted from another site is refused too.
func TestCSRFRefused(t *testing.T) {
	in := proxytest.Start(t, lean)
	s := signIn(t, in, in.AdminToken())
	other := signIn(t, in, in.AdminToken())
	same := http.Header{"Origin": {in.URL}}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  http.Header
	}{
		{"no token", url.Values{"id": {"shop1"}}, same},
		{"another session's token", url.Values{"id": {"shop2"}, "csrf": {other.csrf}}, same},
		{"foreign origin", url.Values{"id": {"shop3"}, "csrf": {s.csrf}}, http.Header{"Origin": {"https://evil.example"}}},
		{"cross-site fetch", url.Values{"id": {"shop4"}, "csrf": {s.csrf}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"null origin", url.Values{"id": {"shop5"}, "csrf": {s.csrf}}, http.Header{"Origin": {"null"}}},
	} {
		code, body, _ := s.send("POST", "/console/sites", tc.form, tc.hdr)
		if code != http.StatusForbidden || !strings.Contains(body, "did not come from a console page") {
			t.Errorf("%s: %d\n%.300s", tc.name, code, body)
		}
	}
	// The admin API with the cookie: the token is a header.
	code, body, _ := s.send("POST", "/admin/v1/sites", nil, http.Header{"Content-Type": {"application/json"}, "Origin": {in.URL}})
	if code != http.StatusForbidden || !strings.Contains(body, `"code":"csrf"`) {
		t.Errorf("admin API by session without the header: %d %s", code, body)
	}
	if _, b := in.Admin("/admin/v1/sites"); strings.Contains(string(b), "shop") {
		t.Fatalf("a refused request added a site: %s", b)
	}
	code, _, resp := s.send("POST", "/console/sites", url.Values{"id": {"shop"}, "origins": {"https://shop.example"}, "csrf": {s.csrf}}, same)
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/console/sites/shop?site=shop" {
		t.Fatalf("add with the token: %d %s", code, resp.Header.Get("Location"))
	}
	// A sign-in form posted by another site.
	code, _, _ = s.send("POST", "/console/signin", url.Values{"token": {in.AdminToken()}}, http.Header{"Origin": {"https://evil.example"}})
	if code != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d", code)
	}
}

// TestSessions: a wrong token does not sign in; signing out ends the
// session; revoking its token ends it within seconds; every console answer
// carries the strict security headers.
func TestSessions(t *testing.T) {
	in := proxytest.Start(t, lean)
	bad := &session{t: t, in: in, c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if code, body, _ := bad.send("POST", "/console/signin", url.Values{"token": {"vigie_wrong-token-0123456789"}}, nil); code != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
		t.Fatalf("wrong token: %d", code)
	}
	s := signIn(t, in, in.AdminToken())
	code, _, resp := s.send("GET", "/console/live?site=demo", nil, nil)
	csp := resp.Header.Get("Content-Security-Policy")
	if code != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("live page: %d, CSP %q", code, csp)
	}
	if code, _, _ := s.send("POST", "/console/signout", url.Values{"csrf": {s.csrf}}, nil); code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", code)
	}
	if code, _, resp := s.send("GET", "/console/live", nil, nil); code != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/signin") {
		t.Fatalf("after sign-out: %d", code)
	}

	tok := newToken(t, in, access.DPO)
	d := signIn(t, in, tok)
	if code, _, _ := d.send("GET", "/console/privacy", nil, nil); code != 200 {
		t.Fatalf("dpo privacy page: %d", code)
	}
	mk, _ := keyring.ParseMasterKey(in.MasterKey())
	kr, _, err := keyring.Open(in.Config.DataDir, mk, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, k := range kr.Tokens {
		if k.Role == access.DPO {
			id = k.ID
		}
	}
	if err := kr.RevokeToken(id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, _ := d.send("GET", "/console/privacy", nil, nil)
		if code == http.StatusSeeOther {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session of a revoked token still opens pages (%d)", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
