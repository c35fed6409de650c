package storage_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestConsentLedger(t *testing.T) {
	dir := t.TempDir()
	s := storagetest.OpenConfig(t, storage.Config{Dir: dir})
	ctx := t.Context()
	if _, err := s.Consent(ctx, "demo", "p1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("empty ledger: %v", err)
	}
	first := storage.ConsentEntry{Granted: []string{"analytics", "marketing"}, Source: "payload", AtMs: 1}
	if err := s.PutConsent(ctx, "demo", "p1", first); err != nil {
		t.Fatal(err)
	}
	withdrawn := storage.ConsentEntry{Granted: []string{"analytics"}, Denied: []string{"marketing"}, Source: "tcf", AtMs: 2}
	if err := s.PutConsent(ctx, "demo", "p1", withdrawn); err != nil {
		t.Fatal(err)
	}
	got, err := s.Consent(ctx, "demo", "p1")
	if err != nil || !slices.Equal(got.Granted, withdrawn.Granted) || !slices.Equal(got.Denied, withdrawn.Denied) ||
		got.Source != "tcf" || got.AtMs != 2 {
		t.Fatalf("latest choice: %+v %v", got, err)
	}
	// Sites are separate.
	if _, err := s.Consent(ctx, "other", "p1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("other site: %v", err)
	}
	for _, bad := range [][2]string{{"", "p1"}, {"demo", ""}, {"demo", "a\x00b"}} {
		if err := s.PutConsent(ctx, bad[0], bad[1], first); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("PutConsent(%q, %q): %v", bad[0], bad[1], err)
		}
	}
	// It survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = storagetest.OpenConfig(t, storage.Config{Dir: dir})
	if got, err := s.Consent(ctx, "demo", "p1"); err != nil || got.AtMs != 2 {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
}

// TestHistoriesKeepRecordsOfTheSameMillisecond: two consent choices of a
// subject in one millisecond (a batch's events share their receipt time)
// are both in its consent history, and two things one plugin was given
// about a subject in one millisecond (its identify and segment syncers run
// side by side) are both in its sync history; the same record written
// twice (a retried write) is kept once.
func TestHistoriesKeepRecordsOfTheSameMillisecond(t *testing.T) {
	s := storagetest.OpenConfig(t, storage.Config{Dir: t.TempDir()})
	ctx := t.Context()
	granted := storage.ConsentEntry{Granted: []string{"marketing"}, Source: "payload", AtMs: 1000}
	denied := storage.ConsentEntry{Denied: []string{"marketing"}, Source: "payload", AtMs: 1000}
	for _, e := range []storage.ConsentEntry{granted, denied, denied} {
		if err := s.PutConsent(ctx, "demo", "p1", e); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.ConsentHistory(ctx, "demo", "p1")
	if err != nil || len(h) != 2 {
		t.Fatalf("consent history %+v %v, want the grant and the denial", h, err)
	}
	if got, _ := s.Consent(ctx, "demo", "p1"); !slices.Equal(got.Denied, denied.Denied) {
		t.Fatalf("current choice %+v, want the last one", got)
	}

	identify := storage.SyncRecord{Plugin: "crm", Kind: "identify", Detail: "ev1", Fields: []string{"email"}, AtMs: 2000}
	entered := storage.SyncRecord{Plugin: "crm", Kind: "segment_entered", Detail: "vip", Fields: []string{"email"}, AtMs: 2000}
	other := storage.SyncRecord{Plugin: "crm2", Kind: "identify", Detail: "ev1", AtMs: 2000}
	for _, r := range []storage.SyncRecord{identify, entered, entered, other} {
		if err := s.AddSyncHistory(ctx, "demo", "p1", r, 0); err != nil {
			t.Fatal(err)
		}
	}
	sh, err := s.SyncHistory(ctx, "demo", "p1")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range sh {
		kinds = append(kinds, r.Plugin+":"+r.Kind)
	}
	slices.Sort(kinds)
	if want := []string{"crm2:identify", "crm:identify", "crm:segment_entered"}; !slices.Equal(kinds, want) {
		t.Fatalf("sync history %v, want %v", kinds, want)
	}
}
