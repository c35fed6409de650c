package storage_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestAuditTrail(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{Retention: storage.Retention{Audit: 48 * time.Hour}})
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 7 {
		action := "contacts.resolve"
		if i%2 == 1 {
			action = "privacy.request.erase"
		}
		e := storage.AuditEntry{At: t0.Add(time.Duration(i) * time.Minute), Actor: "plugin:crm", Action: action,
			Site: "demo", Fields: []string{"email"}, Count: i + 1}
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Two entries of the same millisecond are both kept.
	if err := s.AppendAudit(ctx, storage.AuditEntry{At: t0, Actor: "token:t1 (admin)", Action: "privacy.request.access"}); err != nil {
		t.Fatal(err)
	}
	counts := func(es []storage.AuditEntry) []int {
		var out []int
		for _, e := range es {
			out = append(out, e.Count)
		}
		return out
	}
	tests := []struct {
		name string
		q    storage.AuditQuery
		want []int
	}{
		{"all", storage.AuditQuery{}, []int{1, 0, 2, 3, 4, 5, 6, 7}},
		{"action", storage.AuditQuery{Action: "privacy.request.erase"}, []int{2, 4, 6}},
		{"from to", storage.AuditQuery{From: t0.Add(2 * time.Minute), To: t0.Add(4 * time.Minute)}, []int{3, 4}},
		{"to excluded", storage.AuditQuery{To: t0.Add(time.Minute)}, []int{1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := s.ListAudit(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(counts(got), tt.want) || next != "" {
				t.Fatalf("got %v next %q, want %v", counts(got), next, tt.want)
			}
		})
	}

	// Pages of 3 give every matching entry once, in order.
	var all []int
	q := storage.AuditQuery{Limit: 3, Action: "contacts.resolve"}
	for pages := 0; ; pages++ {
		got, next, err := s.ListAudit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, counts(got)...)
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		q.After = next
	}
	if !slices.Equal(all, []int{1, 3, 5, 7}) {
		t.Fatalf("paged: %v", all)
	}

	if _, _, err := s.ListAudit(ctx, storage.AuditQuery{After: "zz"}); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("bad cursor: %v", err)
	}
	for _, bad := range []storage.AuditEntry{{Action: "x"}, {Actor: "x"}, {Actor: "x", Action: "y", Count: -1}} {
		if err := s.AppendAudit(ctx, bad); !errors.Is(err, storage.ErrInvalidRecord) {
			t.Errorf("%+v: %v", bad, err)
		}
	}

	// Every entry expires Retention.Audit after its time.
	err := s.DB().View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("au/")
		it := txn.NewIterator(opts)
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			exp := time.Unix(int64(it.Item().ExpiresAt()), 0)
			if exp.Before(t0.Add(47*time.Hour)) || exp.After(t0.Add(49*time.Hour+7*time.Minute)) {
				t.Errorf("entry expires at %v, want about %v", exp, t0.Add(48*time.Hour))
			}
		}
		if n != 8 {
			t.Errorf("%d audit keys, want 8", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An entry whose retention has passed is not listed.
func TestAuditExpired(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{Retention: storage.Retention{Audit: time.Hour}})
	ctx := context.Background()
	if err := s.AppendAudit(ctx, storage.AuditEntry{At: time.Now().Add(-2 * time.Hour), Actor: "a", Action: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, storage.AuditEntry{Actor: "a", Action: "new"}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ListAudit(ctx, storage.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Action != "new" {
		t.Fatalf("got %+v", got)
	}
}
