package imports_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestImportContactsNDJSON: an NDJSON file of contacts becomes identify
// events: personal traits go to the encrypted vault, the others stay on
// the event, the attributes land on the profile, the person is found by
// e-mail; lines that are not objects, not JSON or hold an object where a
// value is expected fail with their reason.
func TestImportContactsNDJSON(t *testing.T) {
	in := proxytest.Start(t, noPlugins)
	ctx := context.Background()
	mapping := `{"format":"ndjson","type":"identify","identity":{"column":"email","kind":"email"},
	 "traits":{"email":"email","first_name":"first","plan":"plan"},
	 "attributes":{"churn_risk":{"column":"risk","type":"number"},"vip":{"column":"vip","type":"boolean"}},
	 "lawful_basis":{"basis":"contract"},"purposes":["personalization"]}`
	file := strings.Join([]string{
		`{"email":"zoe@example.org","first":"Zoé","plan":"gold","risk":0.3,"vip":true,"ignored":{"deep":[1]}}`,
		``,
		`["not","an","object"]`,
		`{"email":"yan@example.org","plan":{"tier":"gold"}}`,
		`{"email":"xavier@example.org",`,
		`{"email":"will@example.org","first":"Will","vip":"sometimes"}`,
		`{"email":"vera@example.org","first":"Vera","risk":1}`,
	}, "\n")
	j := wait(t, in, create(t, in, "", mapping, file).ID)
	if j.Rows.Read != 6 || j.Rows.Accepted != 2 || j.FailedByReason["not_an_object"] != 1 ||
		j.FailedByReason["unsupported_value"] != 1 || j.FailedByReason["malformed_row"] != 1 || j.FailedByReason["invalid_boolean"] != 1 {
		t.Fatalf("job: %+v %v (%s)", j.Rows, j.FailedByReason, j.Error)
	}
	ids := eventsOf(t, in, "identify")
	if len(ids) != 2 {
		t.Fatalf("%d identify events", len(ids))
	}
	m, _ := blindEntry(t, in, "zoe@example.org")
	subs, err := in.Server.Store().BlindLookup(ctx, "demo", m)
	if err != nil || len(subs) != 1 {
		t.Fatalf("zoe by e-mail: %v %v", subs, err)
	}
	var zoe = ids[0]
	if zoe.GetSubject() != subs[0] {
		zoe = ids[1]
	}
	var traits map[string]any
	_ = json.Unmarshal(zoe.GetTraits(), &traits)
	if traits["plan"] != "gold" || traits["email"] != nil || traits["first_name"] != nil ||
		!slices.Contains(zoe.GetVaultedTraits(), "email") || !slices.Contains(zoe.GetVaultedTraits(), "first_name") {
		t.Fatalf("zoe's event: traits %s vaulted %v", zoe.GetTraits(), zoe.GetVaultedTraits())
	}
	vault, err := in.Server.Store().VaultTraits(zoe.GetSubject(), "demo")
	if err != nil || !strings.Contains(string(vault), "zoe@example.org") || !strings.Contains(string(vault), "Zoé") {
		t.Fatalf("zoe's vault: %s %v", vault, err)
	}
	p, err := in.Server.Store().Profile(ctx, "demo", zoe.GetSubject())
	if err != nil || string(p.Attributes) != `{"churn_risk":0.3,"vip":true}` {
		t.Fatalf("zoe's profile: %+v %v", p, err)
	}
	for path, b := range in.DataFiles() {
		if strings.Contains(string(b), "zoe@example.org") {
			t.Fatalf("zoe's e-mail in clear in %s", path)
		}
	}
}
