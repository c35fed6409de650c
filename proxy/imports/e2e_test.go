package imports_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// The canaries: personal data in a free-text column, which must never
// reach Badger, the streams, the job or the logs in clear.
const (
	canaryEmail = "canary.leak@example.net"
	canaryPhone = "+33 6 12 34 56 78"
)

// ordersMapping maps the orders file of the README.
const ordersMapping = `{
 "event": "Order Completed",
 "identity": {"column": "email", "kind": "email"},
 "natural_key": ["order_id"],
 "timestamp": {"column": "ordered_at"},
 "properties": {
   "order_id": "order_id",
   "total": {"column": "amount", "type": "number"},
   "note": "note"
 },
 "attributes": {"loyalty_score": {"column": "score", "type": "number"}},
 "lawful_basis": {"column": "consent", "date_column": "consent_date", "source_column": "consent_source"},
 "purposes": ["marketing"]
}`

// ordersFile has two orders of ann (seen on the site before), one of bob
// (never seen), and rows to skip or fail.
func ordersFile() string {
	return csvOf(
		"order_id,email,ordered_at,amount,note,score,consent,consent_date,consent_source",
		"A-1,Ann@Example.org,"+day(3)+",49.90,gift wrap,7,yes,"+day(100)+",newsletter form",
		"A-2,ann@example.org,"+day(1)+",12.50,call me at "+canaryPhone+" or "+canaryEmail+",8,yes,"+day(100)+",newsletter form",
		"B-1,bob@example.org,"+day(2)+",99,,3,yes,"+day(10)+",checkout",
		"C-1,carol@example.org,"+day(2)+",10,,,no,"+day(5)+",checkout",
		"D-1,dave@example.org,"+day(2)+",10,,,,,",
		"E-1,eve@example.org,"+day(2)+",ten euros,,,yes,"+day(5)+",checkout",
	)
}

