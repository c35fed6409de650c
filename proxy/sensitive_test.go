package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/storage"
)

// TestSensitiveActionsEndToEnd runs each action through the real server,
// with a recording plugin (enricher, segmenter, syncer) and a CRM-like
// syncer: drop_event stores nothing; drop_field stores the event without
// the field; anonymous stores it anonymous; require_consent keeps it
// pseudonymous only with the "sensitive" purpose granted; and no event
// with a detection is profiled or reaches a syncer, whatever its consent.
func TestSensitiveActionsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	recFile, crmFile := filepath.Join(dir, "recorder.txt"), filepath.Join(dir, "crm.txt")
	in := proxytest.Start(t, func(c *config.Config) {
		c.Sites[0].Sensitive = config.SiteSensitive{
			Actions: map[string]string{
				"health": "drop_field", "religion": "drop_event", "sex_life": "require_consent",
			},
			SensitivePaths: map[string]string{"/clinic/*": "health"},
		}
		c.Plugins = []config.Plugin{
			{Name: "recorder", Config: map[string]any{"file": recFile}},
			{Name: "crm", Config: map[string]any{"file": crmFile}},
		}
	})
	const all = `"consent":{"analytics":true,"personalization":true,"marketing":true}`
	const allSensitive = `"consent":{"analytics":true,"personalization":true,"marketing":true,"sensitive":true}`
	send := func(path, body string) {
		t.Helper()
		if code, b := in.Post(path, "demo", body); code != 200 {
			t.Fatalf("%s: %d %s", path, code, b)
		}
	}
	// drop_event: a visit to a religion page.
	send("/v1/page", `{"type":"page","name":"Our mosque","userId":"u-religion","context":{`+all+`,"page":{"path":"/mosque/prayer-times"}}}`)
	// drop_field: a health trait (names layer), a health value, a declared path.
	send("/v1/identify", `{"type":"identify","userId":"u-health","traits":{"medical_condition":"SENTINEL-COND","plan":"pro","note":"after my chemotherapy SENTINEL-NOTE"},"context":{`+all+`}}`)
	send("/v1/page", `{"type":"page","name":"Appointments","userId":"u-clinic","context":{`+all+`,"page":{"path":"/clinic/SENTINEL-PATH","url":"https://shop.example/clinic/SENTINEL-PATH"}}}`)
	// anonymous (the default): a trade union trait.
	send("/v1/identify", `{"type":"identify","userId":"u-union","traits":{"union_member":true,"plan":"SENTINEL-UNION"},"context":{`+all+`}}`)
	// require_consent: without, then with the purpose "sensitive".
	send("/v1/identify", `{"type":"identify","userId":"u-lgbt-1","traits":{"sexual_orientation":"SENTINEL-SO1","plan":"pro"},"context":{`+all+`}}`)
	send("/v1/identify", `{"type":"identify","userId":"u-lgbt-2","traits":{"sexual_orientation":"x","plan":"SENTINEL-SO2"},"context":{`+allSensitive+`}}`)
	// The control, last: profiled and synced.
	send("/v1/identify", `{"type":"identify","userId":"u-control","traits":{"plan":"SENTINEL-CONTROL"},"context":{`+all+`}}`)

	evs := adminEvents(t, in, "")
	byKind := map[string]map[string]any{}
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		s := string(b)
		for _, k := range []string{"SENTINEL-COND", "SENTINEL-PATH", "SENTINEL-UNION", "SENTINEL-SO1", "SENTINEL-SO2", "SENTINEL-CONTROL", "mosque", "Appointments"} {
			if strings.Contains(s, k) {
				byKind[k] = ev
			}
		}
		if strings.Contains(s, `"medical_condition"`) || strings.Contains(s, "SENTINEL-NOTE") {
			byKind["health"] = ev
		}
	}
	if len(evs) != 6 || byKind["mosque"] != nil {
		t.Fatalf("%d events stored, want 6 (the religion page dropped): %v", len(evs), evs)
	}
	if byKind["SENTINEL-COND"] != nil || byKind["health"] != nil || byKind["SENTINEL-PATH"] != nil {
		t.Errorf("drop_field kept the field: %v / %v", byKind["health"], byKind["SENTINEL-PATH"])
	}
	clinic := byKind["Appointments"]
	if clinic == nil || clinic["mode"] != "pseudonymous" || clinic["page"] != nil || !slices.Equal(marks(clinic), []string{"health"}) {
		t.Errorf("the clinic page: %v", clinic)
	}
	union := byKind["SENTINEL-UNION"]
	if union != nil {
		t.Errorf("anonymous kept the traits: %v", union)
	}
	lgbt2 := byKind["SENTINEL-SO2"]
	if lgbt2 == nil || lgbt2["mode"] != "pseudonymous" || !slices.Equal(marks(lgbt2), []string{"sex_life"}) || !slices.Contains(purposesOf(lgbt2), "sensitive") {
		t.Fatalf("require_consent with the purpose: %v", lgbt2)
	}
	anonymous, marked := 0, 0
	for _, ev := range evs {
		if ev["mode"] == "anonymous" {
			anonymous++
		}
		if len(marks(ev)) > 0 {
			marked++
		}
	}
	if anonymous != 2 || marked != 5 {
		t.Errorf("%d anonymous (union, lgbt-1), %d marked, want 2 and 5", anonymous, marked)
	}

	// The control reaches the profile store and the syncers; nothing
	// marked does.
	control := byKind["SENTINEL-CONTROL"]
	if control == nil {
		t.Fatal("control not stored")
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := in.Server.Store().Profile(ctx, "demo", control["subject"].(string))
		crm, _ := os.ReadFile(crmFile)
		if err == nil && bytes.Contains(crm, []byte("SENTINEL-CONTROL")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control was not profiled and synced: %v\n%s", err, in.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, ev := range evs {
		subj, _ := ev["subject"].(string)
		if subj == "" || subj == control["subject"] {
			continue
		}
		if _, err := in.Server.Store().Profile(ctx, "demo", subj); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a sensitive event's subject was profiled (%v): %v", err, ev)
		}
	}
	rec, _ := os.ReadFile(recFile)
	crm, _ := os.ReadFile(crmFile)
	entries := recordEntries(string(rec) + string(crm))
	if len(entries["segment"]) == 0 || len(entries["sync"]) == 0 {
		t.Fatalf("no segment or sync input recorded: %v", entries)
	}
	for _, kind := range []string{"segment", "sync"} {
		for _, e := range entries[kind] {
			for _, k := range []string{"SENTINEL-SO1", "SENTINEL-SO2", "SENTINEL-UNION", "sensitive:"} {
				if strings.Contains(e, k) {
					t.Errorf("a %s plugin got a sensitive event (%s):\n%s", kind, k, e)
				}
			}
		}
	}
	// Enrichers do get them, with the mark (an enricher cannot clear it).
	if !slices.ContainsFunc(entries["enrich"], func(e string) bool { return strings.Contains(e, "SENTINEL-SO2") && markRe.MatchString(e) }) {
		t.Errorf("the enricher did not get the marked event: %v", entries["enrich"])
	}
	if bytes.Contains(crm, []byte("SENTINEL-SO2")) {
		t.Error("the CRM got the require_consent event")
	}
	for f, b := range in.DataFiles() {
		for _, k := range []string{"SENTINEL-COND", "SENTINEL-NOTE", "SENTINEL-PATH"} {
			if bytes.Contains(b, []byte(k)) {
				t.Errorf("%s (drop_field) is in %s", k, f)
			}
		}
	}

	// The DPO's report: counts per category and layer, redacted examples.
	code, body := in.Admin("/admin/v1/sensitive?site=demo")
	if code != 200 {
		t.Fatalf("report: %d %s", code, body)
	}
	var rep struct {
		Total      int
		Categories []struct {
			Category, Action string
			Total            int
			Layers           map[string]int
		}
		Detections []struct {
			Category, Layer string
			Count           int
			Examples        []struct{ Field, Pattern, Example string }
		}
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	cells := map[string]int{}
	for _, d := range rep.Detections {
		cells[d.Category+"/"+d.Layer] = d.Count
		for _, e := range d.Examples {
			if strings.Contains(e.Field+e.Example, "SENTINEL") {
				t.Errorf("example shows a value: %+v", e)
			}
		}
	}
	for k, n := range map[string]int{
		"religion/page": 1, "health/names": 1, "health/values": 1, "health/sensitive_paths": 1,
		"trade_union/names": 1, "sex_life/names": 2,
	} {
		if cells[k] != n {
			t.Errorf("%s: %d detections, want %d (%s)", k, cells[k], n, body)
		}
	}
	if len(rep.Categories) != 10 || rep.Categories[0].Category != "health" || rep.Categories[0].Action != "drop_field" || rep.Categories[0].Layers["names"] != 1 {
		t.Errorf("categories: %+v", rep.Categories)
	}
	if !strings.Contains(string(body), `"example":"/clinic/*"`) || !strings.Contains(string(body), `"field":"traits.medical_condition"`) {
		t.Errorf("examples: %s", body)
	}
	// Counts survive a restart (they are flushed at shutdown).
	in.Restart()
	if code, body2 := in.Admin("/admin/v1/sensitive"); code != 200 || !bytes.Contains(body2, []byte(`"total":`)) {
		t.Fatalf("after restart: %d %s", code, body2)
	} else {
		var rep2 struct{ Total int }
		_ = json.Unmarshal(body2, &rep2)
		if rep2.Total != rep.Total {
			t.Errorf("total %d after restart, %d before", rep2.Total, rep.Total)
		}
	}
}

