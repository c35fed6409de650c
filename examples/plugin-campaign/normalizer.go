package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// KV layout (the store is scoped to this plugin by Vigie).
const (
	// countPrefix + source holds the number of events seen with that
	// canonical source, in decimal.
	countPrefix = "count/"
	// reportedPrefix + source marks an unknown source already logged.
	reportedPrefix = "reported/"
	// reportTTL is how long an unknown source stays reported: it is
	// logged again at most once a day.
	reportTTL = 24 * time.Hour
	// maxKeySource bounds the part of a source used in keys and logs.
	maxKeySource = 64
)

// Config is the plugin's configuration section, given to Configure as JSON:
//
//	{"sources": {"alias": "canonical"}, "mediums": {...}, "infer_from_referrer": true}
//
// Every field has a default. Keys and values are trimmed and lower-cased.
type Config struct {
	// Sources maps source aliases to canonical sources, over the built-in
	// table: an entry for a built-in alias replaces it, and renaming a
	// canonical source ("facebook": "meta") renames its aliases too.
	// Default: none, the built-in table only.
	Sources map[string]string `json:"sources"`
	// Mediums does the same for mediums. Default: none.
	Mediums map[string]string `json:"mediums"`
	// InferFromReferrer gives an event with no campaign source but the
	// referrer host of a known search engine or social network that
	// source, and medium "organic" or "social" when it has no medium, as
	// Google Analytics' default channel grouping does. Default: false.
	InferFromReferrer bool `json:"infer_from_referrer"`
}

// Normalizer is the plugin's enricher. Configure may be called at any
// time; its methods are safe for concurrent use.
type Normalizer struct {
	tables atomic.Pointer[tables]
}

// tables is one configuration, ready for lookups. It is never modified
// once built.
type tables struct {
	sources map[string]string // alias → canonical; canonical → itself
	mediums map[string]string
	infer   bool
}

// New returns a Normalizer configured with cfg.
func New(cfg Config) (*Normalizer, error) {
	t, err := newTables(cfg)
	if err != nil {
		return nil, err
	}
	n := &Normalizer{}
	n.tables.Store(t)
	return n, nil
}

// newTables validates cfg and builds its lookup tables.
func newTables(cfg Config) (*tables, error) {
	src, err := normalizeAliases("sources", cfg.Sources)
	if err != nil {
		return nil, err
	}
	med, err := normalizeAliases("mediums", cfg.Mediums)
	if err != nil {
		return nil, err
	}
	t := &tables{infer: cfg.InferFromReferrer}
	if t.sources, err = buildSources(src); err != nil {
		return nil, err
	}
	if t.mediums, err = buildMediums(med); err != nil {
		return nil, err
	}
	return t, nil
}

// normalizeAliases trims and lower-cases the aliases of one table section.
func normalizeAliases(section string, in map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		nk, nv := normalize(k), normalize(v)
		if nk == "" || nv == "" {
			return nil, fmt.Errorf("%w: %s: empty alias or canonical name", ErrConfig, section)
		}
		if prev, ok := out[nk]; ok && prev != nv {
			return nil, fmt.Errorf("%w: %s: %q is given twice with different names", ErrConfig, section, nk)
		}
		out[nk] = nv
	}
	return out, nil
}

