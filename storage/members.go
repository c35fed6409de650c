package storage

import (
	"context"
	"fmt"
	"slices"

	badger "github.com/dgraph-io/badger/v4"
)

// DefaultMembersScan bounds the profiles SegmentMembers reads.
const DefaultMembersScan = 100_000

// SegmentMembers returns up to limit subjects of site that are in segment,
// read from their profiles (a full decode each: a list for an admin's
// page, not a hot path); it reads at most maxScan profiles
// (DefaultMembersScan if maxScan <= 0), so a large site answers a partial
// list rather than a scan of every profile.
func (s *Store) SegmentMembers(ctx context.Context, site, segment string, limit, maxScan int) ([]string, error) {
	if site == "" {
		return nil, fmt.Errorf("%w: empty site", ErrInvalidKey)
	}
	if err := validName("site", site); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = defaultPage
	}
	limit = min(limit, maxPage)
	if maxScan <= 0 {
		maxScan = DefaultMembersScan
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	prefix := profileKey(site, "") // p/<site>\x00
	out := []string{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		scanned := 0
		for it.Rewind(); it.Valid() && len(out) < limit && scanned < maxScan; it.Next() {
			if scanned++; scanned%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			subject := string(it.Item().Key()[len(prefix):])
			var p *Profile
			err := it.Item().Value(func(v []byte) (err error) {
				p, err = decodeProfile(v, site, subject)
				return err
			})
			if err != nil {
				return err
			}
			if slices.Contains(p.Segments, segment) {
				out = append(out, subject)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: segment members: %w", err)
	}
	return out, nil
}
