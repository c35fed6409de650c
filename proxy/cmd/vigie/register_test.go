package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// `vigie email rewrite --headers` writes the List-Unsubscribe headers: the
// recipient's own preference link, or the ESP's placeholder.
func TestEmailRewriteHeaders(t *testing.T) {
	in := proxytest.Start(t)
	t.Chdir(t.TempDir())
	t.Setenv("VIGIE_MASTER_KEY", in.MasterKey())
	in.Stop() // the keyring is read from the data directory
	html := `<html><body><a href="https://shop.example/a">A</a></body></html>`
	rewrite := func(args ...string) (string, error) {
		t.Helper()
		hdrs := filepath.Join(t.TempDir(), "headers.txt")
		var out, errOut bytes.Buffer
		stdin = strings.NewReader(html)
		defer func() { stdin = os.Stdin }()
		err := run(context.Background(), append([]string{"email", "rewrite", "--data-dir", in.Config.DataDir, "--campaign", "c",
			"--base", "https://track.example/t/", "--headers", hdrs}, args...), &out, &errOut)
		b, _ := os.ReadFile(hdrs)
		return string(b), err
	}
	got, err := rewrite("--recipient", "user-42")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(got, "\r\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "List-Unsubscribe: <https://track.example/t/p/") ||
		lines[1] != "List-Unsubscribe-Post: List-Unsubscribe=One-Click" || strings.Contains(got, "user-42") {
		t.Fatalf("headers:\n%q", got)
	}
	tok := strings.TrimSuffix(strings.TrimPrefix(lines[0], "List-Unsubscribe: <https://track.example/t/p/"), ">")
	in.Restart()
	if code, _ := in.Do("GET", "/p/"+tok, nil, nil); code != 200 {
		t.Fatalf("preference page of the header's link: %d", code)
	}
	in.Stop()
	if got, err := rewrite("--merge-tag", "*|VIGIE|*", "--preference-merge-tag", "*|VIGIE_PREF|*"); err != nil ||
		!strings.HasPrefix(got, "List-Unsubscribe: <https://track.example/t/p/*|VIGIE_PREF|*>\r\n") {
		t.Fatalf("merge-tag headers: %q %v", got, err)
	}
	if _, err := rewrite("--merge-tag", "*|VIGIE|*"); err == nil || !strings.Contains(err.Error(), "--preference-merge-tag") {
		t.Fatalf("merge-tag headers without the preference tag: %v", err)
	}
}

// `vigie register` describes the configuration without starting Vigie;
// --server asks the running one.
func TestRegisterCommand(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg := filepath.Join(t.TempDir(), "vigie.yaml")
	if err := os.WriteFile(cfg, []byte("organization: {name: Shop SAS, contact: privacy@shop.example}\nretention: {marketing: 200d}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"register", "--config", cfg}, &out, &errOut); err != nil {
		t.Fatalf("register: %v %s", err, errOut.String())
	}
	md := out.String()
	for _, want := range []string{"Registre des activités de traitement", "Shop SAS", "`vigie-marketing`", "| 200 days | `retention.marketing` |", "segments (built-in plugin)"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if _, err := os.Stat("vigie-data"); err == nil {
		t.Error("vigie register made a data directory")
	}
	out.Reset()
	if err := run(context.Background(), []string{"register", "--config", cfg, "--format", "json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var reg struct {
		Organization struct {
			Controller struct{ Value struct{ Name string } }
		}
		Activities []json.RawMessage
	}
	if err := json.Unmarshal(out.Bytes(), &reg); err != nil || reg.Organization.Controller.Value.Name != "Shop SAS" || len(reg.Activities) != 5 {
		t.Fatalf("json: %v %+v", err, reg)
	}
	if err := run(context.Background(), []string{"register", "--format", "pdf"}, &out, &errOut); err == nil {
		t.Error("--format pdf accepted")
	}

	in := proxytest.Start(t)
	t.Setenv("VIGIE_ADMIN_TOKEN", in.AdminToken())
	out.Reset()
	if err := run(context.Background(), []string{"register", "--server", in.URL}, &out, &errOut); err != nil || !strings.Contains(out.String(), "# Register of processing activities") {
		t.Fatalf("--server: %v %s", err, out.String())
	}
	t.Setenv("VIGIE_ADMIN_TOKEN", "wrong")
	if err := run(context.Background(), []string{"register", "--server", in.URL}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("--server with a wrong token: %v", err)
	}
}
