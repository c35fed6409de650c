package proxy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// nodeClients returns the directory holding the real client libraries
// (installed by .ci/run with npm ci), or skips outside CI.
func nodeClients(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("testdata/node")
	if err != nil {
		t.Fatal(err)
	}
	_, errNode := exec.LookPath("node")
	_, errMods := os.Stat(filepath.Join(dir, "node_modules", "@segment", "analytics-node"))
	if errNode != nil || errMods != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node or the client libraries are missing (run: cd proxy/testdata/node && npm ci): %v %v", errNode, errMods)
		}
		t.Skip("node clients not installed: cd proxy/testdata/node && npm ci")
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
		if e["type"] == "track" && (e["name"] != "Node Signed Up" || e["mode"] != "MODE_PSEUDONYMOUS") {
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
