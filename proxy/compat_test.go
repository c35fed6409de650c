package proxy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// nodeClients returns a directory holding the real client libraries
// (VIGIE_NPM_DIR, installed there by .ci/run with npm ci from
// testdata/node/package-lock.json) and a fresh copy of send.mjs, or skips
// outside CI.
func nodeClients(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VIGIE_NPM_DIR")
	_, errNode := exec.LookPath("node")
	_, errMods := os.Stat(filepath.Join(dir, "node_modules", "@segment", "analytics-node"))
	if dir == "" || errNode != nil || errMods != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node or the client libraries are missing (.ci/run installs them in VIGIE_NPM_DIR=%q): %v %v", dir, errNode, errMods)
		}
		t.Skip("node clients not installed: see .ci/run (npm ci into VIGIE_NPM_DIR)")
	}
	src, err := os.ReadFile(filepath.Join("testdata", "node", "send.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	// ES modules resolve packages from the script's own directory.
	if err := os.WriteFile(filepath.Join(dir, "send.mjs"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runClient(t *testing.T, dir, client, url string) {
	t.Helper()
	cmd := exec.Command("node", "send.mjs", client, url, "demo")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s client: %v\n%s", client, err, out)
	}
}

// waitEvents waits until the admin API lists n events.
func waitEvents(t *testing.T, in *proxytest.Instance, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		evs := adminEvents(t, in, "site=demo")
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSegmentAnalyticsNodeClient(t *testing.T) {
	dir := nodeClients(t)
	in := proxytest.Start(t)
	runClient(t, dir, "segment", in.URL)
	evs := waitEvents(t, in, 6)
	types := map[string]int{}
	for _, e := range evs {
		types[e["type"].(string)]++
	}
	for _, typ := range []string{"identify", "track", "page", "screen", "group", "alias"} {
		if types[typ] != 1 {
			t.Errorf("%s events: %d, want 1 (all: %v)", typ, types[typ], types)
		}
	}
	for _, e := range evs {
		if e["type"] == "track" && (e["name"] != "Node Signed Up" || e["mode"] != "pseudonymous") {
			t.Errorf("track from analytics-node: %v", e)
		}
		if e["library"] == nil {
			t.Errorf("library not recorded: %v", e)
		}
		if e["type"] == "page" {
			if pg, _ := e["page"].(map[string]any); pg["path"] != "/" {
				t.Errorf("page path from analytics-node's properties: %v", e["page"])
			}
		}
	}
}

func TestRudderStackNodeClient(t *testing.T) {
	dir := nodeClients(t)
	in := proxytest.Start(t)
	runClient(t, dir, "rudder", in.URL)
	evs := waitEvents(t, in, 3)
	if len(evs) != 3 {
		t.Fatalf("stored %d events from rudder-sdk-node, want 3", len(evs))
	}
}
