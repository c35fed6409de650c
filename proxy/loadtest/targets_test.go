package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// --target drives nodes already running: every connection goes to one of
// them in turn, each node stores exactly the events it answered, and the
// run ends with their outboxes empty.
func TestRunTargetsSpreadsOverNodes(t *testing.T) {
	noPlugins := func(c *config.Config) { c.Plugins = []config.Plugin{} }
	nodes := []*proxytest.Instance{proxytest.Start(t, noPlugins), proxytest.Start(t, noPlugins)}
	var out bytes.Buffer
	o, err := parseFlags([]string{"--target", nodes[0].URL + "," + nodes[1].URL + "/", "--duration", "300ms", "--connections", "4", "--json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if err := runTargets(context.Background(), o, &out); err != nil {
		t.Fatalf("runTargets: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r targetReport
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
	}
	if r.Events == 0 || r.EPS <= 0 || len(r.PerTargetEPS) != 2 || r.Failed != 0 {
		t.Fatalf("report %+v", r)
	}
	for i, n := range nodes {
		st, err := n.Server.Store().Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var stored int64
		for _, c := range st.Events {
			stored += c
		}
		if stored == 0 || r.PerTargetEPS[i] <= 0 {
			t.Errorf("node %d stored %d events, rate %v: the load did not reach it", i, stored, r.PerTargetEPS[i])
		}
		if st.OutboxDepth != 0 {
			t.Errorf("node %d: outbox %d after the run, want 0", i, st.OutboxDepth)
		}
	}
}

func TestParseTargets(t *testing.T) {
	tests := []struct {
		args []string
		want []string
		key  string
	}{
		{[]string{"--target", "http://a:1, https://b:2/"}, []string{"http://a:1", "https://b:2"}, "demo"},
		{[]string{"--target", "http://a:1", "--write-key", "k1"}, []string{"http://a:1"}, "k1"},
		{[]string{"--target", "a:1"}, nil, ""},
		{[]string{"--target", "http://a:1", "--external"}, nil, ""},
		{[]string{"--target", "http://a:1", "--cpuprofile", "x"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parseFlags(tt.args, &bytes.Buffer{})
			if tt.want == nil {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want ErrUsage", err)
				}
				return
			}
			if err != nil || strings.Join(o.targets, " ") != strings.Join(tt.want, " ") || o.writeKey != tt.key {
				t.Fatalf("parseFlags = %q %q, %v", o.targets, o.writeKey, err)
			}
		})
	}
}