// TestImportOrders is the README's walk-through: a CSV of orders
// imported by e-mail lands on the profiles (the one the site already knew
// and a new one), pseudonymized and scrubbed, grows the segments, records
// the consent proofs, sets the attributes, skips and fails what it must
// with per-row errors naming no value; importing it again adds nothing,
// and a dry run stores nothing.
func TestImportOrders(t *testing.T) {
	in := proxytest.Start(t, shopSegments)
	ctx := context.Background()
	// Ann is known to the site: an identify with her e-mail and consent.
	code, body := in.Post("/v1/identify", "demo", `{"userId":"u-ann","traits":{"email":"ann@example.org"},
	  "context":{"consent":{"marketing":true,"analytics":true}}}`)
	if code != 200 {
		t.Fatalf("identify: %d %s", code, body)
	}
	until(t, "identify stored", func() bool { return eventCount(t, in) == 1 })
	annSubject := eventsOf(t, in, "identify")[0].GetSubject()

	j := create(t, in, "", ordersMapping, ordersFile())
	if j.Status != imports.StatusQueued || j.ID == "" || j.File.Bytes == 0 {
		t.Fatalf("created job: %+v", j)
	}
	j = wait(t, in, j.ID)
	want := imports.Rows{Read: 6, Accepted: 3, Skipped: 2, Failed: 1}
	if j.Status != imports.StatusDone || j.Rows != want {
		t.Fatalf("job: %s %+v, want %+v (%s)", j.Status, j.Rows, want, j.Error)
	}
	if j.SkippedByReason["consent_denied"] != 1 || j.SkippedByReason["no_lawful_basis"] != 1 || j.FailedByReason["invalid_number"] != 1 {
		t.Fatalf("reasons: skipped %v failed %v", j.SkippedByReason, j.FailedByReason)
	}
	if j.Progress.Percent != 100 || j.Progress.BytesDone != j.File.Bytes {
		t.Fatalf("progress: %+v", j.Progress)
	}

	// The events: one per accepted row, from the import, pseudonymous,
	// scrubbed, ann's on the subject the site knew.
	orders := eventsOf(t, in, "track")
	if len(orders) != 3 {
		t.Fatalf("%d orders stored, want 3", len(orders))
	}
	bySubject := map[string]int{}
	for _, ev := range orders {
		if ev.GetSource() != "import" || ev.GetName() != "Order Completed" || ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS ||
			!slices.Contains(ev.GetPurposes(), "marketing") {
			t.Fatalf("imported event: %v", ev)
		}
		bySubject[ev.GetSubject()]++
	}
	if bySubject[annSubject] != 2 || len(bySubject) != 2 {
		t.Fatalf("ann's orders are not on her subject: %v (ann %s)", bySubject, annSubject)
	}
	var bobSubject string
	for s := range bySubject {
		if s != annSubject {
			bobSubject = s
		}
	}
	// Bob, never seen, is found by his e-mail through the blind index.
	st := in.Server.Store()
	mac, _ := blindEntry(t, in, "bob@example.org")
	if subs, err := st.BlindLookup(ctx, "demo", mac); err != nil || !slices.Contains(subs, bobSubject) {
		t.Fatalf("bob not in the blind index: %v %v", subs, err)
	}
	assertNoCanary(t, in)
	// Bob's access request, by e-mail, finds his imported order.
	code, body = in.Do("POST", "/admin/v1/privacy/requests", []byte(`{"type":"access","site":"demo","identifier":{"kind":"email","value":"bob@example.org"}}`),
		http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	var req struct{ ID string }
	if code != 202 || json.Unmarshal(body, &req) != nil {
		t.Fatalf("access request: %d %s", code, body)
	}
	var export struct {
		Events []map[string]any `json:"events"`
	}
	until(t, "bob's export", func() bool {
		code, body := in.Admin("/admin/v1/privacy/requests/" + req.ID + "/export")
		return code == 200 && json.Unmarshal(body, &export) == nil && len(export.Events) > 0
	})
	if len(export.Events) != 1 || export.Events[0]["name"] != "Order Completed" {
		t.Fatalf("bob's export: %v", export.Events)
	}

	// Profiles and segments grow by themselves (the segments plugin).
	until(t, "segments", func() bool {
		sizes, _ := st.SegmentSizes(ctx, "demo")
		return sizes["buyers"] == 2 && sizes["repeat-buyers"] == 1
	})
	ann, err := st.Profile(ctx, "demo", annSubject)
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]any
	_ = json.Unmarshal(ann.Attributes, &attrs)
	if attrs["loyalty_score"] != float64(8) || !slices.Contains(ann.Segments, "repeat-buyers") {
		t.Fatalf("ann's profile: %+v %s", ann, ann.Attributes)
	}
	// The consent proofs, with their source; carol's refusal too.
	h, err := st.ConsentHistory(ctx, "demo", bobSubject)
	if err != nil || len(h) != 1 || h[0].Source != "import:"+j.ID+":checkout" || !slices.Contains(h[0].Granted, "marketing") {
		t.Fatalf("bob's consent history: %+v %v", h, err)
	}
	if e, err := st.Consent(ctx, "demo", userPseudonym(t, in, "carol@example.org")); err != nil || !slices.Contains(e.Denied, "marketing") {
		t.Fatalf("carol's refusal not recorded: %+v %v", e, err)
	}

	// Per-row errors, paginated, naming no value.
	code, body = in.Admin("/admin/v1/imports/" + j.ID + "/errors?limit=2")
	var page struct {
		Errors []imports.RowError `json:"errors"`
		Next   string             `json:"next_cursor"`
	}
	if code != 200 || json.Unmarshal(body, &page) != nil || len(page.Errors) != 2 || page.Next == "" {
		t.Fatalf("errors page 1: %d %s", code, body)
	}
	all := page.Errors
	code, body = in.Admin("/admin/v1/imports/" + j.ID + "/errors?limit=2&cursor=" + page.Next)
	var page2 struct {
		Errors []imports.RowError `json:"errors"`
		Next   string             `json:"next_cursor"`
	}
	if code != 200 || json.Unmarshal(body, &page2) != nil || len(page2.Errors) != 1 || page2.Next != "" {
		t.Fatalf("errors page 2: %d %s", code, body)
	}
	all = append(all, page2.Errors...)
	got := fmt.Sprintf("%d %s %d %s %d %s %s %s", all[0].Row, all[0].Reason, all[1].Row, all[1].Reason, all[2].Row, all[2].Field, all[2].Column, all[2].Reason)
	if got != "4 consent_denied 5 no_lawful_basis 6 properties.total amount invalid_number" {
		t.Fatalf("errors: %s\n%+v", got, all)
	}
	jobJSON, _ := json.Marshal(getJob(t, in, j.ID))
	for _, b := range [][]byte{body, jobJSON} {
		for _, v := range []string{"ten euros", "carol", "dave", "eve@", "ann@", canaryEmail} {
			if bytes.Contains(b, []byte(v)) {
				t.Fatalf("a value of the file (%q) is in %s", v, b)
			}
		}
	}

	// The same file again adds nothing.
	before := eventCount(t, in)
	again := wait(t, in, create(t, in, "", ordersMapping, ordersFile()).ID)
	if again.Rows.Accepted != 0 || again.SkippedByReason["duplicate"] != 3 || eventCount(t, in) != before {
		t.Fatalf("re-import: %+v %v, events %d → %d", again.Rows, again.SkippedByReason, before, eventCount(t, in))
	}
	// A dry run counts and stores nothing.
	dry := wait(t, in, create(t, in, "?dry_run=true", ordersMapping, csvOf(
		"order_id,email,ordered_at,amount,note,score,consent,consent_date,consent_source",
		"F-1,frank@example.org,"+day(1)+",5,,,yes,"+day(1)+",shop",
	)).ID)
	if !dry.DryRun || dry.Rows.Accepted != 1 || eventCount(t, in) != before {
		t.Fatalf("dry run: %+v, events %d → %d", dry, before, eventCount(t, in))
	}
	if _, err := st.Consent(ctx, "demo", userPseudonym(t, in, "frank@example.org")); err == nil {
		t.Fatal("a dry run recorded a consent")
	}
	if m, _ := blindEntry(t, in, "frank@example.org"); func() bool { s, _ := st.BlindLookup(ctx, "demo", m); return len(s) > 0 }() {
		t.Fatal("a dry run wrote the blind index")
	}
	for _, v := range []string{canaryEmail, "ann@example.org", "bob@example.org", "12 34 56 78"} {
		if strings.Contains(in.Logs(), v) {
			t.Fatalf("the logs hold %q", v)
		}
	}
}

