package storage_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
)

var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// rec builds a record whose Data names its site and id.
func rec(site, id string, at time.Time, subject string, dedup string) storage.Record {
	r := storage.Record{
		Site: site, ID: id, Time: at, Type: "track", Subject: subject,
		Data:  []byte("event:" + site + ":" + id),
		Topic: "vigie.events." + site + ".track",
	}
	if dedup != "" {
		r.Dedup = []byte(dedup)
	}
	return r
}

func newKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// openDir opens a store at dir and closes it at cleanup (Close is
// idempotent, so tests may close earlier to reopen).
func openDir(t testing.TB, cfg storage.Config) *storage.Store {
	t.Helper()
	s, err := storage.Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustAppend(t testing.TB, s *storage.Store, recs ...storage.Record) []bool {
	t.Helper()
	dups, err := s.Append(context.Background(), recs)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if len(dups) != len(recs) {
		t.Fatalf("append: %d dups for %d records", len(dups), len(recs))
	}
	return dups
}

func allEvents(t testing.TB, s *storage.Store, site string) []string {
	t.Helper()
	evs, next, err := s.Events(context.Background(), site, 10_000, "")
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	if next != "" {
		t.Fatalf("events: unexpected next cursor")
	}
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e)
	}
	return out
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}
