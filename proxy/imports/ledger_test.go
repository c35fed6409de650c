package imports_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
)

// privacyRequest posts a privacy request and waits until it is over.
func privacyRequest(t *testing.T, in *proxytest.Instance, body string) {
	t.Helper()
	code, b := in.Do("POST", "/admin/v1/privacy/requests", []byte(body), http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != http.StatusAccepted {
		t.Fatalf("privacy request %s: %d %s", body, code, b)
	}
	var v struct{ ID string }
	_ = json.Unmarshal(b, &v)
	until(t, "privacy request "+v.ID, func() bool {
		_, b := in.Admin("/admin/v1/privacy/requests/" + v.ID)
		var r struct{ Status string }
		_ = json.Unmarshal(b, &r)
		return r.Status == "done" || r.Status == "partial" || r.Status == "failed"
	})
}

// web sends an identify for userID with a consent object.
func web(t *testing.T, in *proxytest.Instance, userID, consent string) {
	t.Helper()
	code, body := in.Post("/v1/identify", "demo", `{"userId":"`+userID+`","context":{"consent":`+consent+`}}`)
	if code != 200 {
		t.Fatalf("identify %s: %d %s", userID, code, body)
	}
}

// TestImportFollowsTheLedger: an import is decided with what the person
// chose and asked: a recorded refusal beats a contract, an objection and a
// restriction apply, an erased and suppressed person stays out, a row
// older than the retention is not kept, a consent older than the ledger's
// choice yields to it, one older than 13 months is not used, and a consent
// list grants what it names.
func TestImportFollowsTheLedger(t *testing.T) {
	in := proxytest.Start(t, noPlugins)
	ctx := context.Background()
	web(t, in, "u-denied", `{"personalization":false,"analytics":true}`)
	web(t, in, "u-obj", `{"personalization":true}`)
	web(t, in, "u-gone", `{"personalization":true}`)
	web(t, in, "u-restricted", `{"personalization":true}`)
	web(t, in, "v-newer", `{"marketing":true}`)
	until(t, "identifies stored", func() bool { return eventCount(t, in) == 5 })
	privacyRequest(t, in, `{"type":"object","site":"demo","identifier":{"kind":"user_id","value":"u-obj"},"purposes":["personalization"]}`)
	privacyRequest(t, in, `{"type":"restrict","site":"demo","identifier":{"kind":"user_id","value":"u-restricted"}}`)
	privacyRequest(t, in, `{"type":"erase","site":"demo","identifier":{"kind":"user_id","value":"u-gone"},"suppress":true}`)
	before := eventCount(t, in)

	now := time.Now()
	at := strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)
	old := strconv.FormatInt(now.AddDate(-2, 0, 0).Unix(), 10)
	j := wait(t, in, create(t, in, "", contractMapping, csvOf("order_id,customer,at,total",
		"o-1,u-denied,"+at+",1",
		"o-2,u-obj,"+at+",1",
		"o-3,u-gone,"+at+",1",
		"o-4,u-restricted,"+at+",1",
		"o-5,u-old,"+old+",1",
		"o-6,u-ok,"+at+",1",
	)).ID)
	want := map[string]int64{"consent_denied": 1, "objected": 1, "suppressed": 1, "restricted": 1, "past_retention": 1}
	if j.Rows.Accepted != 1 || fmt.Sprint(j.SkippedByReason) != fmt.Sprint(want) {
		t.Fatalf("contract import: %+v %v, want 1 accepted and %v", j.Rows, j.SkippedByReason, want)
	}

	consentMapping := `{"event":"Newsletter Joined","identity":{"column":"customer","kind":"user_id"},
	 "lawful_basis":{"column":"consent","date_column":"on"},"purposes":["marketing"]}`
	j = wait(t, in, create(t, in, "", consentMapping, csvOf("customer,consent,on",
		"v-newer,no,"+day(100),
		"v-expired,yes,"+day(500),
		"v-list,marketing;analytics,"+day(3),
		"v-unknown,marketing;telepathy,"+day(3),
	)).ID)
	if j.Rows.Accepted != 2 || j.SkippedByReason["consent_expired"] != 1 || j.FailedByReason["unknown_purpose"] != 1 {
		t.Fatalf("consent import: %+v skipped %v failed %v", j.Rows, j.SkippedByReason, j.FailedByReason)
	}
	ps, _ := instanceKeys(t, in)
	st := in.Server.Store()
	if e, err := st.Consent(ctx, "demo", ps.ID("demo", pseudonymize.UserID, "v-newer")); err != nil || !slices.Contains(e.Granted, "marketing") || strings.HasPrefix(e.Source, "import") {
		t.Fatalf("an older imported refusal replaced a newer choice: %+v %v", e, err)
	}
	e, err := st.Consent(ctx, "demo", ps.ID("demo", pseudonymize.UserID, "v-list"))
	if err != nil || !slices.Contains(e.Granted, "marketing") || !slices.Contains(e.Granted, "analytics") ||
		e.Source != "import:"+j.ID || e.AtMs != dayStart(3).UnixMilli() || e.Proof == "" {
		t.Fatalf("imported consent list: %+v %v", e, err)
	}
	if _, err := st.Consent(ctx, "demo", ps.ID("demo", pseudonymize.UserID, "v-expired")); err == nil {
		t.Fatal("an expired consent was recorded")
	}
	if got := eventCount(t, in); got != before+3 {
		t.Fatalf("%d events after the imports, want %d", got, before+3)
	}
	var _ = imports.StatusDone
}

// dayStart is midnight UTC n days ago (what day(n) reads as).
func dayStart(n int) time.Time {
	t, _ := time.Parse("2006-01-02", day(n))
	return t
}
