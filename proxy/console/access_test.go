package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// concrete is a request path for a route pattern.
func concrete(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.NewReplacer("{$}", "", "{name}", "nosuch", "{id}", "demo").Replace(path)
	if strings.Contains(path, "?") {
		return method, path + "&site=demo"
	}
	return method, path + "?site=demo"
}

// TestEveryRouteChecksTheRole walks the role table: every admin API route
// (bearer token) and every console page (session) is refused to the roles
// it does not list, with a JSON 403 for the API and a page for the
// console, and open to those it lists; every pattern of the table is
// served (no catch-all 404). A marketer, above all, never reaches a
// person's data.
func TestEveryRouteChecksTheRole(t *testing.T) {
	in := proxytest.Start(t, lean)
	tokens := map[string]string{access.Admin: in.AdminToken(), access.Marketer: newToken(t, in, access.Marketer), access.DPO: newToken(t, in, access.DPO)}
	sessions := map[string]*session{}
	for role, tok := range tokens {
		sessions[role] = signIn(t, in, tok)
	}
	patterns := make([]string, 0, len(access.Routes))
	for p := range access.Routes {
		patterns = append(patterns, p)
	}
	// The privacy API's routes, registered by its own package, under their
	// prefix rule.
	patterns = append(patterns, "GET /admin/v1/privacy/requests", "POST /admin/v1/privacy/requests",
		"GET /admin/v1/privacy/requests/{id}", "GET /admin/v1/privacy/requests/{id}/export")
	sort.Strings(patterns)
	for _, pattern := range patterns {
		if pattern == "POST /console/signout" {
			continue // ends the session; TestSessions covers it
		}
		method, path := concrete(pattern)
		for _, role := range []string{access.Admin, access.Marketer, access.DPO} {
			allowed := access.Allowed(pattern, role)
			var code int
			var body string
			if strings.HasPrefix(path, "/admin/") {
				var b []byte
				code, b = in.Do(method, path, []byte(`{}`), http.Header{"Authorization": {"Bearer " + tokens[role]}})
				body = string(b)
			} else {
				s := sessions[role]
				code, body, _ = s.send(method, path, url.Values{"csrf": {s.csrf}}, http.Header{"Origin": {in.URL}})
			}
			if code == http.StatusForbidden != !allowed {
				t.Errorf("%s as %s: %d (allowed %v)\n%.300s", pattern, role, code, allowed, body)
				continue
			}
			if !allowed && strings.HasPrefix(path, "/admin/") && !strings.Contains(body, `"code":"forbidden"`) {
				t.Errorf("%s as %s: 403 without its JSON body: %s", pattern, role, body)
			}
			if !allowed && strings.HasPrefix(path, "/console/") && !strings.Contains(body, "not open to the "+role+" role") {
				t.Errorf("%s as %s: 403 without its page: %.300s", pattern, role, body)
			}
			if strings.Contains(body, "no such endpoint") {
				t.Errorf("%s is not served (%d %s)", pattern, code, body)
			}
		}
	}
	// What makes a person's data: never open to a marketer.
	for _, p := range []string{"GET /admin/v1/events", "GET /admin/v1/enriched", "GET /console/segments/{name}/members",
		"GET /admin/v1/audit", "GET /console/privacy", "GET /admin/v1/privacy/requests", "POST /admin/v1/privacy/requests/{id}/export",
		"GET /admin/v1/response/next"} { // next: a subject's recommendation
		if access.Allowed(p, access.Marketer) {
			t.Errorf("%s is open to the marketer role", p)
		}
	}
	// The privacy API's routes, registered by its own package, fall under
	// their prefix rule.
	if got := access.RolesFor("POST /admin/v1/privacy/requests"); !slices.Equal(got, []string{access.Admin, access.DPO}) {
		t.Errorf("the privacy API is open to %v", got)
	}
	// A route nobody listed is for admins only.
	if got := access.RolesFor("GET /admin/v1/something-new"); !slices.Equal(got, []string{access.Admin}) {
		t.Errorf("an unlisted route is open to %v", got)
	}
}

// TestMarketerSeesAggregatesOnly: pages a marketer may open show no
// pseudonym: the live page counts reasons, the segments API leaves the
// subjects out.
func TestMarketerSeesAggregatesOnly(t *testing.T) {
	in := proxytest.Start(t, lean)
	if code, body := in.Post("/v1/track", "demo", `{"event":"Signed Up","userId":"user-42","context":{"consent":{"analytics":true}}}`); code != 200 {
		t.Fatalf("track: %d %s", code, body)
	}
	_, b := in.Admin("/admin/v1/events?site=demo")
	var evs struct{ Events []struct{ Subject string } }
	if err := json.Unmarshal(b, &evs); err != nil || len(evs.Events) != 1 || evs.Events[0].Subject == "" {
		t.Fatalf("events: %v %s", err, b)
	}
	pseudonym := evs.Events[0].Subject
	admin := signIn(t, in, in.AdminToken())
	if code, body, _ := admin.send("GET", "/console/live?site=demo", nil, nil); code != 200 || !strings.Contains(body, pseudonym[:12]) || !strings.Contains(body, "explicit grant") {
		t.Fatalf("admin live page: %d, pseudonym or reason missing", code)
	}
	m := signIn(t, in, newToken(t, in, access.Marketer))
	code, body, _ := m.send("GET", "/console/live?site=demo", nil, nil)
	if code != 200 || strings.Contains(body, pseudonym[:12]) || !strings.Contains(body, `id="live-summary"`) || !strings.Contains(body, "explicit grant") {
		t.Fatalf("marketer live page: %d\n%s", code, body)
	}
	if strings.Contains(body, "/console/sites") || strings.Contains(body, "/console/privacy") {
		t.Error("the marketer's navigation links pages closed to the role")
	}
}