// assertNoCanary checks that the canaries are nowhere in the data dir
// (Badger, the JetStream store, the import files) nor in the streams.
func assertNoCanary(t *testing.T, in *proxytest.Instance) {
	t.Helper()
	ctx := context.Background()
	js := in.Server.Bus().JetStream()
	for _, name := range []string{streams.Events, streams.Enriched} {
		until(t, "the orders on "+name, func() bool {
			st, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			info, err := st.Info(ctx)
			if err != nil || info.State.Msgs < 4 {
				return false
			}
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil {
					continue
				}
				for _, v := range []string{canaryEmail, "12 34 56 78", "bob@example.org", "ann@example.org"} {
					if bytes.Contains(m.Data, []byte(v)) {
						t.Fatalf("%q in clear on %s", v, m.Subject)
					}
				}
			}
			return true
		})
	}
	for path, b := range in.DataFiles() {
		for _, v := range []string{canaryEmail, "12 34 56 78", "bob@example.org"} {
			if bytes.Contains(b, []byte(v)) {
				t.Fatalf("%q in clear in %s", v, path)
			}
		}
	}
}

// eventsOf returns the stored events of type typ.
func eventsOf(t *testing.T, in *proxytest.Instance, typ string) []*vigiev1.Event {
	t.Helper()
	raw, _, err := in.Server.Store().Events(context.Background(), "demo", 10_000, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []*vigiev1.Event
	for _, b := range raw {
		ev := &vigiev1.Event{}
		if err := proto.Unmarshal(b, ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetType() == typ {
			out = append(out, ev)
		}
	}
	return out
}

// instanceKeys opens the instance's keyring as on disk: its pseudonymizer
// and blind index.
func instanceKeys(t *testing.T, in *proxytest.Instance) (*pseudonymize.Pseudonymizer, *blind.Index) {
	t.Helper()
	mk, err := keyring.ParseMasterKey(in.MasterKey())
	if err != nil {
		t.Fatal(err)
	}
	kr, _, err := keyring.Open(in.Config.DataDir, mk, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []pseudonymize.Key
	for _, k := range kr.Active() {
		keys = append(keys, pseudonymize.Key{ID: k.ID, Secret: k.Secret})
	}
	ps, err := pseudonymize.New(pseudonymize.Config{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	bi, err := blind.New(kr.BlindIndexKey)
	if err != nil {
		t.Fatal(err)
	}
	return ps, bi
}

// userPseudonym is the pseudonym an e-mail address has as a user id on
// demo (an imported person never seen).
func userPseudonym(t *testing.T, in *proxytest.Instance, email string) string {
	t.Helper()
	ps, _ := instanceKeys(t, in)
	return ps.ID("demo", pseudonymize.UserID, blind.Normalize(blind.Email, email, ""))
}

// blindEntry is the blind-index entry of an e-mail address on demo.
func blindEntry(t *testing.T, in *proxytest.Instance, email string) (storage.IndexEntry, bool) {
	t.Helper()
	_, bi := instanceKeys(t, in)
	return bi.Entry("demo", blind.Email, email, "")
}

// TestEmailJoinsTheSiteSubject: a person imported by e-mail before the
// site knew them gets the pseudonym their address would have as a user id;
// once the site identifies them with that address, the next import lands
// on the site's subject, linked to the first one (a request by user id
// finds both).
func TestEmailJoinsTheSiteSubject(t *testing.T) {
	in := proxytest.Start(t, noPlugins)
	ctx := context.Background()
	header := "order_id,email,ordered_at,amount,note,score,consent,consent_date,consent_source"
	wait(t, in, create(t, in, "", ordersMapping, csvOf(header, "J-1,joe@example.org,"+day(5)+",10,,,yes,"+day(5)+",shop")).ID)
	own := userPseudonym(t, in, "joe@example.org")
	if evs := eventsOf(t, in, "track"); len(evs) != 1 || evs[0].GetSubject() != own {
		t.Fatalf("first import's subject: %v, want %s", evs, own)
	}
	web(t, in, "u-joe", `{"marketing":true}`)
	code, body := in.Post("/v1/identify", "demo", `{"userId":"u-joe","traits":{"email":"joe@example.org"},"context":{"consent":{"marketing":true}}}`)
	if code != 200 {
		t.Fatalf("identify: %d %s", code, body)
	}
	until(t, "identify stored", func() bool { return len(eventsOf(t, in, "identify")) == 2 })
	site := eventsOf(t, in, "identify")[0].GetSubject()
	wait(t, in, create(t, in, "", ordersMapping, csvOf(header, "J-2,joe@example.org,"+day(1)+",20,,,yes,"+day(5)+",shop")).ID)
	var second string
	for _, ev := range eventsOf(t, in, "track") {
		if ev.GetSubject() != own {
			second = ev.GetSubject()
		}
	}
	if second != site {
		t.Fatalf("second import on %q, want the site's subject %q", second, site)
	}
	links, err := in.Server.Store().SubjectLinks(ctx, "demo", site)
	if err != nil || !slices.Contains(links, own) {
		t.Fatalf("links of the site's subject: %v %v", links, err)
	}
}
