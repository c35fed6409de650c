// Package geodb reads GeoIP databases in memory for Vigie: the GeoIP2
// schema (MaxMind GeoLite2/GeoIP2 City or Country, DB-IP Lite City or
// Country, through geoip2-golang) and the flat schema of the
// ip-location-db project (through maxminddb-golang), which splits IPv4 and
// IPv6 into two files. Files are read whole (never memory-mapped), so a
// file replaced on disk can be reloaded while lookups go on; lookups are
// cached per database version.
//
// Two users share it: the GeoIP enricher plugin (package geoip, which
// looks up events' truncated ip_prefix), and ingestion (package pipeline),
// which resolves the country of anonymous events in memory and keeps only
// that. Lookups are by network address, never finer than /24 or /48
// (LookupAddr).
package geodb

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// DB is one or more database files looked up in order (the second, say,
// an ip-location-db IPv6 file). Safe for concurrent lookups.
type DB struct {
	files []*File
}

// Open opens the database files at paths (empty paths skipped); a DB with
// no file finds nothing. An unreadable or unsupported file is an error
// wrapping ErrDatabase.
func Open(paths ...string) (*DB, error) {
	d := &DB{}
	for _, p := range paths {
		if p == "" {
			continue
		}
		f, err := OpenFile(p)
		if err != nil {
			return nil, err
		}
		d.files = append(d.files, f)
	}
	return d, nil
}

// Files are the opened files, in lookup order.
func (d *DB) Files() []*File { return d.files }

// Lookup fills rec from the first file that has data for addr. A file
// whose lookup fails is skipped; its error is returned only when no later
// file has data (errors may quote the address: never log them as they are).
func (d *DB) Lookup(addr netip.Addr, rec *Record) (found bool, err error) {
	for _, f := range d.files {
		ok, ferr := f.Lookup(addr, rec)
		if ferr != nil {
			err = ferr
			continue
		}
		if ok {
			return true, nil
		}
	}
	return false, err
}

// Watch polls every file every interval (File.Poll) until ctx ends.
func (d *DB) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if len(d.files) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, f := range d.files {
				f.Poll(log)
			}
		}
	}
}
