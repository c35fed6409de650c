package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/internal/testplugins"
	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// streamMsg is one message of the VIGIE_EVENTS stream, decoded.
type streamMsg struct {
	Subject string
	MsgID   string
	Data    []byte
	Event   *vigiev1.Event
}

// readStream returns every message of the VIGIE_EVENTS stream of js.
func readStream(t *testing.T, js jetstream.JetStream) []streamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streams.Events)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []streamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("get msg %d: %v", seq, err)
		}
		ev := &vigiev1.Event{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			t.Fatalf("msg %d does not decode: %v", seq, err)
		}
		out = append(out, streamMsg{Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader), Data: m.Data, Event: ev})
	}
	return out
}

// TestMain lets this test binary serve the built-in plugins and the test
// plugins when Vigie re-executes it as "<binary> plugin <name>".
func TestMain(m *testing.M) {
	builtin.Register("recorder", func() { sdk.Serve(testplugins.Recorder()) })
	builtin.Register("crm", func() { sdk.Serve(testplugins.CRM()) })
	builtin.MaybeRun(os.Args)
	os.Exit(m.Run())
}

// waitStream waits until the stream holds at least n messages.
func waitStream(t *testing.T, in *proxytest.Instance, n int) []streamMsg {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs := readStream(t, in.Server.Bus().JetStream())
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream has %d messages, want %d (outbox %d)", len(msgs), n, in.Server.Store().OutboxLen())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitOutboxEmpty waits until every accepted event has been acknowledged by
// JetStream and removed from the outbox (the ack arrives after the message is
// visible in the stream, so this cannot be checked right after waitStream).
func waitOutboxEmpty(t *testing.T, in *proxytest.Instance) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for in.Server.Store().OutboxLen() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("outbox not drained: %d", in.Server.Store().OutboxLen())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// adminEvents lists stored events through the admin API.
func adminEvents(t *testing.T, in *proxytest.Instance, query string) []map[string]any {
	t.Helper()
	code, body := in.Admin("/admin/v1/events?limit=1000&" + query)
	if code != 200 {
		t.Fatalf("admin events: %d %s", code, body)
	}
	var out struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("admin events: %v: %s", err, body)
	}
	return out.Events
}

// decodeErr decodes an error answer and checks it is JSON naming a problem.
func decodeErr(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, body)
	}
	if s, _ := m["error"].(string); s == "" {
		t.Fatalf("error body names no problem: %s", body)
	}
	return m
}
