package reaction_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/response"
	"github.com/vigie-dev/vigie/plugins/response/model"
	"github.com/vigie-dev/vigie/proxy/reaction"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

const pluginConfig = `{"contact_types":[{"name":"vip","segments":["vip"]}],
	"message_types":[{"name":"promo"},{"name":"banner","responses":["click"],"conversions":[]}],"half_life":"0"}`

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// setup stores what the plugin would: a summary of a model where vip
// subjects respond to promo, and profiles of a vip subject, a subject
// granting analytics only, and one that objected.
func setup(t *testing.T) (*reaction.Reader, *storage.Store) {
	t.Helper()
	ctx := context.Background()
	st := storagetest.Open(t)
	view, err := response.ParseView([]byte(pluginConfig))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(view.Model)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		subj := "s" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		seg := []string{"vip"}
		if i%2 == 1 {
			seg = nil
		}
		arm := model.Treated
		if i%5 == 0 {
			arm = model.Holdout
		}
		if _, err := m.Expose(model.Exposure{Subject: subj, Segments: seg, MessageType: "promo", Arm: arm, Key: "email:c", At: t0}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := m.Respond(model.Response{Subject: subj, Kind: model.Conversion, Event: "Order Completed", At: t0.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	sum, _ := m.MarshalSummary()
	if err := st.KVPut(ctx, "response", response.SummaryKey("demo"), sum, 0); err != nil {
		t.Fatal(err)
	}
	objected, _ := json.Marshal([]string{"objector"})
	if err := st.KVPut(ctx, "response", response.ObjectedKey("demo", "objector"), objected, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		subj     string
		purposes []string
		vip      bool
	}{{"vip-1", []string{"marketing"}, true}, {"analytics-only", []string{"analytics"}, false}, {"objector", []string{"personalization"}, true}} {
		ev := &vigiev1.Event{Id: "e-" + p.subj, Site: "demo", Subject: p.subj, Type: "track", Name: "x", TimestampMs: t0.UnixMilli(),
			Mode: vigiev1.Mode_MODE_PSEUDONYMOUS, Purposes: p.purposes}
		if _, _, err := st.ObserveEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if p.vip {
			if _, _, err := st.ApplySegment(ctx, storage.SegmentOutcome{Plugin: "segments", Site: "demo", Subject: p.subj, EventID: ev.Id,
				Changes: []*vigiev1.SegmentChange{{Site: "demo", Subject: p.subj, Segment: "vip", Transition: vigiev1.Transition_TRANSITION_ENTERED}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := reaction.New(reaction.Config{Store: st, PluginConfig: []byte(pluginConfig), Now: func() time.Time { return t0.Add(2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

func TestTable(t *testing.T) {
	r, _ := setup(t)
	tb, err := r.Table(context.Background(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.Cells) != 4 || len(tb.ContactTypes) != 2 || tb.ContactTypes[1].Name != "other" || tb.Interval != 0.9 || !tb.LatestEvent.Equal(t0.Add(time.Hour)) {
		t.Fatalf("table %+v", tb)
	}
	vip := tb.Cells[0]
	if vip.ContactType != "vip" || vip.MessageType != "promo" || vip.Exposures != 16 || !(vip.Lower < vip.Mean && vip.Mean < vip.Upper) {
		t.Fatalf("vip×promo %+v", vip)
	}
	// A site the plugin has written nothing for is every cell at its prior.
	empty, err := r.Table(context.Background(), "other-site")
	if err != nil || len(empty.Cells) != 4 || empty.Cells[0].Exposures != 0 {
		t.Fatalf("empty table %+v, %v", empty, err)
	}
}

func TestNext(t *testing.T) {
	r, _ := setup(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		q    reaction.Query
		ct   string
		err  error
	}{
		{"subject", reaction.Query{Subject: "vip-1"}, "vip", nil},
		{"segment", reaction.Query{Segment: "vip", Candidates: []string{"banner"}}, "vip", nil},
		{"no segment", reaction.Query{Segment: "nope"}, "other", nil},
		{"unknown subject", reaction.Query{Subject: "ghost"}, "", reaction.ErrUnknownSubject},
		{"no consent for the model", reaction.Query{Subject: "analytics-only"}, "", reaction.ErrNotModelled},
		{"objected", reaction.Query{Subject: "objector"}, "", reaction.ErrNotModelled},
		{"unknown candidate", reaction.Query{Segment: "vip", Candidates: []string{"nope"}}, "", reaction.ErrUnknownMessageType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := r.Next(ctx, "demo", tc.q)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			want := 2
			if len(tc.q.Candidates) > 0 {
				want = len(tc.q.Candidates)
			}
			if p.ContactType != tc.ct || len(p.Candidates) != want || p.MessageType == "" || p.Method != "thompson_sampling" {
				t.Fatalf("pick %+v", p)
			}
		})
	}
}

func TestUplift(t *testing.T) {
	r, _ := setup(t)
	ctx := context.Background()
	ups, err := r.Uplift(ctx, "demo", "promo", "")
	if err != nil || len(ups) != 2 {
		t.Fatalf("uplift %+v, %v", ups, err)
	}
	if ups[0].Holdout.Exposures == 0 || ups[0].Treated.Exposures == 0 || ups[0].Draws != model.DefaultUpliftDraws || !(ups[0].Lower <= ups[0].Mean && ups[0].Mean <= ups[0].Upper) {
		t.Fatalf("vip uplift %+v", ups[0])
	}
	for _, tc := range []struct {
		mt, ct string
		err    error
	}{{"banner", "", reaction.ErrNoConversions}, {"nope", "", reaction.ErrUnknownMessageType}, {"promo", "nope", reaction.ErrUnknownContactType}} {
		if _, err := r.Uplift(ctx, "demo", tc.mt, tc.ct); !errors.Is(err, tc.err) {
			t.Errorf("Uplift(%s, %s) = %v, want %v", tc.mt, tc.ct, err, tc.err)
		}
	}
}

func TestNewRefusesABadConfiguration(t *testing.T) {
	if _, err := reaction.New(reaction.Config{Store: storagetest.Open(t), PluginConfig: []byte(`{"half_life":"soon"}`)}); err == nil {
		t.Fatal("a bad configuration was accepted")
	}
}

// peers serves other nodes' summaries from a second store, as
// cluster.ResponseSummaries serves them from KV VIGIE_RESPONSE.
type peers struct {
	summaries [][]byte
	err       error
}

func (p peers) Others(context.Context, string) ([][]byte, error) { return p.summaries, p.err }

// TestPeersAddUp: in cluster mode the reader adds the other nodes'
// summaries to its own; one that does not decode is left out; the peers
// unreachable make the model unavailable (503), not this node's share.
func TestPeersAddUp(t *testing.T) {
	_, st := setup(t)
	own, err := st.KVGet(context.Background(), "response", response.SummaryKey("demo"))
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return t0.Add(2 * time.Hour) }
	for _, tc := range []struct {
		name  string
		peers peers
		vip   float64
		err   error
	}{
		{"one other node with the same share", peers{summaries: [][]byte{own}}, 32, nil},
		{"two others, one unreadable", peers{summaries: [][]byte{own, []byte("VRSC garbage")}}, 32, nil},
		{"none", peers{}, 16, nil},
		{"bucket unreachable", peers{err: errors.New("nats: timeout")}, 0, reaction.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := reaction.New(reaction.Config{Store: st, PluginConfig: []byte(pluginConfig), Now: now, Peers: tc.peers})
			if err != nil {
				t.Fatal(err)
			}
			tb, err := r.Table(context.Background(), "demo")
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if tc.err == nil && tb.Cells[0].Exposures != tc.vip {
				t.Fatalf("vip×promo exposures %v, want %v", tb.Cells[0].Exposures, tc.vip)
			}
		})
	}
	// A site this node modelled nothing of shows the others' share.
	r, err := reaction.New(reaction.Config{Store: st, PluginConfig: []byte(pluginConfig), Now: now, Peers: peers{summaries: [][]byte{own}}})
	if err != nil {
		t.Fatal(err)
	}
	if tb, err := r.Table(context.Background(), "other-site"); err != nil || tb.Cells[0].Exposures != 16 {
		t.Fatalf("a site modelled on another node only: %+v, %v", tb, err)
	}
}
