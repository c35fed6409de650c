package geodb

import (
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
)

// File is one database file and the reader last loaded from it. Its
// methods are safe for concurrent use, except Poll, which one goroutine
// calls at a time.
type File struct {
	path string
	cur  atomic.Pointer[db]

	// Used only by Poll.
	loaded  stamp // version of the file cur was read from (or failed on)
	pending stamp // a changed version seen once, loaded when seen again
	missing bool  // the file was missing at the last poll (logged once)
}

// OpenFile reads the database at path into memory. An unreadable or
// unsupported file is an error wrapping ErrDatabase.
func OpenFile(path string) (*File, error) {
	r, st, err := openDB(path)
	if err != nil {
		return nil, err
	}
	f := &File{path: path, loaded: st}
	f.cur.Store(newDB(r))
	return f, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Describe names the database in use (type and build date), for logs.
func (f *File) Describe() string { return f.cur.Load().describe() }

// Lookup fills rec for addr from the database in use and reports whether
// it has data for addr (lookups are cached per database version). An
// address of a family the database does not hold is not found, not an
// error; errors may quote the address: never log them as they are.
func (f *File) Lookup(addr netip.Addr, rec *Record) (bool, error) {
	return f.cur.Load().lookup(addr, rec)
}

// Poll reloads the file when it changed and then stayed unchanged for one
// poll (so a file being written is not read half-way). A failed reload
// keeps the reader in use and is not retried until the file changes
// again. Problems and reloads go to log (paths, never addresses).
func (f *File) Poll(log *slog.Logger) {
	fi, err := os.Stat(f.path)
	if err != nil {
		if !f.missing {
			log.Warn("GeoIP database file unavailable; keeping the loaded one", "path", f.path, "err", err)
			f.missing = true
		}
		return
	}
	f.missing = false
	now := stamp{modNs: fi.ModTime().UnixNano(), size: fi.Size()}
	if now == f.loaded {
		f.pending = stamp{}
		return
	}
	if now != f.pending {
		f.pending = now
		return
	}
	r, st, err := openDB(f.path)
	f.loaded, f.pending = st, stamp{}
	if err != nil {
		if st == (stamp{}) {
			f.loaded = now
		}
		log.Error("GeoIP database reload failed; keeping the previous one", "path", f.path, "err", err)
		return
	}
	f.cur.Store(newDB(r))
	log.Info("GeoIP database reloaded", "path", f.path, "database", r.describe())
}
