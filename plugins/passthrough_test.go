package plugins_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
)

// TestPassThroughEnricherIsNotCalled: an enricher that answers Configure
// that its Enrich changes nothing (sdk.PassThrougher, as GeoIP without a
// database) is not called, the admin API says so, and every event still
// reaches the enriched subjects, as the very bytes it was published with.
// The same plugin without the answer is called for every event.
func TestPassThroughEnricherIsNotCalled(t *testing.T) {
	for _, pass := range []bool{true, false} {
		name := map[bool]string{true: "pass_through", false: "enriching"}[pass]
		t.Run(name, func(t *testing.T) {
			rec := filepath.Join(t.TempDir(), "recorder.txt")
			in := proxytest.Start(t, withPlugins(config.Plugin{Name: "recorder", Config: map[string]any{"file": rec, "pass_through": pass}}))
			waitFor(t, "the recorder running", 20*time.Second, func() bool { return status(t, in, "recorder").State == plugins.StateRunning })
			if got := status(t, in, "recorder").EnrichPassThrough; got != pass {
				t.Fatalf("admin API enrich_pass_through = %v, want %v", got, pass)
			}
			const total = 7
			sendSteps(t, in, 0, total)
			var enriched []*nats.Msg
			waitFor(t, "every event enriched", 20*time.Second, func() bool {
				enriched = enriched[:0]
				for _, m := range streamMsgs(t, in, streams.Enriched, streams.EnrichedPrefix) {
					enriched = append(enriched, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
				}
				return len(enriched) >= total
			})
			if len(enriched) != total {
				t.Fatalf("%d enriched messages, want %d", len(enriched), total)
			}
			b, _ := os.ReadFile(rec)
			calls := strings.Count("\n"+string(b), "\nenrich ")
			if pass && calls != 0 {
				t.Fatalf("the pass-through enricher was given %d events, want none", calls)
			}
			if !pass && calls != total {
				t.Fatalf("the enricher was given %d events, want %d", calls, total)
			}
			if !pass {
				return
			}
			published := map[string][]byte{}
			for _, m := range streamMsgs(t, in, streams.Events, streams.EventsPrefix) {
				published[m.Header.Get(nats.MsgIdHdr)] = m.Data
			}
			for _, m := range enriched {
				id := m.Header.Get(nats.MsgIdHdr)
				if orig, ok := published[id]; !ok || !bytes.Equal(orig, m.Data) {
					t.Fatalf("enriched message %s is not the event as published (found %v)", id, ok)
				}
			}
		})
	}
}