// TestSensitiveReportBadRequests: bad parameters get a 400 naming them.
func TestSensitiveReportBadRequests(t *testing.T) {
	in := proxytest.Start(t)
	for _, q := range []string{"?site=nope", "?from=yesterday", "?to=2026-13-01", "?from=2026-03-02&to=2026-03-01"} {
		code, body := in.Admin("/admin/v1/sensitive" + q)
		e := decodeErr(t, body)
		if code != 400 || e["error"] == "" {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	if code, _ := in.Admin("/admin/v1/sensitive?from=2026-03-01&to=2026-03-02T00:00:00Z"); code != 200 {
		t.Errorf("valid period: %d", code)
	}
}

// markRe finds the sex_life mark in prototext (whose spacing varies).
var markRe = regexp.MustCompile(`sensitive:\s+"sex_life"`)

func marks(ev map[string]any) []string {
	var out []string
	list, _ := ev["sensitive"].([]any)
	for _, v := range list {
		out = append(out, v.(string))
	}
	return out
}

// recordEntries splits the recorder's file into its entries by kind
// (enrich, segment, sync).
func recordEntries(s string) map[string][]string {
	out := map[string][]string{}
	kind, cur := "", ""
	for _, line := range strings.SplitAfter(s, "\n") {
		if k, _, ok := strings.Cut(line, " "); ok && (k == "enrich" || k == "segment" || k == "sync") {
			if kind != "" {
				out[kind] = append(out[kind], cur)
			}
			kind, cur = k, ""
		}
		cur += line
	}
	if kind != "" {
		out[kind] = append(out[kind], cur)
	}
	return out
}
