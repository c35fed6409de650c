package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// SensitiveCount is how many events of a site, on one UTC day, had a
// special category of data detected in one layer, with a few redacted
// examples (proxy/sensitive names the categories and layers; storage only
// keeps them). It names no subject and no value.
type SensitiveCount struct {
	Site string `json:"site"`
	// Day is the UTC day's midnight.
	Day      time.Time `json:"day"`
	Category string    `json:"category"`
	Layer    string    `json:"layer"`
	Count    uint64    `json:"count"`
	// Examples are at most MaxSensitiveExamples distinct examples.
	Examples []SensitiveExample `json:"examples,omitempty"`
}

// SensitiveExample is a redacted example of a detection.
type SensitiveExample struct {
	// Field is where (a property or trait name, page.path, page.title).
	Field string `json:"field"`
	// Pattern is the sensitive_paths pattern, if one matched.
	Pattern string `json:"pattern,omitempty"`
	// Example is the redacted text (matches replaced by their markers).
	Example string `json:"example,omitempty"`
}

// MaxSensitiveExamples bounds the examples kept per site, day, category
// and layer.
const MaxSensitiveExamples = 5

// maxSensitiveText bounds the texts of a count.
const maxSensitiveText = 255

// sensitiveValue is a count as stored (the rest is in the key).
type sensitiveValue struct {
	N  uint64             `json:"n"`
	Ex []SensitiveExample `json:"ex,omitempty"`
}

// dayOf is the UTC midnight of t.
func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// AddSensitive adds counts (their Day is truncated to the UTC day) to the
// stored ones, keeping the first MaxSensitiveExamples distinct examples of
// each. Each entry expires ttl after the end of its day (ttl 0: never):
// the caller gives the anonymous retention. Counts of the same key in one
// call are merged.
func (s *Store) AddSensitive(ctx context.Context, counts []SensitiveCount, ttl time.Duration) error {
	if len(counts) == 0 {
		return nil
	}
	size := 0
	for i := range counts {
		c := &counts[i]
		if c.Site == "" || c.Category == "" || c.Layer == "" {
			return fmt.Errorf("%w: sensitive count needs a site, a category and a layer", ErrInvalidRecord)
		}
		texts := []string{c.Category, c.Layer}
		for _, e := range c.Examples {
			texts = append(texts, e.Field, e.Pattern, e.Example)
		}
		if err := validName("site", c.Site); err != nil {
			return err
		}
		for _, t := range texts {
			if len(t) > maxSensitiveText || strings.IndexByte(t, 0) >= 0 {
				return fmt.Errorf("%w: sensitive count text longer than %d bytes or with NUL", ErrInvalidRecord, maxSensitiveText)
			}
		}
		size += len(c.Site) + len(c.Category) + len(c.Layer) + 64*(1+len(c.Examples)) + entryOverhead
	}
	return s.update(ctx, "sensitive counts", nil, size, func(txn *badger.Txn) error {
		pending := map[string]*sensitiveValue{}
		expires := map[string]time.Time{}
		var order []string
		for _, c := range counts {
			day := dayOf(c.Day)
			key := string(sensitiveKey(c.Site, uint64(day.UnixMilli()), c.Category, c.Layer))
			v, ok := pending[key]
			if !ok {
				v = &sensitiveValue{}
				item, err := txn.Get([]byte(key))
				switch {
				case errors.Is(err, badger.ErrKeyNotFound):
				case err != nil:
					return err
				default:
					if err := item.Value(func(b []byte) error { return json.Unmarshal(b, v) }); err != nil {
						s.log.Warn("storage: replacing an undecodable sensitive count")
						*v = sensitiveValue{}
					}
				}
				pending[key], expires[key] = v, day.Add(24*time.Hour+ttl)
				order = append(order, key)
			}
			v.N += c.Count
			for _, e := range c.Examples {
				if len(v.Ex) < MaxSensitiveExamples && !slices.Contains(v.Ex, e) {
					v.Ex = append(v.Ex, e)
				}
			}
		}
		for _, key := range order {
			b, err := json.Marshal(pending[key])
			if err != nil {
				return err
			}
			ent := badger.NewEntry([]byte(key), b)
			if ttl > 0 {
				ent.ExpiresAt = uint64(max(expires[key].Unix(), 1))
			}
			if err := txn.SetEntry(ent); err != nil {
				return err
			}
		}
		return nil
	})
}

// SensitiveCounts returns the counts of site ("" for every site) for the
// UTC days that overlap [from, to) (zero times: unbounded), ordered by
// site, day, category and layer.
func (s *Store) SensitiveCounts(ctx context.Context, site string, from, to time.Time) ([]SensitiveCount, error) {
	if err := validName("site", site); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	prefix := sensitiveSitePrefix(site)
	var out []SensitiveCount
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		start := prefix
		if site != "" && !from.IsZero() {
			start = sensitiveKey(site, uint64(max(dayOf(from).UnixMilli(), 0)), "", "")
		}
		steps := 0
		for it.Seek(start); it.Valid(); it.Next() {
			if steps++; steps%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			st, dayMs, cat, layer, ok := parseSensitiveKey(it.Item().Key())
			if !ok {
				continue
			}
			day := time.UnixMilli(int64(dayMs)).UTC()
			if !from.IsZero() && !day.Add(24*time.Hour).After(from) {
				continue
			}
			if !to.IsZero() && !day.Before(to) {
				if site != "" {
					break
				}
				continue
			}
			var v sensitiveValue
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
				s.log.Warn("storage: skipping an undecodable sensitive count")
				continue
			}
			out = append(out, SensitiveCount{Site: st, Day: day, Category: cat, Layer: layer, Count: v.N, Examples: v.Ex})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: sensitive counts: %w", err)
	}
	return out, nil
}

// SensitiveReport is the DPO's view of the special categories of data
// detected on a site: counts per category and layer with redacted
// examples (field names, path patterns, texts with the matches replaced
// by markers), never a value or a visitor.
type SensitiveReport struct {
	Site string `json:"site"`
	// From and To are the period asked for (zero: unbounded), by UTC day.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Total counts detections (an event counts once per category and
	// layer it was detected in).
	Total uint64 `json:"total"`
	// Categories has one row per category, detected or not, with the
	// site's action.
	Categories []SensitiveCategoryRow `json:"categories"`
	// Detections are the counts per category and layer over the period.
	Detections []SensitiveDetection `json:"detections"`
	// Days are the counts per day, category and layer.
	Days []SensitiveDay `json:"days"`
}

// SensitiveCategoryRow is one category of a SensitiveReport.
type SensitiveCategoryRow struct {
	Category string `json:"category"`
	Label    string `json:"label"`
	Article  string `json:"article"`
	Action   string `json:"action"`
	Total    uint64 `json:"total"`
	// Layers counts per layer (names, values, page, sensitive_paths).
	Layers map[string]uint64 `json:"layers"`
}

// SensitiveDetection is a category × layer cell of a SensitiveReport.
type SensitiveDetection struct {
	Category string             `json:"category"`
	Layer    string             `json:"layer"`
	Count    uint64             `json:"count"`
	Examples []SensitiveExample `json:"examples"`
}

// SensitiveDay is a day × category × layer count.
type SensitiveDay struct {
	Day      string `json:"day"`
	Category string `json:"category"`
	Layer    string `json:"layer"`
	Count    uint64 `json:"count"`
}
