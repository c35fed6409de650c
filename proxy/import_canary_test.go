package proxy_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/canarytest"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// postImport sends an import (mapping and file as multipart parts, the
// file part named name) with hdr; it returns the status and body.
func postImport(t *testing.T, in *proxytest.Instance, query, mapping, name string, file []byte, hdr http.Header) (int, []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.WriteField("mapping", mapping); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(file)
	_ = mw.Close()
	h := http.Header{"Content-Type": {mw.FormDataContentType()}, "Authorization": {"Bearer " + in.AdminToken()}}
	for k, v := range hdr {
		h[k] = v
	}
	return in.Do("POST", "/admin/v1/imports"+query, body.Bytes(), h)
}

// waitImport polls an import job until it ended.
func waitImport(t *testing.T, in *proxytest.Instance, id string) imports.Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := in.Admin("/admin/v1/imports/" + id)
		var j imports.Job
		if code != 200 || json.Unmarshal(body, &j) != nil {
			t.Fatalf("import %s: %d %s", id, code, body)
		}
		switch j.Status {
		case imports.StatusDone, imports.StatusFailed, imports.StatusCanceled:
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("import %s still %s", id, j.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// importCanaries are this test's own canaries: the local part of the
// identity e-mail of each row.
var importCanaries = []string{"row-canary"}

// importCSV is the orders file of the sweep: for each consent state (yes,
// none, no) and each canary variant a row with the variant in every
// column (mapped, unmapped, the lawful basis' source, an attribute), an
// identity e-mail naming the row, then malformed rows holding canaries
// where a value fails (identity, number, time, consent, quotes, field
// count, UTF-8).
func importCSV() []byte {
	all := strings.Join(canarytest.Texts(), " ; ")
	link := "https://shop.example/u/" + canarytest.Email + "?email=" + url.QueryEscape(canarytest.Email) + "&tok=" + canarytest.Token
	consentDate := time.Now().UTC().AddDate(0, 0, -10).Format("2006-01-02")
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"email", "ordered_at", "note", "link", "amount", "score", "consent", "consent_date", "consent_source", "unmapped", "Hdr Canary " + canarytest.Email})
	i := 0
	for _, state := range []string{"yes", "", "no"} {
		for _, v := range canarytest.Variants {
			i++
			id := fmt.Sprintf("row-canary-%d.%s", i, canarytest.Email)
			_ = w.Write([]string{id, "", v.Send + " ; " + all, link, "12.5", v.Send, state, consentDate, "form " + v.Send, all, v.Send})
		}
	}
	bad := [][]string{
		// identity: not an e-mail (encoded), or empty
		{"rita.canary+news%2540example.org", "", all, link, "1", all, "yes", consentDate, all, all, all},
		{"", "", all, link, "1", all, "yes", consentDate, all, all, all},
		// a number, a time, a consent and a consent date that are canaries
		{"row-canary-n." + canarytest.Email, "", all, link, canarytest.Phone, all, "yes", consentDate, all, all, all},
		{"row-canary-t." + canarytest.Email, canarytest.Email, all, link, "1", all, "yes", consentDate, all, all, all},
		{"row-canary-c." + canarytest.Email, "", all, link, "1", all, canarytest.Email, consentDate, all, all, all},
		{"row-canary-d." + canarytest.Email, "", all, link, "1", all, "yes", canarytest.Phone, all, all, all},
		// one field too many
		{"row-canary-f." + canarytest.Email, "", all, link, "1", all, "yes", consentDate, all, all, all, all},
	}
	for _, r := range bad {
		_ = w.Write(r)
	}
	w.Flush()
	// Bad quoting and invalid UTF-8, each holding canaries.
	fmt.Fprintf(&b, "row-canary-q.%s,,\"%s,x\"y\"%s,,,,yes,%s,,,\n", canarytest.Email, canarytest.Email, all, consentDate)
	fmt.Fprintf(&b, "row-canary-u.%s,,\xff\xfe%s,,1,,yes,%s,,,\n", canarytest.Email, canarytest.Phone, consentDate)
	return b.Bytes()
}

