package imports_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestIdempotencyKey: the same key with the same request gives the same
// job (replayed, nothing imported twice); with another file, mapping or
// dry_run it is refused with 422; without a key every post is a new job.
func TestIdempotencyKey(t *testing.T) {
	in := proxytest.Start(t, noPlugins)
	file := csvOf("order_id,customer,at,total", "o-1,c-1,1767225600,10")
	key := http.Header{"Idempotency-Key": {"orders-2026-01-01"}}
	code, first := post(t, in, "", contractMapping, strings.NewReader(file), key)
	if code != 202 {
		t.Fatalf("first: %d %s", code, first)
	}
	id := jobID(t, first)
	wait(t, in, id)
	code, again := post(t, in, "", contractMapping, strings.NewReader(file), key)
	if code != 202 || jobID(t, again) != id {
		t.Fatalf("same key, same request: %d %s (first job %s)", code, again, id)
	}
	for name, c := range map[string]struct{ query, mapping, file string }{
		"another file":    {"", contractMapping, file + "o-2,c-2,1767225600,11\n"},
		"another mapping": {"", strings.Replace(contractMapping, `"personalization"`, `"marketing"`, 1), file},
		"a dry run":       {"?dry_run=true", contractMapping, file},
	} {
		code, body := post(t, in, c.query, c.mapping, strings.NewReader(c.file), key)
		if code != http.StatusUnprocessableEntity || errCode(t, body) != "idempotency_key_reused" {
			t.Errorf("%s with the same key: %d %s", name, code, body)
		}
	}
	code, other := post(t, in, "", contractMapping, strings.NewReader(file), nil)
	if code != 202 || jobID(t, other) == id {
		t.Fatalf("without a key: %d %s", code, other)
	}
	if j := wait(t, in, jobID(t, other)); j.Rows.Accepted != 0 || j.SkippedByReason["duplicate"] != 1 {
		t.Fatalf("the second job imported again: %+v", j)
	}
	if eventCount(t, in) != 1 {
		t.Fatalf("%d events for one row", eventCount(t, in))
	}
}

// errCode is the code of an error answer, which must name a problem.
func errCode(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Code, Error, Field string
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("error body: %s", body)
	}
	return e.Code
}