// Configure applies the plugin's configuration section (JSON; nil or null
// keeps the defaults). Invalid JSON, unknown fields, empty names,
// conflicting duplicates and alias cycles are errors wrapping ErrConfig.
func (n *Normalizer) Configure(_ context.Context, raw []byte) error {
	var cfg Config
	if len(bytes.TrimSpace(raw)) > 0 {
		if !json.Valid(raw) {
			return fmt.Errorf("%w: not valid JSON", ErrConfig)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	t, err := newTables(cfg)
	if err != nil {
		return err
	}
	n.tables.Store(t)
	return nil
}

// Enrich normalizes the campaign of each event in place and returns the
// batch. Then, through the host's key-value store, it adds the batch's
// events to the counter of each canonical source ("count/<source>") and
// logs each source the tables do not know, once a day.
//
// The counters are a read-modify-write, which is safe because Vigie calls
// a plugin with one batch at a time; and since delivery is at least once,
// a retried batch is counted again: they are estimates. A store error
// fails the batch, which Vigie then retries.
func (n *Normalizer) Enrich(ctx context.Context, events []*sdk.Event) ([]*sdk.Event, error) {
	t := n.tables.Load()
	var counts map[string]int // canonical source → events in this batch
	var unknown map[string]struct{}
	for _, ev := range events {
		src, known := t.apply(ev)
		if src == "" {
			continue
		}
		if counts == nil {
			counts = make(map[string]int)
		}
		counts[src]++
		if !known {
			if unknown == nil {
				unknown = make(map[string]struct{})
			}
			unknown[src] = struct{}{}
		}
	}
	host := sdk.HostFrom(ctx)
	for _, src := range slices.Sorted(maps.Keys(counts)) {
		if err := addCount(ctx, host, src, counts[src]); err != nil {
			return nil, err
		}
	}
	for _, src := range slices.Sorted(maps.Keys(unknown)) {
		if err := reportOnce(ctx, host, src); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// apply normalizes ev's campaign and returns its final source ("" for
// none) and whether the tables know it.
func (t *tables) apply(ev *sdk.Event) (source string, known bool) {
	c := ev.GetCampaign()
	if c != nil {
		if m := normalize(c.GetMedium()); m != "" {
			c.Medium = t.medium(m)
		} else {
			c.Medium = ""
		}
		c.Source = normalize(c.GetSource())
	}
	if c.GetSource() != "" {
		c.Source, known = t.source(c.Source)
		return c.Source, known
	}
	if !t.infer {
		return "", false
	}
	ch, ok := matchReferrer(normalize(ev.GetPage().GetReferrerHost()))
	if !ok {
		return "", false
	}
	if c == nil {
		c = &vigiev1.Campaign{}
		ev.Campaign = c
	}
	c.Source, _ = t.source(ch.source) // a renamed canonical applies here too
	if c.Medium == "" {
		c.Medium = ch.medium
	}
	return c.Source, true
}

// source returns the canonical name of a normalized, non-empty source and
// whether it is known. A source that looks like a host name and is not in
// the table is matched like a referrer host.
func (t *tables) source(s string) (string, bool) {
	if c, ok := t.sources[s]; ok {
		return c, true
	}
	if ch, ok := matchReferrer(s); ok {
		return t.sources[ch.source], true // every referrer canonical is in the table
	}
	return s, false
}

// medium returns the canonical name of a normalized, non-empty medium.
func (t *tables) medium(m string) string {
	if c, ok := t.mediums[m]; ok {
		return c
	}
	return m
}

// addCount adds n to the counter of source.
func addCount(ctx context.Context, host sdk.Host, source string, n int) error {
	key := countPrefix + keyPart(source)
	total := 0
	switch v, err := host.KVGet(ctx, key); {
	case err == nil:
		if total, err = strconv.Atoi(string(v)); err != nil || total < 0 {
			host.Log(ctx, slog.LevelWarn, "campaign counter unreadable; restarting it from zero")
			total = 0
		}
	case !errors.Is(err, sdk.ErrNotFound):
		return fmt.Errorf("campaign-normalizer: read counter: %w", err)
	}
	if err := host.KVPut(ctx, key, strconv.AppendInt(nil, int64(total+n), 10), 0); err != nil {
		return fmt.Errorf("campaign-normalizer: write counter: %w", err)
	}
	return nil
}

// reportOnce logs an unknown source unless it was logged in the last
// reportTTL. The marker is written before the line is logged, so a store
// error never makes a retried batch log twice.
//
// Logging the source is fine: it is a campaign label, already scrubbed of
// e-mail addresses, phone numbers and tokens by Vigie's pipeline, and
// truncated here. Never log an event's ids, subject or addresses.
func reportOnce(ctx context.Context, host sdk.Host, source string) error {
	key := reportedPrefix + keyPart(source)
	switch _, err := host.KVGet(ctx, key); {
	case err == nil:
		return nil
	case !errors.Is(err, sdk.ErrNotFound):
		return fmt.Errorf("campaign-normalizer: read report marker: %w", err)
	}
	if err := host.KVPut(ctx, key, []byte{'1'}, reportTTL); err != nil {
		return fmt.Errorf("campaign-normalizer: write report marker: %w", err)
	}
	host.Log(ctx, slog.LevelInfo, "unknown campaign source; add it to the plugin's sources to map it",
		slog.String("source", keyPart(source)))
	return nil
}

// keyPart returns s cut to maxKeySource bytes on a character boundary.
func keyPart(s string) string {
	if len(s) <= maxKeySource {
		return s
	}
	cut := maxKeySource
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
