package plugins_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// TestSegmenterIsNotGivenAnEventItDecidedOnAgain: an enriched event
// delivered again once the segmenter's outcome for it was applied (an
// acknowledgement lost, a partition moved after its owner wrote the
// profile back) is acknowledged without being given to the plugin again,
// whose own state would count it twice (the response model's counts, on
// another node). The same message published a second time stands for the
// redelivery; the recorder plugin writes down every event it is given.
// Before, the plugin was given it again.
func TestSegmenterIsNotGivenAnEventItDecidedOnAgain(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "recorder.txt")
	in := proxytest.Start(t, withRecorder(rec))
	waitFor(t, "the recorder running", 20*time.Second, func() bool { return status(t, in, "recorder").State == plugins.StateRunning })
	page(t, in, "redelivered", "/once", `{"analytics":true,"personalization":true}`)
	var msgs []*nats.Msg
	waitFor(t, "the event enriched and segmented", 20*time.Second, func() bool {
		raw := streamMsgs(t, in, streams.Enriched, "vigie.enriched.")
		if len(raw) != 1 || status(t, in, "recorder").Processed < 2 || status(t, in, "recorder").Lag != 0 {
			return false
		}
		msgs = []*nats.Msg{{Subject: raw[0].Subject, Data: raw[0].Data}}
		return true
	})
	var ev vigiev1.Event
	if err := proto.Unmarshal(msgs[0].Data, &ev); err != nil {
		t.Fatal(err)
	}
	given := func() int {
		b, err := os.ReadFile(rec)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), `"`+ev.GetId()+`"`)
	}
	before := given()
	if before < 2 {
		t.Fatalf("the recorder was given the event %d times, want enrich and segment", before)
	}
	if _, err := in.Server.Bus().JetStream().PublishMsg(context.Background(), msgs[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second delivery handled", 20*time.Second, func() bool {
		return len(streamMsgs(t, in, streams.Enriched, "vigie.enriched.")) == 2 && status(t, in, "recorder").Lag == 0
	})
	if after := given(); after != before {
		t.Fatalf("the segmenter was given the event again: %d mentions, then %d", before, after)
	}
}
