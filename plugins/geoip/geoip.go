// Package geoip is Vigie's built-in GeoIP enricher. It adds an event's
// country, region, city, continent and time zone (and the postal code
// when configured, never coordinates) from a MaxMind-format database,
// looking up only the truncated address the pipeline kept in ip_prefix
// (the network address of an IPv4 /24 or IPv6 /48).
//
// Because it only ever sees that truncated prefix, which the pipeline
// keeps for every event consent lets through, the plugin declares no
// purpose: it receives every event. It declares no host capability either.
//
// Supported databases: those of package geodb (the reader ingestion
// shares): the GeoIP2 schema (MaxMind GeoLite2/GeoIP2 City or Country,
// DB-IP Lite City or Country) and the flat schema of the ip-location-db
// project, which splits IPv4 and IPv6 into two files (set Database and
// IPv6Database). A database file that changes on disk is reloaded without
// dropping events. With no database configured the plugin says so once
// and passes events through unchanged. Vigie passes the top-level
// geoip.database to the built-in when its own config names none.
//
// Built-ins run as separate processes: Main serves the plugin, and the
// vigie binary re-executes itself into it.
package geoip

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigie-dev/vigie/plugins/geoip/geodb"
	"github.com/vigie-dev/vigie/sdk"
)

// Version is the plugin's version, reported in its manifest.
const Version = "0.1.0"

// defaultPollInterval is how often database files are checked for changes.
const defaultPollInterval = 5 * time.Second

// configSchema is the JSON Schema of Config.
const configSchema = `{"type":"object","additionalProperties":false,"properties":{` +
	`"database":{"type":"string","description":"path of a .mmdb City or Country database"},` +
	`"ipv6_database":{"type":"string","description":"second .mmdb file, for databases split by address family"},` +
	`"postal":{"type":"boolean","description":"add the postal code","default":false}}}`

// Config is the plugin's configuration section (JSON). Every field has a
// default.
type Config struct {
	// Database is the path of a MaxMind-format (.mmdb) City or Country
	// database. Default: none, events pass through unchanged.
	Database string `json:"database"`
	// IPv6Database is an optional second file, consulted after Database
	// for addresses Database has no entry for; for databases shipped as
	// one IPv4 and one IPv6 file (ip-location-db). Default: none.
	IPv6Database string `json:"ipv6_database"`
	// Postal adds the postal code. Default: false.
	Postal bool `json:"postal"`
}

// Enricher is the GeoIP enricher. The zero value is not usable; use New.
// Its methods are safe for concurrent use.
type Enricher struct {
	log          *slog.Logger
	pollInterval time.Duration

	state  atomic.Pointer[state]
	noDB   sync.Once
	mu     sync.Mutex // serializes Configure and Close
	cancel context.CancelFunc
	done   chan struct{}
}

// state is one configuration with its opened databases.
type state struct {
	postal bool
	db     *geodb.DB
}

// New returns an Enricher with no database: it passes events through
// until Configure names one.
func New() *Enricher {
	return &Enricher{log: slog.Default(), pollInterval: defaultPollInterval}
}

// Configure applies the plugin's configuration section (JSON; nil keeps
// the defaults). Configured databases are opened now, and an unreadable
// or unsupported file is an error (ErrDatabase); unknown fields are an
// error (ErrConfig). Files are then watched and reloaded when they change.
func (e *Enricher) Configure(_ context.Context, raw []byte) error {
	var cfg Config
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if cfg.Database == "" && cfg.IPv6Database != "" {
		return fmt.Errorf("%w: ipv6_database is set but database is not", ErrConfig)
	}
	db, err := geodb.Open(cfg.Database, cfg.IPv6Database)
	if err != nil {
		return err
	}
	for _, f := range db.Files() {
		e.log.Info("GeoIP database loaded", "path", f.Path(), "database", f.Describe())
	}
	st := &state{postal: cfg.Postal, db: db}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopLocked()
	e.state.Store(st)
	if len(db.Files()) == 0 {
		e.sayNoDB()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	e.cancel, e.done = cancel, done
	go func() {
		defer close(done)
		db.Watch(ctx, e.pollInterval, e.log)
	}()
	return nil
}

// Close stops watching the database files. Enrich keeps working with the
// databases loaded last.
func (e *Enricher) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopLocked()
	return nil
}

// stopLocked stops the watcher, if any; e.mu is held.
func (e *Enricher) stopLocked() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
		e.cancel, e.done = nil, nil
	}
}

// sayNoDB logs, once per Enricher, that there is no database.
func (e *Enricher) sayNoDB() {
	e.noDB.Do(func() { e.log.Info("no GeoIP database configured; events pass through") })
}

// PassThrough reports whether no database is configured: Enrich would
// return every event unchanged, so the host need not call it
// (sdk.PassThrougher). A configured database that later fails to reload
// keeps the one loaded last, so this does not change until Configure.
func (e *Enricher) PassThrough() bool {
	st := e.state.Load()
	return st == nil || len(st.db.Files()) == 0
}

// Enrich sets Geo on each event whose ip_prefix the database has an entry
// for and returns the batch. Events without ip_prefix, or with one the
// database does not know, are returned unchanged; a record the database
// cannot decode leaves its event unchanged and is logged (count and error
// type only: lookup errors may quote the address), so one bad record never
// fails a batch.
func (e *Enricher) Enrich(ctx context.Context, events []*sdk.Event) ([]*sdk.Event, error) {
	st := e.state.Load()
	if st == nil || len(st.db.Files()) == 0 {
		e.sayNoDB()
		return events, nil
	}
	var (
		rec     geodb.Record
		failed  int
		lastErr error
	)
	for _, ev := range events {
		addr, ok := geodb.LookupAddr(ev.GetIpPrefix())
		if !ok {
			continue
		}
		found, err := st.db.Lookup(addr, &rec)
		switch {
		case found:
			ev.Geo = rec.Geo(st.postal)
		case err != nil:
			failed, lastErr = failed+1, err
		}
	}
	if failed > 0 {
		e.log.LogAttrs(ctx, slog.LevelWarn, "GeoIP lookups failed; events passed through",
			slog.Int("failed", failed), slog.Int("batch", len(events)), slog.String("err_type", fmt.Sprintf("%T", lastErr)))
	}
	return events, nil
}

// Plugin returns the plugin's manifest and hooks, served by Main.
func Plugin() sdk.Plugin {
	return pluginFor(New())
}

// pluginFor describes e as a plugin.
func pluginFor(e *Enricher) sdk.Plugin {
	return sdk.Plugin{
		Manifest: sdk.Manifest{
			Name:         "geoip",
			Version:      Version,
			Description:  "Adds country, region, city, continent and time zone from the truncated IP address.",
			ConfigSchema: []byte(configSchema),
		},
		Configurer: e,
		Enricher:   e,
	}
}

// Main serves the plugin; it does not return. The vigie binary calls it
// when re-executed as the geoip plugin.
func Main() {
	sdk.Serve(Plugin())
}
