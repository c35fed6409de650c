package main

import (
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// TestMain lets the test binary stand in for the plugin binary: started by
// go-plugin (which sets the handshake's magic cookie variable), it runs
// main instead of the tests. No separate go build is needed.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIE_PLUGIN") != "" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestProcess launches the plugin as Vigie does: a child process, checksum
// verified, configured, then called over gRPC.
func TestProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	_, err = io.Copy(sum, f)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	host := sdktest.NewHost()
	pc := plugin.NewClient(sdk.NewClientConfig(sdk.ClientConfig{
		Cmd:          exec.Command(exe),
		Host:         host,
		SecureConfig: &plugin.SecureConfig{Checksum: sum.Sum(nil), Hash: sha256.New()},
		StartTimeout: 10 * time.Second,
	}))
	t.Cleanup(pc.Kill)
	c, err := sdk.Connect(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Manifest(); m.Name != "campaign-normalizer" || m.ProtocolVersion != sdk.ProtocolVersion {
		t.Errorf("manifest %+v", m)
	}
	if err := c.Configure(t.Context(), []byte(`{"infer_from_referrer":true,"sources":{"newsletter-fr":"newsletter"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(t.Context(), []byte(`{"sources":`)); err == nil {
		t.Error("invalid configuration accepted")
	}
	out, err := c.Enrich(t.Context(), []*sdk.Event{
		{Id: "1", Type: "page", Campaign: &vigiev1.Campaign{Source: "Newsletter-FR", Medium: "Mail"}},
		{Id: "2", Type: "page", Page: &vigiev1.Page{ReferrerHost: "www.bing.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := [][2]string{}
	for _, ev := range out {
		got = append(got, [2]string{ev.GetCampaign().GetSource(), ev.GetCampaign().GetMedium()})
	}
	want := [][2]string{{"newsletter", "email"}, {"bing", "organic"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("enriched %v, want %v (a refused configuration must keep the previous one)", got, want)
	}
	if kv := host.KV(); string(kv["count/newsletter"]) != "1" || string(kv["count/bing"]) != "1" {
		t.Errorf("counters %v", kv)
	}
}
