package storage_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
)

// BenchmarkAppend measures Append of 16-record batches (one op = one
// batch) from 1 or 16 goroutines, with and without fsync per commit group.
func BenchmarkAppend(b *testing.B) {
	data := make([]byte, 300) // a typical encoded event
	for _, sync := range []bool{false, true} {
		for _, workers := range []int{1, 16} {
			b.Run(fmt.Sprintf("sync=%v/goroutines=%d", sync, workers), func(b *testing.B) {
				s := openDir(b, storage.Config{Dir: b.TempDir(), VaultKey: newKey(), SyncWrites: sync, MaxOutbox: 1 << 40})
				benchAppend(b, s, workers, data)
			})
		}
	}
}

func benchAppend(b *testing.B, s *storage.Store, workers int, data []byte) {
	const batch = 16
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			recs := make([]storage.Record, batch)
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				for i := range recs {
					id := fmt.Sprintf("%02d-%010d-%02d", w, n, i)
					recs[i] = storage.Record{
						Site: "bench", ID: id, Time: base.Add(time.Duration(n) * time.Millisecond),
						Type: "track", Subject: "subj", Dedup: []byte(id), Data: data,
						Topic: "vigie.events.bench.track",
					}
				}
				if _, err := s.Append(context.Background(), recs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkPutConsent measures recording a consent choice, alone and with
// its privacy event committed to the outbox in the same transaction.
func BenchmarkPutConsent(b *testing.B) {
	e := storage.ConsentEntry{Granted: []string{"analytics", "marketing"}, Denied: []string{"personalization"}, Source: "explicit", AtMs: 1}
	for _, withMsg := range []bool{false, true} {
		b.Run(fmt.Sprintf("message=%v", withMsg), func(b *testing.B) {
			s := openDir(b, storage.Config{Dir: b.TempDir(), VaultKey: newKey(), MaxOutbox: 1 << 40})
			data := make([]byte, 120) // an encoded PrivacyEvent
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var msgs []storage.Message
				if withMsg {
					msgs = []storage.Message{{Topic: "vigie.privacy.bench.consent", ID: fmt.Sprintf("privacy:bench:1:%d", i), Data: data}}
				}
				if err := s.PutConsent(context.Background(), "bench", fmt.Sprintf("subj-%d", i), e, msgs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDrainOutbox measures the publisher's side of the outbox: read
// 256 entries from the cursor and acknowledge them (one op = one batch),
// over an outbox of 100 k events spread over flushed tables, as when the
// publisher lags during a soak.
func BenchmarkDrainOutbox(b *testing.B) {
	const batch, fill = 256, 100_000
	ctx := context.Background()
	s := openDir(b, storage.Config{Dir: b.TempDir(), VaultKey: newKey(), MaxOutbox: 1 << 40})
	data := make([]byte, 300)
	n := 0
	refill := func() {
		recs := make([]storage.Record, 0, 100)
		for range fill / 100 {
			recs = recs[:0]
			for range 100 {
				n++
				id := fmt.Sprintf("%012d", n)
				recs = append(recs, storage.Record{
					Site: "bench", ID: id, Time: base.Add(time.Duration(n) * time.Millisecond),
					Type: "track", Subject: "subj", Dedup: []byte(id), Data: data,
					Topic: "vigie.events.bench.track",
				})
			}
			if _, err := s.Append(ctx, recs); err != nil {
				b.Fatal(err)
			}
		}
	}
	var cursor []byte
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		items, err := s.OutboxAfter(ctx, cursor, batch)
		if err != nil {
			b.Fatal(err)
		}
		if len(items) < batch {
			b.StopTimer()
			refill()
			b.StartTimer()
			continue
		}
		keys := make([][]byte, len(items))
		for i, it := range items {
			keys[i] = it.Key
		}
		if err := s.AckOutbox(keys); err != nil {
			b.Fatal(err)
		}
		cursor = keys[len(keys)-1]
	}
}