// TestImportCanariesNeverAtRest sends personal data of every class, in
// every encoding, in every column of imports (mapped properties, an
// attribute, unmapped columns, the identity, the lawful basis' columns,
// header names, malformed rows), under granted, absent and denied consent,
// with canaries in the file names and Idempotency-Keys, and an identify
// import whose personal traits go to the vault. Nothing of them may be
// found in the job answers, the per-row errors, the events, the plugins'
// input, every stream, the logs, every version of every Badger value, nor
// the raw files after shutdown (the vaulted traits only encrypted).
func TestImportCanariesNeverAtRest(t *testing.T) {
	recFile := filepath.Join(t.TempDir(), "plugin-input.txt")
	in := proxytest.Start(t, func(c *config.Config) {
		c.Plugins = []config.Plugin{
			{Name: "segments", Config: map[string]any{"segments": []any{
				map[string]any{"name": "buyers", "when": `profile.count("track", "Order Completed", "30d") >= 1`},
			}}},
			{Name: "recorder", Config: map[string]any{"file": recFile}},
		}
	})
	orders := `{"event": "Order Completed",
	  "identity": {"column": "email", "kind": "email"},
	  "timestamp": {"column": "ordered_at"},
	  "properties": {"note": "note", "link": "link", "total": {"column": "amount", "type": "number"}},
	  "attributes": {"remark": "score"},
	  "lawful_basis": {"column": "consent", "date_column": "consent_date", "source_column": "consent_source"},
	  "purposes": ["marketing", "personalization"]}`
	code, body := postImport(t, in, "?site=demo", orders, "canary-file-name "+canarytest.Email+".csv", importCSV(),
		http.Header{"Idempotency-Key": {"idem-canary-" + canarytest.Email}})
	if code != http.StatusAccepted {
		t.Fatalf("orders import: %d %s", code, body)
	}
	canarytest.FindExtra(t, "orders import answer", body, importCanaries...)
	var jobs []imports.Job
	var j imports.Job
	_ = json.Unmarshal(body, &j)
	jobs = append(jobs, waitImport(t, in, j.ID))

	// An identify import by user id: e-mail, names and phone are vaulted
	// traits, the bio a scrubbed one.
	var idf bytes.Buffer
	w := csv.NewWriter(&idf)
	_ = w.Write([]string{"user", "mail", "first", "last", "tel", "bio", "ok", "when"})
	consentDate := time.Now().UTC().AddDate(0, 0, -3).Format(time.RFC3339)
	for i, state := range []string{"yes", "", "no"} {
		for k, v := range canarytest.Variants {
			_ = w.Write([]string{fmt.Sprintf("%s-imp-%d-%d", canarytest.User, i, k), fmt.Sprintf("row-canary-v%d-%d.%s", i, k, canarytest.Email),
				canarytest.First, canarytest.Last, canarytest.Phone, v.Send, state, consentDate})
		}
	}
	w.Flush()
	people := `{"type": "identify", "identity": {"column": "user", "kind": "user_id"},
	  "traits": {"email": "mail", "firstName": "first", "lastName": "last", "phone": "tel", "bio": "bio"},
	  "lawful_basis": {"column": "ok", "date_column": "when"}, "purposes": ["personalization"]}`
	code, body = postImport(t, in, "", people, "people of "+canarytest.First+".csv", idf.Bytes(), nil)
	if code != http.StatusAccepted {
		t.Fatalf("people import: %d %s", code, body)
	}
	_ = json.Unmarshal(body, &j)
	jobs = append(jobs, waitImport(t, in, j.ID))

	// NDJSON: canaries as values, nested (unsupported), and as keys.
	var nd bytes.Buffer
	for i, v := range canarytest.Variants {
		line, _ := json.Marshal(map[string]any{"who": fmt.Sprintf("row-canary-j%d.%s", i, canarytest.Email), "note": v.Send,
			"extra": map[string]any{v.Send: v.Send}, "consent": "yes", "at": consentDate})
		nd.Write(append(line, '\n'))
	}
	fmt.Fprintf(&nd, `{"who":{"email":%q},"note":"x","consent":"yes","at":%q}`+"\n", canarytest.Email, consentDate)
	fmt.Fprintf(&nd, `["%s", "%s"]`+"\n", canarytest.Email, canarytest.Phone)
	fmt.Fprintf(&nd, `{"who":"%s" "note"}`+"\n", canarytest.Email)
	ndMap := `{"event": "Note Taken", "identity": {"column": "who", "kind": "email"}, "properties": {"note": "note"},
	  "lawful_basis": {"column": "consent", "date_column": "at"}, "purposes": ["marketing"]}`
	code, body = postImport(t, in, "", ndMap, "notes-"+canarytest.Email+".ndjson", nd.Bytes(), nil)
	if code != http.StatusAccepted {
		t.Fatalf("ndjson import: %d %s", code, body)
	}
	_ = json.Unmarshal(body, &j)
	jobs = append(jobs, waitImport(t, in, j.ID))

	// The mapping itself is kept by its job and shown: one whose names
	// hold personal data is refused, naming the field, not the value.
	hdrCol := "Hdr Canary " + canarytest.Email
	for _, c := range []struct{ field, event, props string }{
		{"event", "Orders of " + canarytest.Email, `"note": "note"`},
		{"properties", "Order", `"note of ` + canarytest.Phone + `": "note"`},
		{"properties.note", "Order", `"note": "` + hdrCol + `"`},
		{"timestamp.format", "Order", `"note": "note"}, "timestamp": {"column": "ordered_at", "format": "2006 ` + canarytest.Email + `"`},
	} {
		m := `{"event": "` + c.event + `", "identity": {"column": "email", "kind": "email"}, "properties": {` + c.props + `},
		  "lawful_basis": {"column": "consent", "date_column": "consent_date"}, "purposes": ["marketing"]}`
		code, body = postImport(t, in, "", m, "orders.csv", importCSV(), nil)
		var e struct{ Code, Field, Error string }
		if code != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Code != "invalid_mapping" || e.Field != c.field ||
			!strings.Contains(e.Error, "personal data") {
			t.Errorf("mapping with personal data in %s: %d %s", c.field, code, body)
		}
		canarytest.FindExtra(t, "refused mapping answer", body, importCanaries...)
	}

	nVariants := int64(len(canarytest.Variants))
	for i, want := range []struct{ accepted, minFailed int64 }{{nVariants, 9}, {nVariants, 0}, {nVariants, 3}} {
		got := jobs[i]
		if got.Status != imports.StatusDone || got.Rows.Accepted != want.accepted || got.Rows.Failed < want.minFailed {
			t.Errorf("import %d: %s, rows %+v failed by %v, want %d accepted and at least %d failed", i, got.Status, got.Rows, got.FailedByReason, want.accepted, want.minFailed)
		}
	}
	// The answers: each job, the list, every page of per-row errors.
	for _, job := range jobs {
		_, b := in.Admin("/admin/v1/imports/" + job.ID)
		canarytest.FindExtra(t, "import job "+job.ID, b, importCanaries...)
		_, b = in.Admin("/admin/v1/imports/" + job.ID + "/errors?limit=1000")
		canarytest.FindExtra(t, "import errors "+job.ID, b, importCanaries...)
		if job.Errors.Stored > 0 && !bytes.Contains(b, []byte(`"reason"`)) {
			t.Errorf("import %s: no per-row errors listed: %s", job.ID, b)
		}
	}
	_, b := in.Admin("/admin/v1/imports")
	canarytest.FindExtra(t, "import list", b, importCanaries...)

	// The events, with what is useful kept: pseudonymous, vaulted traits.
	want := 3 * int(nVariants)
	msgs := waitStream(t, in, want)
	vaulted := 0
	for _, m := range msgs {
		if m.Event.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS {
			t.Errorf("imported event %s is %s", m.Event.GetId(), m.Event.GetMode())
		}
		if len(m.Event.GetVaultedTraits()) > 0 {
			vaulted++
		}
	}
	if vaulted < int(nVariants) {
		t.Errorf("%d identify events with vaulted traits, want %d", vaulted, nVariants)
	}
	_, b = in.Admin("/admin/v1/events?limit=1000")
	canarytest.FindExtra(t, "admin events", b, importCanaries...)
	_, b = in.Admin("/admin/v1/segments?site=demo")
	canarytest.FindExtra(t, "admin segments", b, importCanaries...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		input, _ := os.ReadFile(recFile)
		if bytes.Count(input, []byte("enrich ")) >= want || time.Now().After(deadline) {
			canarytest.FindExtra(t, "plugin input", input, importCanaries...)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitOutboxEmpty(t, in)
	canarytest.ScanStreams(t, in.Server.Bus().JetStream(), "", importCanaries...)
	versions := 0
	err := in.Server.Store().ScanAllVersions(func(k, v []byte) error {
		versions++
		canarytest.FindExtra(t, "badger key", k, importCanaries...)
		canarytest.FindExtra(t, "badger value of "+string(bytes.ToValidUTF8(k[:min(len(k), 24)], nil)), v, importCanaries...)
		return nil
	})
	if err != nil || versions < want {
		t.Fatalf("scanned %d versions: %v", versions, err)
	}
	canarytest.FindExtra(t, "server logs", []byte(in.Logs()), importCanaries...)
	in.Stop()
	if n := canarytest.ScanDir(t, in.Config.DataDir, importCanaries...); n == 0 {
		t.Fatal("no data files")
	}
}
