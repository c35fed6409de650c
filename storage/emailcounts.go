package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// EmailCount is one counter of anonymous e-mail hits: opens or clicks of a
// campaign's link by one class of client (human, privacy_proxy, scanner,
// unknown) within one hour. An e-mail hit that may not be attributed to
// its recipient is only counted, never stored as an event: a campaign sent
// to one person does not become that person's trail.
type EmailCount struct {
	// Site and Campaign name the campaign; no \x00.
	Site, Campaign string
	// Kind is "open" or "click".
	Kind string
	// Class is the machine/human class of the hits; no \x00.
	Class string
	// Link is the scrubbed link (clicks), "" for opens.
	Link string
	// Hour is the hour the hits arrived in (rounded down, UTC).
	Hour time.Time
	// N is the number of hits (read side).
	N int64
	// TTL is how long the counter is kept after its hour (the anonymous
	// retention); 0 keeps it forever (write side).
	TTL time.Duration
}

// maxEmailLinkLen bounds an EmailCount's link (far below Badger's key
// limit).
const maxEmailLinkLen = 8 << 10

// Kinds of EmailCount.
const (
	EmailOpen  = "open"
	EmailClick = "click"
)

// valid checks c's key parts.
func (c *EmailCount) valid() error {
	if c.Site == "" || c.Hour.IsZero() {
		return fmt.Errorf("%w: e-mail count without site or hour", ErrInvalidRecord)
	}
	if c.Kind != EmailOpen && c.Kind != EmailClick {
		return fmt.Errorf("%w: e-mail count kind %q", ErrInvalidRecord, c.Kind)
	}
	for _, part := range []string{c.Site, c.Campaign, c.Class} {
		if len(part) > maxNameLen || strings.IndexByte(part, 0) >= 0 {
			return fmt.Errorf("%w: e-mail count site, campaign or class too long or contains NUL", ErrInvalidKey)
		}
	}
	if len(c.Link) > maxEmailLinkLen {
		return fmt.Errorf("%w: e-mail count link too long", ErrInvalidKey)
	}
	return nil
}

// CountEmail adds one hit to c's counter (c.Hour is rounded down to the
// hour). The counter expires c.TTL after its hour. Like Append it
// answers ErrDiskFull while the disk is full. Increments are serialized
// with every other write that goes through the outbox lock, so none is
// lost.
func (s *Store) CountEmail(ctx context.Context, c EmailCount) error {
	c.Hour = c.Hour.UTC().Truncate(time.Hour)
	if err := c.valid(); err != nil {
		return err
	}
	key := appendEmailCountKey(nil, &c)
	return s.update(ctx, "count e-mail", nil, len(key)+8+entryOverhead, func(txn *badger.Txn) error {
		var n uint64
		item, err := txn.Get(key)
		switch {
		case err == nil:
			if err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("%w: e-mail count of %d bytes", ErrCorrupt, len(v))
				}
				n = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return err
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		e := badger.NewEntry(key, binary.BigEndian.AppendUint64(nil, n+1))
		if c.TTL > 0 {
			e.ExpiresAt = uint64(c.Hour.Add(c.TTL).Unix())
		}
		return txn.SetEntry(e)
	})
}

// EmailCounts returns the counters of site (of one campaign when campaign
// is not empty), by campaign, then hour, kind, class and link.
func (s *Store) EmailCounts(ctx context.Context, site, campaign string) ([]EmailCount, error) {
	if site == "" || strings.IndexByte(site, 0) >= 0 || strings.IndexByte(campaign, 0) >= 0 {
		return nil, fmt.Errorf("%w: e-mail counts: site or campaign", ErrInvalidKey)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []EmailCount
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = emailCountPrefix(site, campaign)
		it := txn.NewIterator(opts)
		defer it.Close()
		i := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if i++; i%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			c, ok := parseEmailCountKey(it.Item().Key())
			if !ok || c.Site != site {
				continue
			}
			if err := it.Item().Value(func(v []byte) error {
				if len(v) == 8 {
					c.N = int64(binary.BigEndian.Uint64(v))
				}
				return nil
			}); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: e-mail counts: %w", err)
	}
	return out, nil
}
