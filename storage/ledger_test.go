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
