// Package access is the one home of who may do what: a table mapping each
// admin API route and console page (by its http.ServeMux pattern) to the
// roles allowed, read by the admin middleware (bearer tokens and console
// sessions alike) and by the console's pages.
//
// Roles are the keyring's (keyring.Roles):
//
//   - admin: everything;
//   - marketer: aggregates, segments, campaigns, destinations, never a
//     person's data (no event listing, enriched events, segment members,
//     privacy requests, export or audit trail);
//   - dpo: privacy requests, the register, the audit trail, the consent
//     statistics and the sensitive-data report.
//
// A pattern the table does not name, and no prefix rule covers, is allowed
// to admin only: a new route is closed until a row opens it.
package access

import (
	"context"
	"slices"
	"strings"

	"github.com/vigie-dev/vigie/proxy/keyring"
)

// Role names, as the keyring stores them.
const (
	Admin    = keyring.RoleAdmin
	Marketer = keyring.RoleMarketer
	DPO      = keyring.RoleDPO
)

var (
	all       = []string{Admin, Marketer, DPO}
	adminOnly = []string{Admin}
	marketing = []string{Admin, Marketer}
	privacy   = []string{Admin, DPO}
)

// Routes maps a route pattern, exactly as registered on the mux ("GET
// /admin/v1/events"), to the roles allowed. Exported for tests and
// documentation; do not modify.
var Routes = map[string][]string{
	// Admin API.
	"GET /admin/v1/events":                     adminOnly, // stored events: pseudonyms
	"GET /admin/v1/enriched":                   adminOnly, // enriched events: pseudonyms
	"GET /admin/v1/stats":                      all,       // counts per site, no person
	"GET /admin/v1/overview":                   all,       // the console's overview: aggregates
	"GET /admin/v1/plugins":                    marketing, // health, lag, dead letters (destinations)
	"POST /admin/v1/plugins/{name}/replay":     marketing,
	"GET /admin/v1/segments":                   marketing, // recent changes without subjects unless admin
	"POST /admin/v1/email/rewrite":             marketing, // campaigns
	"POST /admin/v1/email/tokens":              marketing,
	"GET /admin/v1/email/counts":               marketing, // campaign-level counters
	"GET /admin/v1/response/model":             marketing, // contact type × message type cells: aggregates
	"GET /admin/v1/response/uplift":            marketing, // treated against holdout per contact type: aggregates
	"GET /admin/v1/retention/next":             privacy,   // what is purged next: counts and dates
	"GET /admin/v1/sensitive":                  privacy,   // the DPO's report: counts and redacted examples
	"GET /admin/v1/audit":                      privacy,
	"GET /admin/v1/register":                   privacy,
	"GET /admin/v1/sites":                      adminOnly,
	"POST /admin/v1/sites":                     adminOnly,
	"GET /admin/v1/cluster/nodes":              adminOnly, // the membership
	"DELETE /admin/v1/cluster/nodes/{node}":    adminOnly, // removes a dead node: requests stop waiting for it
	"GET /console/{$}":                         all,
	"GET /console/overview":                    all, // aggregates and consent statistics
	"GET /console/live":                        all, // admin: events; others: reasons only
	"GET /console/live/summary":                all,
	"GET /console/segments":                    marketing,
	"GET /console/segments/{name}/members":     adminOnly,
	"GET /console/email":                       marketing,
	"GET /console/response":                    marketing, // the response model: aggregates
	"GET /console/destinations":                marketing,
	"POST /console/destinations/{name}/resync": marketing,
	"GET /console/plugins":                     marketing,
	"POST /console/plugins/{name}/replay":      marketing,
	"GET /console/privacy":                     privacy,
	"POST /console/privacy/requests":           privacy,
	"GET /console/privacy/requests/{id}":       privacy,
	"GET /console/sensitive":                   privacy,
	"GET /console/sites":                       adminOnly,
	"POST /console/sites":                      adminOnly,
	"GET /console/sites/{id}":                  adminOnly,
	"GET /console/sites/{id}/first-event":      adminOnly,
	"POST /console/signout":                    all,
}

// prefixes open whole route families, for routes registered elsewhere
// (the privacy request API under /admin/v1/privacy/). The longest prefix
// of a pattern's path wins; any method.
var prefixes = map[string][]string{
	"/admin/v1/privacy/": privacy,
}

// Allowed reports whether role may use the route registered as pattern.
func Allowed(pattern, role string) bool {
	return slices.Contains(RolesFor(pattern), role)
}

// RolesFor returns the roles allowed on pattern: its row, else its
// longest prefix rule, else admin only.
func RolesFor(pattern string) []string {
	if r, ok := Routes[pattern]; ok {
		return r
	}
	_, path, _ := strings.Cut(pattern, " ")
	if path == "" {
		path = pattern
	}
	best, roles := 0, adminOnly
	for p, r := range prefixes {
		if strings.HasPrefix(path, p) && len(p) > best {
			best, roles = len(p), r
		}
	}
	return roles
}

// PersonalData reports whether role may see a person's data: pseudonyms,
// events one by one, segment members, privacy requests' subjects. Only
// admin may; pages shown to the others give aggregates.
func PersonalData(role string) bool { return role == Admin }

// Identity is who makes a request: an API token (bearer, or the token a
// console session was opened with), named by id and role, never by value.
type Identity struct {
	// TokenID is the keyring's id of the token (t1, t2…).
	TokenID string
	// Role is the token's role.
	Role string
	// Name is the token's name, if it has one.
	Name string
	// Session is set when the request came with a console session cookie
	// rather than a bearer token.
	Session bool
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity WithIdentity put in ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
