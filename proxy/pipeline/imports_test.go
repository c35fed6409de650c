package pipeline

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// TestRequestSubject: a subject the caller resolved (an import by e-mail
// through the blind index) is the event's user id and subject, used as is
// for the ledger's limits; the message's own UserID is not pseudonymized.
func TestRequestSubject(t *testing.T) {
	p, s := newPipeline(t, consent.DefaultPolicy())
	m := decode(t, `{"type":"track","event":"Order Completed","userId":"ann@example.org","properties":{"note":"call ann@example.org"}}`)
	r := Request{ReceivedAt: time.Now(), Source: "import", Subject: "resolved-subject",
		Signals: []consent.Signal{{Source: "import", Granted: consent.NewSet(consent.Marketing)}}, Explicit: true}
	res := p.Process(s, &m, &r)
	if res.Outcome != Stored || res.Subject != "resolved-subject" || res.Record.Subject != "resolved-subject" {
		t.Fatalf("result: %+v", res)
	}
	ev := &vigiev1.Event{}
	if err := proto.Unmarshal(res.Record.Data, ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetUserId() != "resolved-subject" || ev.GetSubject() != "resolved-subject" || ev.GetSource() != "import" {
		t.Fatalf("event ids: %v", ev)
	}
	if strings.Contains(string(res.Record.Data), "ann@example.org") || ev.GetUserId() == s.pseudo.ID("shop", pseudonymize.UserID, "ann@example.org") {
		t.Fatalf("message's user id used: %v", ev)
	}
}

// TestScrubObject: an import's attributes are scrubbed as properties are.
func TestScrubObject(t *testing.T) {
	_, s := newPipeline(t, consent.DefaultPolicy())
	var c pseudonymize.Counts
	out, err := s.ScrubObject([]byte(`{"score":7,"email":"ann@example.org","note":"ring +33 6 12 34 56 78"}`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "ann@") || strings.Contains(string(out), "12 34") || !strings.Contains(string(out), `"score":7`) {
		t.Fatalf("scrubbed: %s", out)
	}
}
