package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// scanAll returns index → value of every live rollup (part 0) of kind and
// site in [from, to).
func scanAll(t *testing.T, s *storage.Store, kind storage.RollupKind, site string, from, to uint32) map[uint32]string {
	t.Helper()
	out := map[uint32]string{}
	var last int64 = -1
	err := s.ScanRollups(context.Background(), kind, site, from, to, func(i uint32, part uint64, v []byte) error {
		if part != 0 {
			t.Errorf("unexpected part %d", part)
		}
		if int64(i) <= last {
			t.Errorf("scan not in index order: %d after %d", i, last)
		}
		last = int64(i)
		out[i] = string(v)
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

func TestRollupsPutScanRange(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	var es []storage.RollupEntry
	for _, site := range []string{"a", "ab", ""} {
		for _, kind := range []storage.RollupKind{storage.RollupHour, storage.RollupDay, storage.RollupDecisions} {
			for _, i := range []uint32{0, 9, 10, 11, 19, 20, 1<<32 - 1} {
				es = append(es, storage.RollupEntry{Kind: kind, Site: site, Index: i, Value: fmt.Appendf(nil, "%s/%d/%d", site, kind, i)})
			}
		}
	}
	if err := s.PutRollups(ctx, es, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		kind     storage.RollupKind
		site     string
		from, to uint32
		want     []uint32
	}{
		{"half-open range", storage.RollupHour, "a", 10, 20, []uint32{10, 11, 19}},
		{"from zero", storage.RollupDay, "a", 0, 10, []uint32{0, 9}},
		{"to the end", storage.RollupDecisions, "ab", 20, 1<<32 - 1, []uint32{20}},
		{"empty range", storage.RollupHour, "a", 10, 10, nil},
		{"inverted range", storage.RollupHour, "a", 20, 10, nil},
		{"empty site is its own site", storage.RollupDecisions, "", 0, 12, []uint32{0, 9, 10, 11}},
		{"unknown site", storage.RollupHour, "b", 0, 1<<32 - 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanAll(t, s, tt.kind, tt.site, tt.from, tt.to)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want indexes %v", got, tt.want)
			}
			for _, i := range tt.want {
				if want := fmt.Sprintf("%s/%d/%d", tt.site, tt.kind, i); got[i] != want {
					t.Errorf("index %d = %q, want %q (site prefix leaked?)", i, got[i], want)
				}
			}
		})
	}
	v, err := s.Rollup(ctx, storage.RollupDay, "ab", 11)
	if err != nil || string(v) != "ab/2/11" {
		t.Errorf("Rollup = %q, %v", v, err)
	}
	if _, err := s.Rollup(ctx, storage.RollupDay, "ab", 12); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing rollup: err = %v, want ErrNotFound", err)
	}
}

