package privacy

import (
	"context"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestStoreAuditorAndActor(t *testing.T) {
	ctx := WithActor(context.Background(), TokenActor("t1", "admin"))
	if got := ActorFrom(ctx); got != "token:t1 (admin)" {
		t.Fatalf("actor %q", got)
	}
	if got := ActorFrom(context.Background()); got != "unknown" {
		t.Fatalf("no actor: %q", got)
	}
	s := storagetest.Open(t)
	a := StoreAuditor{Store: s}
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	e := AuditEntry{At: at, Actor: ActorFrom(ctx), Action: "privacy.request.erase", Site: "demo", RequestID: "01J", Fields: []string{"email"}, Count: 2}
	if err := a.Audit(ctx, e); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ListAudit(ctx, storage.AuditQuery{})
	if err != nil || len(got) != 1 || AuditEntry(got[0]).Actor != e.Actor || !got[0].At.Equal(at) || got[0].RequestID != "01J" || got[0].Count != 2 {
		t.Fatalf("%+v %v", got, err)
	}
}