// TestBadImports: what cannot be imported is refused before any job, with
// a 4xx naming the problem in the client's terms (the mapping's field, the
// part, the parameter) and no Go error, path or value.
func TestBadImports(t *testing.T) {
	in := proxytest.Start(t, noPlugins)
	file := csvOf("order_id,customer,at,total", "o-1,c-1,1767225600,10")
	for _, c := range []struct {
		name, query, mapping, file string
		code                       int
		field                      string
	}{
		{"not JSON", "", `{"event":`, file, 400, "mapping"},
		{"unknown field", "", strings.Replace(contractMapping, `"natural_key"`, `"naturel_key"`, 1), file, 400, "naturel_key"},
		{"wrong type", "", strings.Replace(contractMapping, `"unix"}`, `"unix"},"purposes":"x"}`, 1), file, 400, "purposes"},
		{"bad field type", "", strings.Replace(contractMapping, `"type":"number"`, `"type":"money"`, 1), file, 400, "properties.total.type"},
		{"no identity", "", `{"event":"X","lawful_basis":{"basis":"contract"},"purposes":["marketing"]}`, file, 400, "identity"},
		{"bad kind", "", strings.Replace(contractMapping, `"user_id"`, `"phone"`, 1), file, 400, "identity.kind"},
		{"no event", "", strings.Replace(contractMapping, `"event":"Order Completed",`, ``, 1), file, 400, "event"},
		{"no basis", "", strings.Replace(contractMapping, `"lawful_basis":{"basis":"contract"},`, ``, 1), file, 400, "lawful_basis"},
		{"consent without date", "", strings.Replace(contractMapping, `{"basis":"contract"}`, `{"column":"total"}`, 1), file, 400, "lawful_basis.date_column"},
		{"unknown purpose", "", strings.Replace(contractMapping, `"personalization"`, `"telepathy"`, 1), file, 400, "purposes[0]"},
		{"retention too long", "", strings.Replace(contractMapping, `"purposes"`, `"retention":"99999d","purposes"`, 1), file, 400, "retention"},
		{"column not in the header", "", strings.Replace(contractMapping, `"column":"total"`, `"column":"amount"`, 1), file, 400, "properties.total.column"},
		{"no header", "", contractMapping, "\n", 400, "file"},
		{"unknown site", "?site=nope", contractMapping, file, 400, "site"},
		{"bad dry_run", "?dry_run=maybe", contractMapping, file, 400, "dry_run"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := post(t, in, c.query, c.mapping, strings.NewReader(c.file), nil)
			var e struct{ Code, Error, Field string }
			if err := json.Unmarshal(body, &e); err != nil || code != c.code || e.Field != c.field || e.Error == "" {
				t.Fatalf("%d %s, want %d naming %q", code, body, c.code, c.field)
			}
			for _, leak := range []string{"json:", "/tmp", in.Config.DataDir, "o-1", "c-1"} {
				if strings.Contains(string(body), leak) {
					t.Fatalf("the answer holds %q: %s", leak, body)
				}
			}
		})
	}
	// Not multipart, no file part, an unknown part, no token.
	code, body := in.Do("POST", "/admin/v1/imports", []byte(file), http.Header{"Authorization": {"Bearer " + in.AdminToken()}, "Content-Type": {"text/csv"}})
	if code != http.StatusUnsupportedMediaType || errCode(t, body) != "unsupported_media_type" {
		t.Errorf("text/csv body: %d %s", code, body)
	}
	for name, parts := range map[string]string{"no file": "mapping", "unknown part": "extra"} {
		var b bytes.Buffer
		b.WriteString("--B\r\nContent-Disposition: form-data; name=\"" + parts + "\"\r\n\r\n" + contractMapping + "\r\n--B--\r\n")
		code, body := in.Do("POST", "/admin/v1/imports", b.Bytes(), http.Header{"Authorization": {"Bearer " + in.AdminToken()},
			"Content-Type": {"multipart/form-data; boundary=B"}})
		if code != 400 {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	if code, _ := in.Do("POST", "/admin/v1/imports", nil, nil); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _ := in.Admin("/admin/v1/imports/nope"); code != 404 {
		t.Errorf("unknown job: %d", code)
	}
	code, body = in.Admin("/admin/v1/imports")
	if code != 200 || !strings.Contains(string(body), `"imports":[]`) {
		t.Errorf("no job was made: %d %s", code, body)
	}
}

// TestCancel: DELETE cancels a running job (it stops, its file goes) and
// refuses an ended one.
func TestCancel(t *testing.T) {
	in := proxytest.Start(t, noPlugins)
	code, body := post(t, in, "", contractMapping, ordersReader(200_000), nil)
	if code != 202 {
		t.Fatalf("post: %d %s", code, body)
	}
	id := jobID(t, body)
	until(t, "running", func() bool { return getJob(t, in, id).Status == imports.StatusRunning })
	code, body = in.Do("DELETE", "/admin/v1/imports/"+id, nil, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 202 {
		t.Fatalf("cancel: %d %s", code, body)
	}
	j := wait(t, in, id)
	if j.Status != imports.StatusCanceled || j.Rows.Read >= 200_000 {
		t.Fatalf("canceled job: %s %+v", j.Status, j.Rows)
	}
	for path := range in.DataFiles() {
		if strings.Contains(path, id) {
			t.Fatalf("the canceled job's file is still there: %s", path)
		}
	}
	code, body = in.Do("DELETE", "/admin/v1/imports/"+id, nil, http.Header{"Authorization": {"Bearer " + in.AdminToken()}})
	if code != 409 || errCode(t, body) != "already_ended" {
		t.Fatalf("cancel an ended job: %d %s", code, body)
	}
}
