package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// TestCountEmail: concurrent hits of one bucket lose no increment, buckets
// are kept apart by campaign, hour, kind, class and link, listed in key
// order, and expire their TTL after their hour.
func TestCountEmail(t *testing.T) {
	s := storagetest.Open(t)
	ctx := context.Background()
	hour := time.Now().UTC().Truncate(time.Hour)
	open := storage.EmailCount{Site: "shop", Campaign: "spring", Kind: storage.EmailOpen, Class: "human", Hour: hour.Add(17 * time.Minute), TTL: 48 * time.Hour}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				if err := s.CountEmail(ctx, open); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	click := storage.EmailCount{Site: "shop", Campaign: "spring", Kind: storage.EmailClick, Class: "scanner", Link: "https://shop.example/sale?utm_source=nl", Hour: hour}
	older := storage.EmailCount{Site: "shop", Campaign: "spring", Kind: storage.EmailOpen, Class: "human", Hour: hour.Add(-time.Hour)}
	other := storage.EmailCount{Site: "shop", Campaign: "winter", Kind: storage.EmailOpen, Class: "human", Hour: hour}
	elsewhere := storage.EmailCount{Site: "shop2", Campaign: "spring", Kind: storage.EmailOpen, Class: "human", Hour: hour}
	for _, c := range []storage.EmailCount{click, older, other, elsewhere} {
		if err := s.CountEmail(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.EmailCounts(ctx, "shop", "spring")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		kind, class, link string
		hour              time.Time
		n                 int64
	}
	want := []row{{"open", "human", "", hour.Add(-time.Hour), 1}, {"click", "scanner", click.Link, hour, 1}, {"open", "human", "", hour, 200}}
	if len(got) != len(want) {
		t.Fatalf("counts %+v, want %d rows", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Kind != w.kind || g.Class != w.class || g.Link != w.link || !g.Hour.Equal(w.hour) || g.N != w.n || g.Campaign != "spring" || g.Site != "shop" {
			t.Errorf("row %d = %+v, want %+v", i, g, w)
		}
	}
	all, _ := s.EmailCounts(ctx, "shop", "")
	if len(all) != 4 {
		t.Errorf("site counts: %d rows, want 4", len(all))
	}
	// TTL runs from the bucket's hour, not from the last hit.
	var expires uint64
	txn := s.DB().NewTransaction(false)
	defer txn.Discard()
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte("ec/shop\x00spring\x00")
	iter := txn.NewIterator(opts)
	for iter.Rewind(); iter.Valid(); iter.Next() {
		if e := iter.Item().ExpiresAt(); e > expires {
			expires = e
		}
	}
	iter.Close()
	if want := uint64(hour.Add(48 * time.Hour).Unix()); expires != want {
		t.Errorf("bucket expires at %d, want %d (its hour + TTL)", expires, want)
	}

	for _, bad := range []storage.EmailCount{
		{Campaign: "c", Kind: storage.EmailOpen, Hour: hour},
		{Site: "shop", Campaign: "c", Kind: "bounce", Hour: hour},
		{Site: "shop", Campaign: "a\x00b", Kind: storage.EmailOpen, Hour: hour},
		{Site: "shop", Campaign: "c", Kind: storage.EmailOpen},
	} {
		if err := s.CountEmail(ctx, bad); !errors.Is(err, storage.ErrInvalidRecord) && !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("CountEmail(%+v) = %v, want invalid", bad, err)
		}
	}
}
