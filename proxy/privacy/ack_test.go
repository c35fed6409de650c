package privacy

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// ackPeers is a Peers of node "b" whose messages are what the outbox
// holds; it reads nothing back.
type ackPeers struct{}

func (ackPeers) Node() string                                        { return "b" }
func (ackPeers) MemberNodes(context.Context) ([]string, error)       { return []string{"a", "b"}, nil }
func (ackPeers) LiveNodes(context.Context) ([]string, error)         { return []string{"a", "b"}, nil }
func (ackPeers) AnnounceMessage(id string, v []byte) storage.Message { return msg("req." + id) }
func (ackPeers) StepMessage(id, node string, v []byte) storage.Message {
	return msg("step." + id + "." + node)
}
func (ackPeers) PartMessage(id, node string, _ []byte) storage.Message {
	return msg("part." + id + "." + node)
}
func (ackPeers) ViewMessage(id string, _ []byte) storage.Message { return msg("view." + id) }
func (ackPeers) AckMessage(id, plugin string, v []byte) storage.Message {
	m := msg("ack." + id + "." + plugin)
	m.Data = v
	return m
}
func (ackPeers) Step(context.Context, string, string) ([]byte, error) { return nil, nil }
func (ackPeers) Ack(context.Context, string, string) ([]byte, error)  { return nil, nil }
func (ackPeers) Part(context.Context, string, string) ([]byte, error) { return nil, nil }
func (ackPeers) View(context.Context, string) ([]byte, error)         { return nil, nil }
func (ackPeers) Watch(ctx context.Context, _ func(context.Context, []byte) error) {
	<-ctx.Done()
}
func (ackPeers) ContactMessage(id string, _ []byte) storage.Message { return msg("contact." + id) }
func (ackPeers) Contact(context.Context, string) ([]byte, error)    { return nil, nil }
func (ackPeers) Purge(context.Context, func(string, []byte) bool) (int, error) {
	return 0, nil
}

func msg(key string) storage.Message {
	return storage.Message{Topic: "$KV.VIGIE_REQUESTS." + key, ID: key, Data: []byte("{}")}
}

// TestAckOfUnknownRequestForwardedInCluster: the plugins share their
// consumers, so a node's plugin may acknowledge another node's erasure
// before this node's watch has handed the announcement over. In cluster
// mode that acknowledgement is forwarded through the outbox (the request's
// node sets its plugin step from it; dropped, the request waited for ever);
// on a single node an unknown request's acknowledgement is ignored.
func TestAckOfUnknownRequestForwardedInCluster(t *testing.T) {
	for _, tc := range []struct {
		name  string
		peers Peers
		want  int
	}{
		{"cluster", ackPeers{}, 1},
		{"single node", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := storagetest.Open(t)
			idx, err := blind.New(make([]byte, 32))
			if err != nil {
				t.Fatal(err)
			}
			svc, err := New(Config{Store: st, Ledger: ledger.New(ledger.Config{Backend: st}), Blind: idx,
				Sites: map[string]*pipeline.Site{"demo": {}}, Peers: tc.peers})
			if err != nil {
				t.Fatal(err)
			}
			ack := plugins.PrivacyAck{RequestID: "r-unknown", Plugin: "recorder", Status: "done"}
			if err := svc.PrivacyAck(context.Background(), ack); err != nil {
				t.Fatal(err)
			}
			items, err := st.Outbox(context.Background(), 10)
			if err != nil {
				t.Fatal(err)
			}
			var got int
			for _, it := range items {
				if strings.HasSuffix(it.Topic, "ack.r-unknown.recorder") {
					var a plugins.PrivacyAck
					if json.Unmarshal(it.Data, &a) != nil || a.Status != "done" {
						t.Fatalf("forwarded ack %q does not carry the acknowledgement", it.Data)
					}
					got++
				}
			}
			if got != tc.want {
				t.Fatalf("%d forwarded acknowledgements in the outbox, want %d (outbox %d items)", got, tc.want, len(items))
			}
		})
	}
}
