package plugins_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestEnrichStageFetchesMoreThanItCalls: the enrich stage fetches several
// batches' worth at once (its consumer allows 4 fetches of 5 × batch_size
// unacknowledged), but an enricher is never given more than batch_size
// events in one call, and each event exactly once.
func TestEnrichStageFetchesMoreThanItCalls(t *testing.T) {
	const batch, total = 3, 40
	rec := filepath.Join(t.TempDir(), "recorder.txt")
	in := proxytest.Start(t, func(c *config.Config) {
		withPlugins(config.Plugin{Name: "recorder", Config: map[string]any{"file": rec, "enrich_delay": "300ms"}})(c)
		c.PluginRuntime.BatchSize = batch
	})
	waitFor(t, "the recorder running", 20*time.Second, func() bool { return status(t, in, "recorder").State == plugins.StateRunning })
	cons, err := in.Server.Bus().JetStream().Consumer(context.Background(), streams.Events, "enrich")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cons.CachedInfo().Config.MaxAckPending, 4*5*batch; got != want {
		t.Fatalf("enrich consumer MaxAckPending %d, want %d", got, want)
	}
	// While the first call waits, the others queue: later fetches take
	// up to 5 × batch.
	sendSteps(t, in, 0, total)
	waitFor(t, "every event enriched", 30*time.Second, func() bool {
		return len(streamMsgs(t, in, streams.Enriched, streams.EnrichedPrefix)) >= total
	})
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	given, calls := 0, 0
	for _, line := range strings.Split(string(b), "\n") {
		n, ok := strings.CutPrefix(line, "enrich-call ")
		if !ok {
			continue
		}
		k, err := strconv.Atoi(n)
		if err != nil {
			t.Fatal(err)
		}
		if k > batch {
			t.Fatalf("an Enrich call was given %d events, more than batch_size %d", k, batch)
		}
		given, calls = given+k, calls+1
	}
	if given != total {
		t.Fatalf("the enricher was given %d events in %d calls, want %d (each once)", given, calls, total)
	}
}
