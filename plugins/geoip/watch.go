package geoip

import (
	"context"
	"os"
	"sync/atomic"
	"time"
)

// source is one database file and the reader last loaded from it.
type source struct {
	path string
	cur  atomic.Pointer[db]

	// Used only by the watcher goroutine.
	loaded  stamp // version of the file cur was read from (or failed on)
	pending stamp // a changed version seen once, loaded when seen again
	missing bool  // the file was missing at the last poll (logged once)
}

// openSource opens the database at path.
func openSource(path string) (*source, error) {
	r, st, err := openDB(path)
	if err != nil {
		return nil, err
	}
	s := &source{path: path, loaded: st}
	s.cur.Store(newDB(r))
	return s, nil
}

// current returns the database in use.
func (s *source) current() *db {
	return s.cur.Load()
}

// watch polls the sources every e.pollInterval until ctx ends, then
// closes done.
func (e *Enricher) watch(ctx context.Context, sources []*source, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(e.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, s := range sources {
				e.poll(s)
			}
		}
	}
}

// poll reloads s when its file changed and then stayed unchanged for one
// poll interval (so a file being written is not read half-way). A failed
// reload keeps the reader in use and is not retried until the file
// changes again.
func (e *Enricher) poll(s *source) {
	fi, err := os.Stat(s.path)
	if err != nil {
		if !s.missing {
			e.log.Warn("GeoIP database file unavailable; keeping the loaded one", "path", s.path, "err", err)
			s.missing = true
		}
		return
	}
	s.missing = false
	now := stamp{modNs: fi.ModTime().UnixNano(), size: fi.Size()}
	if now == s.loaded {
		s.pending = stamp{}
		return
	}
	if now != s.pending {
		s.pending = now
		return
	}
	r, st, err := openDB(s.path)
	s.loaded, s.pending = st, stamp{}
	if err != nil {
		if st == (stamp{}) {
			s.loaded = now
		}
		e.log.Error("GeoIP database reload failed; keeping the previous one", "path", s.path, "err", err)
		return
	}
	s.cur.Store(newDB(r))
	e.log.Info("GeoIP database reloaded", "path", s.path, "database", r.describe())
}