func TestRollupsInvalid(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	tests := []struct {
		name string
		es   []storage.RollupEntry
		mark *storage.RollupMark
		want error
	}{
		{"unknown kind", []storage.RollupEntry{{Kind: 9, Site: "a"}}, nil, storage.ErrInvalidKey},
		{"NUL in site", []storage.RollupEntry{{Kind: storage.RollupHour, Site: "a\x00b"}}, nil, storage.ErrInvalidKey},
		{"too large", []storage.RollupEntry{{Kind: storage.RollupHour, Site: "a", Value: make([]byte, 17<<20)}}, nil, storage.ErrInvalidRecord},
		{"mark without name", nil, &storage.RollupMark{Seq: 1}, storage.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutRollups(ctx, tt.es, tt.mark); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := s.ReadRollupMark(ctx, ""); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("ReadRollupMark(\"\") err = %v", err)
	}
}

func TestRollupsTTL(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	exp := time.Now().Add(761 * 24 * time.Hour).Truncate(time.Second).Add(300 * time.Millisecond)
	err := s.PutRollups(ctx, []storage.RollupEntry{
		{Kind: storage.RollupHour, Site: "a", Index: 1, Value: []byte("kept"), ExpiresAt: exp},
		{Kind: storage.RollupHour, Site: "a", Index: 2, Value: []byte("expired"), ExpiresAt: time.Now().Add(-time.Hour)},
		{Kind: storage.RollupHour, Site: "a", Index: 3, Value: []byte("forever")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := scanAll(t, s, storage.RollupHour, "a", 0, 10)
	if len(got) != 2 || got[1] != "kept" || got[3] != "forever" {
		t.Errorf("live rollups = %v, want 1 and 3", got)
	}
	_ = s.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("rh/a\x00")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			switch string(item.Key()[len(item.Key())-1:]) {
			case "\x01":
				if want := uint64(exp.Unix() + 1); item.ExpiresAt() != want {
					t.Errorf("ExpiresAt = %d, want %d (rounded up)", item.ExpiresAt(), want)
				}
			case "\x03":
				if item.ExpiresAt() != 0 {
					t.Errorf("zero ExpiresAt stored as %d", item.ExpiresAt())
				}
			}
		}
		return nil
	})
}

func TestRollupsMarkAndLargeBatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := newKey()
	s := openDir(t, storage.Config{Dir: dir, VaultKey: key})
	m, err := s.ReadRollupMark(ctx, "rollup")
	if err != nil || m != (storage.RollupMark{Name: "rollup"}) {
		t.Fatalf("unwritten mark = %+v, %v", m, err)
	}
	// More than one Badger transaction holds (values stay in the LSM tree
	// below the 256-byte value threshold, so they count in full).
	const n = 60_000
	es := make([]storage.RollupEntry, n)
	for i := range es {
		v := bytes.Repeat([]byte{byte(i)}, 200)
		es[i] = storage.RollupEntry{Kind: storage.RollupHour, Site: "big", Index: uint32(i), Value: v}
	}
	want := storage.RollupMark{Name: "rollup", Epoch: 7, Seq: 1 << 40}
	if err := s.PutRollups(ctx, es, &want); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = openDir(t, storage.Config{Dir: dir, VaultKey: key})
	got, err := s.ReadRollupMark(ctx, "rollup")
	if err != nil || got != want {
		t.Errorf("mark after reopen = %+v, %v; want %+v", got, err, want)
	}
	count := 0
	if err := s.ScanRollups(ctx, storage.RollupHour, "big", 0, n, func(i uint32, _ uint64, v []byte) error {
		if len(v) != 200 || v[0] != byte(i) {
			return fmt.Errorf("index %d: bad value", i)
		}
		count++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Errorf("scanned %d rollups, want %d", count, n)
	}
	stop := errors.New("stop")
	if err := s.ScanRollups(ctx, storage.RollupHour, "big", 0, n, func(uint32, uint64, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("scan error from fn = %v, want it returned", err)
	}
}

func TestRollupsParts(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	put := func(es ...storage.RollupEntry) {
		t.Helper()
		if err := s.PutRollups(ctx, es, nil); err != nil {
			t.Fatal(err)
		}
	}
	h := func(index uint32, part uint64, v string) storage.RollupEntry {
		return storage.RollupEntry{Kind: storage.RollupHour, Site: "a", Index: index, Part: part, Value: []byte(v)}
	}
	put(h(5, 0, "main"), h(5, 2, "two"), h(5, 1, "one"), h(5, 1<<40, "big"), h(6, 0, "next"), h(4, 3, "before"))
	del := h(5, 1, "")
	del.Delete = true
	put(del)
	var got []string
	if err := s.ScanRollups(ctx, storage.RollupHour, "a", 5, 6, func(i uint32, part uint64, v []byte) error {
		got = append(got, fmt.Sprintf("%d/%d=%s", i, part, v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"5/0=main", "5/2=two", fmt.Sprintf("5/%d=big", uint64(1<<40))}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("scan of index 5 = %v, want %v (parts in order, the deleted one gone)", got, want)
	}
	if v, err := s.Rollup(ctx, storage.RollupHour, "a", 5); err != nil || string(v) != "main" {
		t.Errorf("Rollup = %q, %v; want part 0", v, err)
	}
}
