package storage_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestPluginKV(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := storagetest.OpenConfig(t, storage.Config{Dir: dir})
	steps := []struct {
		op, plugin, key, value string
		wantErr                error
	}{
		{"get", "a", "k", "", storage.ErrNotFound},
		{"put", "a", "k", "v1", nil},
		{"get", "a", "k", "v1", nil},
		{"get", "b", "k", "", storage.ErrNotFound}, // plugins do not see each other's keys
		{"get", "a", "k2", "", storage.ErrNotFound},
		{"put", "b", "k", "other", nil},
		{"put", "a", "k", "v2", nil},
		{"get", "a", "k", "v2", nil},
		{"get", "b", "k", "other", nil},
		{"put", "a", "k\x00", "x", storage.ErrInvalidKey},
		{"put", "a", "", "x", storage.ErrInvalidKey},
		{"put", "", "k", "x", storage.ErrInvalidKey},
		{"put", "a\x00b", "k", "x", storage.ErrInvalidKey},
		{"put", "a", strings.Repeat("k", 1025), "x", storage.ErrInvalidKey},
		{"put", "a", strings.Repeat("k", 1024), "long key", nil},
		{"get", "a", strings.Repeat("k", 1024), "long key", nil},
		{"put", "a", "big", strings.Repeat("v", 1<<20+1), storage.ErrInvalidRecord},
		{"put", "a", "empty", "", nil},
		{"get", "a", "empty", "", nil},
		{"delete", "a", "k", "", nil},
		{"delete", "a", "k", "", nil}, // missing key is fine
		{"get", "a", "k", "", storage.ErrNotFound},
		{"get", "b", "k", "other", nil},
		{"delete", "a", "", "", storage.ErrInvalidKey},
	}
	for i, st := range steps {
		var (
			got []byte
			err error
		)
		switch st.op {
		case "get":
			got, err = s.KVGet(ctx, st.plugin, st.key)
		case "put":
			err = s.KVPut(ctx, st.plugin, st.key, []byte(st.value), 0)
		case "delete":
			err = s.KVDelete(ctx, st.plugin, st.key)
		}
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("step %d %s(%q,%.20q): err %v, want %v", i, st.op, st.plugin, st.key, err, st.wantErr)
		}
		if st.op == "get" && err == nil && string(got) != st.value {
			t.Fatalf("step %d: get %q = %q, want %q", i, st.key, got, st.value)
		}
	}
	if err := s.KVPut(ctx, "a", "neg", nil, -time.Second); !errors.Is(err, storage.ErrInvalidRecord) {
		t.Fatalf("negative ttl: %v", err)
	}
	// Values survive a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = storagetest.OpenConfig(t, storage.Config{Dir: dir})
	if v, err := s.KVGet(ctx, "b", "k"); err != nil || string(v) != "other" {
		t.Fatalf("after reopen: %q %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVGet(ctx, "b", "k"); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
}

func TestPluginKVTTL(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	if err := s.KVPut(ctx, "p", "short", []byte("x"), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.KVPut(ctx, "p", "long", []byte("y"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.KVPut(ctx, "p", "sub-second", []byte("z"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// TTLs are rounded up to a whole second, so even 1ms is readable now.
	for _, k := range []string{"short", "long", "sub-second"} {
		if _, err := s.KVGet(ctx, "p", k); err != nil {
			t.Fatalf("%s right after put: %v", k, err)
		}
	}
	time.Sleep(2100 * time.Millisecond)
	for k, want := range map[string]error{"short": storage.ErrNotFound, "sub-second": storage.ErrNotFound, "long": nil} {
		if _, err := s.KVGet(ctx, "p", k); !errors.Is(err, want) {
			t.Errorf("%s after 2.1s: %v, want %v", k, err, want)
		}
	}
	// Overwriting replaces the value (and its expiry).
	if err := s.KVPut(ctx, "p", "long", []byte("y2"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := s.KVGet(ctx, "p", "long"); err != nil || !bytes.Equal(v, []byte("y2")) {
		t.Fatalf("overwrite: %q %v", v, err)
	}
}
