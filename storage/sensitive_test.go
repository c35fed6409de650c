package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestSensitiveCounts(t *testing.T) {
	s := storagetest.Open(t)
	ctx := context.Background()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	yesterday := today.Add(-24 * time.Hour)
	ex := func(i int) storage.SensitiveExample {
		return storage.SensitiveExample{Field: fmt.Sprintf("properties.f%d", i), Example: "[health]"}
	}
	add := func(cs ...storage.SensitiveCount) {
		t.Helper()
		if err := s.AddSensitive(ctx, cs, 760*24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	add(storage.SensitiveCount{Site: "shop", Day: today.Add(3 * time.Hour), Category: "health", Layer: "names", Count: 2, Examples: []storage.SensitiveExample{ex(1)}},
		storage.SensitiveCount{Site: "shop", Day: today.Add(5 * time.Hour), Category: "health", Layer: "names", Count: 1, Examples: []storage.SensitiveExample{ex(1), ex(2)}},
		storage.SensitiveCount{Site: "shop", Day: yesterday, Category: "religion", Layer: "page", Count: 4},
		storage.SensitiveCount{Site: "blog", Day: today, Category: "health", Layer: "values", Count: 9})
	for i := range 10 {
		add(storage.SensitiveCount{Site: "shop", Day: today, Category: "health", Layer: "names", Count: 1, Examples: []storage.SensitiveExample{ex(i)}})
	}
	got, err := s.SensitiveCounts(ctx, "shop", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Category != "religion" || !got[0].Day.Equal(yesterday) || got[0].Count != 4 ||
		got[1].Category != "health" || got[1].Layer != "names" || got[1].Count != 13 || !got[1].Day.Equal(today) {
		t.Fatalf("counts: %+v", got)
	}
	if len(got[1].Examples) != storage.MaxSensitiveExamples || got[1].Examples[0] != ex(1) || got[1].Examples[1] != ex(2) {
		t.Errorf("examples: %+v", got[1].Examples)
	}
	// from/to select the days they overlap.
	if got, _ := s.SensitiveCounts(ctx, "shop", today.Add(time.Hour), time.Time{}); len(got) != 1 || got[0].Category != "health" {
		t.Errorf("from today: %+v", got)
	}
	if got, _ := s.SensitiveCounts(ctx, "shop", time.Time{}, today); len(got) != 1 || got[0].Category != "religion" {
		t.Errorf("to today: %+v", got)
	}
	if got, _ := s.SensitiveCounts(ctx, "", time.Time{}, time.Time{}); len(got) != 3 || got[0].Site != "blog" {
		t.Errorf("all sites: %+v", got)
	}
	if err := s.AddSensitive(ctx, []storage.SensitiveCount{{Site: "shop", Category: "health"}}, 0); !errors.Is(err, storage.ErrInvalidRecord) {
		t.Errorf("no layer: %v", err)
	}
}

// TestSensitiveCountsExpire: counts end with the retention given, counted
// from the end of their day.
func TestSensitiveCountsExpire(t *testing.T) {
	s := storagetest.Open(t)
	ctx := context.Background()
	old := time.Now().UTC().Add(-72 * time.Hour)
	if err := s.AddSensitive(ctx, []storage.SensitiveCount{{Site: "shop", Day: old, Category: "health", Layer: "page", Count: 1}}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSensitive(ctx, []storage.SensitiveCount{{Site: "shop", Day: time.Now(), Category: "health", Layer: "page", Count: 1}}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	got, err := s.SensitiveCounts(ctx, "shop", time.Time{}, time.Time{})
	if err != nil || len(got) != 1 || got[0].Day.Before(time.Now().Add(-25*time.Hour)) {
		t.Fatalf("%+v %v", got, err)
	}
}
