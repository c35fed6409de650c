package sdk_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// testPluginBin is the path of sdk/internal/testplugin, built by TestMain.
var testPluginBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain builds the test plugin, runs the tests and cleans up.
func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "vigie-sdk-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	testPluginBin = filepath.Join(dir, "testplugin")
	out, err := exec.Command("go", "build", "-o", testPluginBin, "./internal/testplugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build test plugin: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// startProcess launches the test plugin as a real process.
func startProcess(t *testing.T, host sdk.Host, args ...string) *plugin.Client {
	t.Helper()
	pc := plugin.NewClient(sdk.NewClientConfig(sdk.ClientConfig{
		Cmd:          exec.Command(testPluginBin, args...),
		Host:         host,
		StartTimeout: 10 * time.Second,
	}))
	t.Cleanup(pc.Kill)
	return pc
}

func TestRealProcess(t *testing.T) {
	host := sdktest.NewHost()
	pc := startProcess(t, host)
	c, err := sdk.Connect(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}

	m := c.Manifest()
	if m.Name != "testplugin" || m.Version != "0.1.0" || m.ProtocolVersion != sdk.ProtocolVersion {
		t.Errorf("manifest = %+v", m)
	}
	if len(m.Kinds) != 1 || m.Kinds[0] != sdk.KindEnricher {
		t.Errorf("kinds = %v, want [enricher]", m.Kinds)
	}
	if !m.Has(sdk.CapKV) || m.Has(sdk.CapEmit) {
		t.Errorf("capabilities = %v, want [kv]", m.Capabilities)
	}
	if len(m.Filter.Types) != 2 || m.Purposes[0] != "analytics" {
		t.Errorf("filter/purposes = %+v %v", m.Filter, m.Purposes)
	}

	// Two batches: the KV counter kept by the host carries over.
	for i, batch := range [][]string{{"a", "b"}, {"c"}} {
		in := make([]*sdk.Event, len(batch))
		for j, id := range batch {
			in[j] = &sdk.Event{Id: id, Type: "track", Name: "click"}
		}
		out, err := c.Enrich(t.Context(), in)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if len(out) != len(batch) {
			t.Fatalf("batch %d: %d events out, want %d", i, len(out), len(batch))
		}
		for j, ev := range out {
			if ev.GetId() != batch[j] || ev.GetName() != "click" {
				t.Errorf("batch %d: event %d = %v, fields lost", i, j, ev)
			}
		}
	}
	if got := string(host.KV()["seen"]); got != "3" {
		t.Errorf("kv seen = %q, want 3 (host callback through the broker)", got)
	}
	if logs := host.Logs(); len(logs) != 2 || logs[0].Message != "enriched" || logs[0].Attrs["events"] != "2" {
		t.Errorf("logs = %+v", logs)
	}

	// Undeclared capability: refused at the call, sentinel kept end to end.
	_, err = c.Enrich(t.Context(), []*sdk.Event{{Id: "x", Type: "track", Name: "emit"}})
	if !errors.Is(err, sdk.ErrCapability) {
		t.Errorf("emit without capability: err = %v, want ErrCapability", err)
	}
	if n := len(host.Emitted()); n != 0 {
		t.Errorf("host received %d emits from a plugin without the capability", n)
	}

	// A hook the plugin does not serve.
	if _, err := c.Segment(t.Context(), &sdk.Event{Id: "s"}, &sdk.Profile{}); !errors.Is(err, sdk.ErrNotImplemented) {
		t.Errorf("segment on an enricher: err = %v, want ErrNotImplemented", err)
	}

	// Kill leaves no process behind.
	pid := pc.ReattachConfig().Pid
	pc.Kill()
	if !pc.Exited() {
		t.Error("client does not report the plugin exited")
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still alive after Kill", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProtocolVersionMismatch(t *testing.T) {
	pc := startProcess(t, nil, "-bad-handshake")
	_, err := sdk.Connect(t.Context(), pc)
	if !errors.Is(err, sdk.ErrProtocolVersion) {
		t.Fatalf("err = %v, want ErrProtocolVersion", err)
	}
}

// BenchmarkEnrichProcess measures a batch of 100 events through a real
// plugin process (mTLS gRPC over a Unix socket, one KV get/put and one log
// callback per batch).
func BenchmarkEnrichProcess(b *testing.B) {
	pc := plugin.NewClient(sdk.NewClientConfig(sdk.ClientConfig{
		Cmd: exec.Command(testPluginBin), Host: sdktest.NewHost(),
	}))
	defer pc.Kill()
	c, err := sdk.Connect(b.Context(), pc)
	if err != nil {
		b.Fatal(err)
	}
	in := make([]*sdk.Event, 100)
	for i := range in {
		in[i] = &sdk.Event{Id: fmt.Sprint("01J", i), Site: "site", Type: "page", Name: "Home",
			Properties: []byte(`{"plan":"pro","value":42}`)}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Enrich(b.Context(), in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(in)*b.N)/b.Elapsed().Seconds(), "events/s")
}
