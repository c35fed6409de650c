package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestImportCommand: `vigie import FILE --map map.yaml` posts the file to
// the running server, follows the job to its end and prints its counts
// and first errors; importing it again adds nothing; a mapping that is
// wrong is refused before anything is sent, naming its field; the admin
// token is required.
func TestImportCommand(t *testing.T) {
	in := proxytest.Start(t, func(c *config.Config) { c.Plugins = []config.Plugin{} })
	dir := t.TempDir()
	day := time.Now().UTC().AddDate(0, 0, -2).Format("2006-01-02")
	file := filepath.Join(dir, "orders.csv")
	must(t, os.WriteFile(file, []byte("order_id,email,ordered_at,amount,consent,consent_date\n"+
		"A-1,ann@example.org,"+day+",49.90,yes,"+day+"\n"+
		"A-2,ann@example.org,"+day+",lots,yes,"+day+"\n"+
		"B-1,bob@example.org,"+day+",9,,\n"), 0o600))
	mapFile := filepath.Join(dir, "map.yaml")
	must(t, os.WriteFile(mapFile, []byte(`event: Order Completed
identity: {column: email, kind: email}
natural_key: [order_id]
timestamp: {column: ordered_at}
properties:
  order_id: order_id
  total: {column: amount, type: number}
lawful_basis: {column: consent, date_column: consent_date}
purposes: [marketing]
`), 0o600))
	pollInterval = 20 * time.Millisecond
	t.Setenv("VIGIE_ADMIN_TOKEN", in.AdminToken())
	var out, errOut syncBuf
	if err := run(context.Background(), []string{"import", file, "--map", mapFile, "--server", in.URL}, &out, &errOut); err != nil {
		t.Fatalf("vigie import: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"done: 3 rows read, 1 accepted, 1 skipped, 1 failed", "skipped no_lawful_basis", "failed invalid_number",
		"row 2: invalid_number (properties.total, column amount): not a number"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, leak := range []string{"ann@", "bob@", "lots"} {
		if strings.Contains(out.String()+errOut.String(), leak) {
			t.Fatalf("the output holds %q:\n%s", leak, out.String())
		}
	}
	out = syncBuf{}
	if err := run(context.Background(), []string{"import", "--map", mapFile, "--server", in.URL, file}, &out, &errOut); err != nil ||
		!strings.Contains(out.String(), "0 accepted, 2 skipped") || !strings.Contains(out.String(), "skipped duplicate") {
		t.Fatalf("again: %v\n%s", err, out.String())
	}
	must(t, os.WriteFile(mapFile, []byte("event: X\nidentity: {column: email, kind: phone}\n"), 0o600))
	err := run(context.Background(), []string{"import", file, "--map", mapFile, "--server", in.URL}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "identity.kind") {
		t.Fatalf("bad mapping: %v", err)
	}
	t.Setenv("VIGIE_ADMIN_TOKEN", "")
	if err := run(context.Background(), []string{"import", file, "--map", mapFile}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "VIGIE_ADMIN_TOKEN") {
		t.Fatalf("no token: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
