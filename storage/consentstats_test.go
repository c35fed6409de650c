package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"testing"
	"time"
)

// TestConsentStats: the ledger's entries of one site are counted by
// choice (current or expired), purpose granted or denied, objection and
// restriction; other sites' entries are not.
func TestConsentStats(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Config{Dir: t.TempDir(), VaultKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := func(n int) int64 { return now.Add(-time.Duration(n) * 24 * time.Hour).UnixMilli() }
	entries := map[string]ConsentEntry{
		"a": {Granted: []string{"analytics", "marketing"}, AtMs: day(1)},
		"b": {Granted: []string{"analytics"}, Denied: []string{"marketing"}, AtMs: day(2)},
		"c": {Denied: []string{"analytics", "marketing"}, AtMs: day(300)}, // expired at 180 days
		"d": {Granted: []string{"analytics"}, AtMs: day(1), ChoiceAtMs: day(200), Objected: []string{"marketing"}},
		"e": {AtMs: day(3), Restricted: true},
		"f": {AtMs: day(3), Objected: []string{"marketing", "personalization"}},
	}
	for subj, e := range entries {
		if err := s.PutConsent(ctx, "demo", subj, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutConsent(ctx, "other", "a", ConsentEntry{Granted: []string{"analytics"}, AtMs: day(1)}); err != nil {
		t.Fatal(err)
	}
	st, err := s.ConsentStats(ctx, "demo", 180*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 6 || st.Choices != 2 || st.Expired != 2 || st.Objections != 2 || st.Restricted != 1 {
		t.Errorf("stats %+v", st)
	}
	for what, c := range map[string][2]map[string]uint64{
		"granted":  {st.Granted, {"analytics": 2, "marketing": 1}},
		"denied":   {st.Denied, {"marketing": 1}},
		"objected": {st.Objected, {"marketing": 2, "personalization": 1}},
	} {
		if !maps.Equal(c[0], c[1]) {
			t.Errorf("%s: %v, want %v", what, c[0], c[1])
		}
	}
	if st, err := s.ConsentStats(ctx, "demo", 0, now); err != nil || st.Choices != 4 || st.Expired != 0 {
		t.Errorf("no lifetime: %+v %v", st, err)
	}
	if _, err := s.ConsentStats(ctx, "", 0, now); err == nil {
		t.Error("an empty site was accepted")
	}
}

// BenchmarkConsentStats counts a ledger of VIGIE_LEDGER_ENTRIES entries
// (default 1 000 000) of one site, written with a write batch (as a year
// of choices would leave them), read once per iteration.
func BenchmarkConsentStats(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("VIGIE_LEDGER_ENTRIES"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			b.Fatal(err)
		}
	}
	s, err := Open(Config{Dir: b.TempDir(), VaultKey: make([]byte, 32)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	wb := s.db.NewWriteBatch()
	for i := range n {
		e := ConsentEntry{Granted: []string{"analytics", "necessary"}, Source: "payload", AtMs: now.Add(-time.Duration(i) * time.Second).UnixMilli(),
			EventID: fmt.Sprintf("01J%023d", i), Proof: fmt.Sprintf("%064x", i)}
		switch i % 4 {
		case 1:
			e.Granted = append(e.Granted, "marketing", "personalization")
		case 2:
			e.Denied = []string{"marketing", "personalization"}
		case 3:
			e.Granted, e.Denied = []string{"necessary"}, []string{"analytics", "marketing", "personalization"}
		}
		if i%97 == 0 {
			e.Objected = []string{"marketing"}
		}
		v, _ := json.Marshal(e)
		if err := wb.Set(consentKey("shop", fmt.Sprintf("sub_%040x", i)), v); err != nil {
			b.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	var st ConsentStats
	for range b.N {
		if st, err = s.ConsentStats(ctx, "shop", 395*24*time.Hour, now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st.Entries != uint64(n) {
		b.Fatalf("%d entries counted, %d written", st.Entries, n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
}
