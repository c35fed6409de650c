package rollup

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/vigie-dev/vigie/storage"
)

// DefaultRetention is how long rollups are kept after the end of their hour
// or day by default: 761 days, 25 months of 30.44 days, so that a month
// can still be compared with the same month a year earlier for a year.
const DefaultRetention = 761 * 24 * time.Hour

// Defaults of Config.
const (
	defaultTopK       = 500
	defaultTopN       = 10
	maxTopK           = 10_000
	defaultCacheBytes = 64 << 20
)

// Config configures New. The zero value of every optional field selects the
// documented default.
type Config struct {
	// Store holds the rollups. Required.
	Store *storage.Store
	// Retention is how long a bucket is kept after its hour or day ends (a
	// Badger TTL fixed by the period, not refreshed by rewrites); events
	// older than that are not counted. Default DefaultRetention. This is
	// the configuration's rollup_retention.
	Retention time.Duration
	// TopK is how many values of each dimension (pages, sources…) a stored
	// bucket keeps; the others are summed in an "other" count. Default
	// 500, at most 10 000.
	TopK int
	// TopN is how many entries each top list of an Overview has. Default
	// 10, at most TopK.
	TopN int
	// SiteHosts lists, per site id, the site's own host names (e.g.
	// "shop.example"; a "www." prefix and a port are ignored). A page view
	// whose referrer is one of them is not a visit (see README.md). Hosts
	// of the page URLs of a site's pseudonymous events are learned too.
	SiteHosts map[string][]string
	// CacheBytes bounds the memory of the decoded closed buckets that
	// queries keep (approximately: twice the encoded size per bucket).
	// Default 64 MiB.
	CacheBytes int64
	// Peers, in cluster mode, are the other nodes' decision counters,
	// added to this store's in an Overview. Default nil: this store's only.
	Peers *PeerDecisions
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives warnings (a corrupt bucket replaced). Default
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults validates cfg and fills its defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Store == nil {
		return cfg, fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	}
	if cfg.Retention < 0 || cfg.TopK < 0 || cfg.TopN < 0 || cfg.CacheBytes < 0 {
		return cfg, fmt.Errorf("%w: negative Retention, TopK, TopN or CacheBytes", ErrInvalidConfig)
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Retention < time.Hour {
		return cfg, fmt.Errorf("%w: Retention below one hour", ErrInvalidConfig)
	}
	if cfg.TopK == 0 {
		cfg.TopK = defaultTopK
	}
	if cfg.TopK > maxTopK {
		return cfg, fmt.Errorf("%w: TopK above %d", ErrInvalidConfig, maxTopK)
	}
	if cfg.TopN == 0 {
		cfg.TopN = min(defaultTopN, cfg.TopK)
	}
	if cfg.TopN > cfg.TopK {
		return cfg, fmt.Errorf("%w: TopN above TopK", ErrInvalidConfig)
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = defaultCacheBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
