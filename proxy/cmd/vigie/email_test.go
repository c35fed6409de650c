package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// runTokens runs "vigie email tokens" with input on stdin.
func runTokens(t *testing.T, input string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	stdin = strings.NewReader(input)
	defer func() { stdin = os.Stdin }()
	err := run(context.Background(), append([]string{"email", "tokens"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

func readCSV(t *testing.T, s string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v\n%s", err, s)
	}
	return recs
}

// The values `vigie email tokens` writes, offline from the data directory
// or asked from the running server, attribute a merge-tag open to exactly
// that recipient.
func TestEmailTokensCommand(t *testing.T) {
	in := proxytest.Start(t)
	admin := http.Header{"Authorization": {"Bearer " + in.AdminToken()}}
	if code, b := in.Post("/v1/identify", "demo", `{"userId":"user-42","context":{"consent":{"marketing":true}}}`); code != 200 {
		t.Fatalf("identify: %d %s", code, b)
	}
	events := func() []map[string]any {
		code, b := in.Admin("/admin/v1/events?site=demo&limit=1000")
		var res struct{ Events []map[string]any }
		if err := json.Unmarshal(b, &res); code != 200 || err != nil {
			t.Fatalf("events: %d %s", code, b)
		}
		return res.Events
	}
	var alice string
	for _, ev := range events() {
		if ev["type"] == "identify" {
			alice, _ = ev["user_id"].(string)
		}
	}
	body, _ := json.Marshal(map[string]any{"site": "demo", "campaign": "cli", "merge_tag": "*|VIGIE|*", "honeypot": false,
		"html": `<html><body><a href="https://shop.example/">x</a></body></html>`})
	code, b := in.Do("POST", "/admin/v1/email/rewrite", body, admin)
	var rw struct{ HTML string }
	if err := json.Unmarshal(b, &rw); code != 200 || err != nil {
		t.Fatalf("rewrite: %d %s", code, b)
	}
	pixel := regexp.MustCompile(`src="(http://[^"]+/e/o/[^"]+)"`).FindStringSubmatch(rw.HTML)[1]

	t.Chdir(t.TempDir())
	t.Setenv("VIGIE_MASTER_KEY", in.MasterKey())
	offline, stderr, err := runTokens(t, "\ufeffEmail,user_id\nada@example.org,user-42\n", "--data-dir", in.Config.DataDir, "--site", "demo")
	if err != nil || stderr != "" {
		t.Fatalf("offline: %v %s", err, stderr)
	}
	rows := readCSV(t, offline)
	if len(rows) != 2 || strings.Join(rows[0], ",") != "Email,user_id,vigie_token,vigie_preference" || rows[1][0] != "ada@example.org" || rows[1][1] != "user-42" {
		t.Fatalf("offline output:\n%s", offline)
	}
	t.Setenv("VIGIE_ADMIN_TOKEN", in.AdminToken())
	remote, stderr, err := runTokens(t, "user-42\n", "--server", in.URL+"/", "--expires-in", "30d")
	if err != nil {
		t.Fatalf("--server: %v %s", err, stderr)
	}
	rrows := readCSV(t, remote)
	if len(rrows) != 2 || strings.Join(rrows[0], ",") != "user_id,vigie_token,vigie_preference" || rrows[1][0] != "user-42" || rrows[1][1] == rows[1][2] {
		t.Fatalf("--server output:\n%s", remote)
	}
	for _, v := range []string{rows[1][2], rrows[1][1]} {
		if strings.Contains(v, "user-42") || strings.Contains(v, alice) {
			t.Fatalf("value %s holds the id in clear", v)
		}
		if code, _ := in.Do("GET", strings.TrimPrefix(strings.Replace(pixel, "*|VIGIE|*", url.QueryEscape(v), 1), in.URL), nil, http.Header{"User-Agent": {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Microsoft Outlook 16.0"}}); code != 200 {
			t.Fatalf("open: %d", code)
		}
	}
	// The preference column opens the recipient's preference page.
	for _, v := range []string{rows[1][3], rrows[1][2]} {
		if code, b := in.Do("GET", "/p/"+v, nil, nil); code != 200 || !strings.Contains(string(b), "Your choices") {
			t.Fatalf("preference page of %s: %d %s", v, code, b)
		}
	}
	opens := 0
	for _, ev := range events() {
		if ev["name"] == "Email Opened" {
			if ev["user_id"] != alice {
				t.Fatalf("open not attributed to the recipient %s: %v", alice, ev)
			}
			opens++
		}
	}
	if opens != 2 {
		t.Fatalf("%d opens, want 2", opens)
	}

	for _, tt := range []struct {
		name, input string
		args        []string
		want        string
	}{
		{"not UTF-8", "user-42\nab\xff\n", []string{"--data-dir", in.Config.DataDir}, "line 2: not valid UTF-8"},
		{"empty id", "user_id,email\n,a@example.org\n", []string{"--data-dir", in.Config.DataDir}, "line 2: empty user id"},
		{"no id column", "email,name\na@example.org,Ada\n", []string{"--data-dir", in.Config.DataDir}, `no "user_id" column`},
		{"unknown site", "u\n", []string{"--data-dir", in.Config.DataDir, "--site", "nope"}, "unknown site"},
		{"bad expiry", "u\n", []string{"--data-dir", in.Config.DataDir, "--expires-in", "later"}, "--expires-in"},
		{"server refuses the site", "u\n", []string{"--server", in.URL, "--site", "nope"}, "the server answered 400: site: unknown"},
		{"stray argument", "u\n", []string{"--data-dir", in.Config.DataDir, "extra"}, "usage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runTokens(t, tt.input, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
			if out != "" {
				t.Fatalf("refused input still wrote %q", out)
			}
		})
	}
	t.Setenv("VIGIE_ADMIN_TOKEN", "")
	if _, _, err := runTokens(t, "u\n", "--server", in.URL); err == nil || !strings.Contains(err.Error(), "VIGIE_ADMIN_TOKEN") {
		t.Fatalf("no admin token: %v", err)
	}
	t.Setenv("VIGIE_ADMIN_TOKEN", "vigie_wrong")
	if _, _, err := runTokens(t, "u\n", "--server", in.URL); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong admin token: %v", err)
	}
}

// Signing from a data directory without a keyring warns: no server would
// accept what it signs.
func TestEmailTokensWarnsOnNewKeyring(t *testing.T) {
	t.Chdir(t.TempDir()) // the trial master key goes there, not into the source tree
	out, stderr, err := runTokens(t, "u\n", "--data-dir", t.TempDir()+"/fresh")
	if err != nil || !strings.Contains(stderr, "created one") || len(readCSV(t, out)) != 2 {
		t.Fatalf("err %v, stderr %q, out %q", err, stderr, out)
	}
}
