// Package storagetest opens throwaway storage.Store instances for tests.
package storagetest

import (
	"crypto/rand"
	"testing"

	"github.com/vigie-dev/vigie/storage"
)

// Open opens a store in t.TempDir() with a random vault key and closes it
// when the test ends.
func Open(t testing.TB) *storage.Store {
	t.Helper()
	return OpenConfig(t, storage.Config{})
}

// OpenConfig is Open with cfg; an empty Dir (unless InMemory) becomes
// t.TempDir() and an empty VaultKey a random one. Closing twice is
// harmless, so tests may Close and reopen the same Dir themselves.
func OpenConfig(t testing.TB, cfg storage.Config) *storage.Store {
	t.Helper()
	if cfg.Dir == "" && !cfg.InMemory {
		cfg.Dir = t.TempDir()
	}
	if cfg.VaultKey == nil {
		cfg.VaultKey = make([]byte, 32)
		_, _ = rand.Read(cfg.VaultKey)
	}
	s, err := storage.Open(cfg)
	if err != nil {
		t.Fatalf("storagetest: open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("storagetest: close: %v", err)
		}
	})
	return s
}
