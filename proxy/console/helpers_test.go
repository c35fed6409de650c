package console_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestMain lets this test binary serve the built-in plugins when Vigie
// re-executes it as "<binary> plugin <name>".
func TestMain(m *testing.M) {
	builtin.MaybeRun(os.Args)
	os.Exit(m.Run())
}

// lean runs no plugin.
func lean(c *config.Config) { c.Plugins = []config.Plugin{} }

// newToken makes a token of role in the running instance's keyring, as
// `vigie tokens create` does, and waits until the server accepts it.
func newToken(t *testing.T, in *proxytest.Instance, role string) string {
	t.Helper()
	mk, err := keyring.ParseMasterKey(in.MasterKey())
	if err != nil {
		t.Fatal(err)
	}
	kr, _, err := keyring.Open(in.Config.DataDir, mk, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := kr.CreateToken(role, role+" user")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := in.Do("GET", "/admin/v1/stats", nil, http.Header{"Authorization": {"Bearer " + tok}})
		if code == 200 {
			return tok
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not pick up the new %s token (%d)", role, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// session is a signed-in console client (cookie jar, no redirects
// followed) and its CSRF token.
type session struct {
	t    *testing.T
	in   *proxytest.Instance
	c    *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in to the console with tok as a browser would.
func signIn(t *testing.T, in *proxytest.Instance, tok string) *session {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	s := &session{t: t, in: in, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	code, _, resp := s.send("POST", "/console/signin", url.Values{"token": {tok}}, http.Header{"Origin": {in.URL}})
	if code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", code)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "vigie_session" {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
		t.Fatalf("session cookie: %+v", ck)
	}
	code, body, _ := s.send("GET", "/console/overview", nil, nil)
	m := csrfField.FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("overview after sign-in: %d, csrf %v\n%s", code, m, body)
	}
	s.csrf = m[1]
	return s
}

// send sends a request with the session's cookie; form, when not nil, is
// the urlencoded body.
func (s *session) send(method, path string, form url.Values, hdr http.Header) (int, string, *http.Response) {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.in.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := s.c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}
