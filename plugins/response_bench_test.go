package plugins_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/internal/testplugins"
	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// init registers noop-segmenter: testplugins.Noop without its enricher,
// so that both runs below have the same stages.
func init() {
	builtin.Register("noop-segmenter", func() {
		p := testplugins.Noop()
		p.Manifest.Name, p.Enricher = "noop-segmenter", nil
		sdk.Serve(p)
	})
}

// BenchmarkResponseStage measures events per second through Vigie's
// segment stage with the response plugin against the no-op segmenter, in
// the same run and on the same events (benchMsgs with every track turned
// into a campaign's events: a quarter Email Sent of two message types, a
// quarter human opens of their campaign, a quarter Order Completed, the
// rest left as they were), host work included: profile observation, the
// plugin call, the profile attribute updates the response plugin returns,
// its key-value writes (response-no-attribute: without the profile
// attribute). Run with a fixed count, e.g.
//
//	go test ./plugins/ -run '^$' -bench BenchmarkResponseStage -benchtime=20000x
func BenchmarkResponseStage(b *testing.B) {
	b.Run("noop-segmenter", func(b *testing.B) {
		in := benchServer(b, "segment-noop-segmenter", config.Plugin{Name: "noop-segmenter"})
		responseRun(b, in, "noop-segmenter", int64(b.N))
	})
	b.Run("response", func(b *testing.B) {
		in := benchServer(b, "segment-response", config.Plugin{Name: "response", Config: map[string]any{
			"message_types": []any{map[string]any{"name": "promo"}, map[string]any{"name": "digest"}},
		}})
		responseRun(b, in, "response", int64(b.N))
	})
	b.Run("response-no-attribute", func(b *testing.B) {
		in := benchServer(b, "segment-response", config.Plugin{Name: "response", Config: map[string]any{
			"message_types":     []any{map[string]any{"name": "promo"}, map[string]any{"name": "digest"}},
			"profile_attribute": "",
		}})
		responseRun(b, in, "response", int64(b.N))
	})
}

// responseRun publishes the response-shaped events and waits until
// plugin processed target of them.
func responseRun(b *testing.B, in *proxytest.Instance, plugin string, target int64) {
	b.Helper()
	msgs := responseMsgs(b, benchMsgs(b.N))
	benchTimed(b, in.Server.Bus().JetStream(), msgs, func(ctx context.Context) (int64, error) { return processed(ctx, in, plugin) }, target)
	for _, st := range in.Server.Plugins().Status(context.Background()) {
		if st.Errors != 0 || st.DeadLetters != 0 || st.Restarts != 0 {
			b.Fatalf("plugin %s: %d errors, %d dead letters, %d restarts (last error %q)", st.Name, st.Errors, st.DeadLetters, st.Restarts, st.LastError)
		}
	}
}

// responseMsgs turns benchMsgs' events into a campaign's: every event
// becomes a track (the response plugin's filter), by position.
func responseMsgs(b *testing.B, msgs []*nats.Msg) []*nats.Msg {
	b.Helper()
	for i, m := range msgs {
		ev := &vigiev1.Event{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			b.Fatal(err)
		}
		ev.Type, ev.Page = "track", nil
		ev.Purposes = []string{"analytics", "personalization", "marketing"}
		mt := []string{"promo", "digest"}[i%2]
		switch i % 4 {
		case 0, 1:
			ev.Name, ev.Properties = "Email Sent", []byte(`{"message_type":"`+mt+`","campaign":"c-`+mt+`"}`)
		case 2:
			ev.Name, ev.Properties, ev.Source = "Email Opened", nil, "email"
			ev.Email = &vigiev1.Email{Campaign: "c-" + []string{"promo", "digest"}[(i/4)%2], Class: "human"}
		case 3:
			ev.Name, ev.Properties = "Order Completed", []byte(`{"total":49}`)
		}
		data, err := proto.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		nm := nats.NewMsg(streams.EventSubject(ev.Site, ev.Type))
		nm.Data = data
		nm.Header.Set(nats.MsgIdHdr, ev.GetId())
		msgs[i] = nm
	}
	return msgs
}
