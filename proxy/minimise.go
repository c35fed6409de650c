package proxy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/plugins/geoip/geodb"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/preflight"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/sdk"
)

// geoIPPollInterval is how often ingestion's GeoIP files are checked for
// changes.
const geoIPPollInterval = 5 * time.Second

// pipelineSite is the pipeline's configuration of site sc: its consent
// policy, scrubbing lists, and what anonymous and pseudonymous events may
// keep there.
func pipelineSite(sc config.Site) (pipeline.SiteConfig, error) {
	pol, err := sc.Policy()
	if err != nil {
		return pipeline.SiteConfig{}, err
	}
	rot, err := pseudonymize.ParseRotation(sc.Consent.PseudonymRotation)
	if err != nil {
		return pipeline.SiteConfig{}, fmt.Errorf("%w: site %s: consent.pseudonym_rotation: %w", config.ErrInvalid, sc.ID, err)
	}
	sens, err := sc.SensitivePolicy()
	if err != nil {
		return pipeline.SiteConfig{}, err
	}
	return pipeline.SiteConfig{
		ID: sc.ID, Policy: pol, Sensitive: &sens,
		AllowParams: sc.AllowParams, ClickIDParams: sc.ClickIDParams, PIIKeys: sc.PIIKeys,
		ExportClickIDs:  sc.ExportClickIDs,
		Rotation:        rot,
		CNILExempt:      sc.CNILExempt(),
		TimeGranularity: time.Duration(sc.Anonymous.TimeGranularity),
		Region:          sc.Anonymous.Region,
		IDPathPatterns:  sc.Anonymous.IDPathPatterns,
	}, nil
}

// openGeoIP opens ingestion's GeoIP database (geoip.database), nil when
// none is configured.
func (s *Server) openGeoIP() (*geodb.DB, error) {
	g := s.cfg.GeoIP
	if g.Database == "" {
		return nil, nil
	}
	db, err := geodb.Open(g.Database, g.IPv6Database)
	if err != nil {
		return nil, fmt.Errorf("proxy: geoip.database: %w", err)
	}
	for _, f := range db.Files() {
		s.log.Info("GeoIP database loaded for anonymous events", "path", f.Path(), "database", f.Describe())
	}
	return db, nil
}

// consentLifetimes is each site's consent.cookie_lifetime, for the ledger.
func (s *Server) consentLifetimes() map[string]time.Duration {
	out := make(map[string]time.Duration, len(s.cfg.Sites))
	for _, sc := range s.cfg.Sites {
		out[sc.ID] = sc.CookieLifetime()
	}
	return out
}

// isBuiltinGeoIP reports the built-in geoip plugin.
func (s *Server) isBuiltinGeoIP(p config.Plugin) bool { return p.BuiltinName() == "geoip" }

// pluginConfig is the configuration section passed to plugin p: its own,
// and for the built-in geoip plugin without a database of its own, the
// top-level geoip database, so that both use one file.
func (s *Server) pluginConfig(p config.Plugin) map[string]any {
	if !s.isBuiltinGeoIP(p) || s.cfg.GeoIP.Database == "" {
		return p.Config
	}
	if db, _ := p.Config["database"].(string); db != "" {
		return p.Config
	}
	out := maps.Clone(p.Config)
	if out == nil {
		out = map[string]any{}
	}
	out["database"] = s.cfg.GeoIP.Database
	if s.cfg.GeoIP.IPv6Database != "" {
		out["ipv6_database"] = s.cfg.GeoIP.IPv6Database
	}
	return out
}

// checkManifestForSites refuses, at each start of a plugin, a plugin that
// could receive identifiers of a site in CNIL exemption mode: an external
// plugin, a syncer or a plugin asking for contacts or profiles whose
// manifest's filter admits the site. The built-in geoip and segments
// plugins may run (the first reads only the truncated prefix, the second
// gets only events granting a profile purpose, never granted there).
func (s *Server) checkManifestForSites(spec plugins.Spec, m sdk.Manifest) error {
	var sites []string
	for _, sc := range s.cfg.Sites {
		if sc.CNILExempt() && filterAdmits(m.Filter.Sites, sc.ID) {
			sites = append(sites, sc.ID)
		}
	}
	if len(sites) == 0 {
		return nil
	}
	safe := spec.Path == "" && (spec.Name == "geoip" || spec.Name == "segments") &&
		!slices.Contains(m.Kinds, sdk.KindSyncer) && !m.Has(sdk.CapContactsResolve) && !m.Has(sdk.CapProfilesRead)
	if safe {
		return nil
	}
	return fmt.Errorf("%q could receive identifiers of site %s, which runs in cnil_exempt mode: leave the site out of the plugin's filter.sites, or run the site in standard mode",
		spec.Name, strings.Join(sites, ", "))
}

// filterAdmits reports whether a manifest's site patterns (exact, or a
// prefix ending in '*'; none: every site) admit site.
func filterAdmits(patterns []string, site string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if p == site || strings.HasSuffix(p, "*") && strings.HasPrefix(site, p[:len(p)-1]) {
			return true
		}
	}
	return false
}

// cnilReport is the rows of vigie check for the sites in CNIL exemption
// mode: one per condition of the exemption (config.CNILConditions), as
// Matomo's CNIL policy check reports them. A condition only the plugins'
// manifests can decide warns (it is checked again when they start), and so
// does one Vigie cannot check at all.
func cnilReport(cfg config.Config) preflight.Report {
	var rep preflight.Report
	for _, sc := range cfg.Sites {
		if !sc.CNILExempt() {
			continue
		}
		for _, c := range cfg.CNILConditions(sc) {
			row := preflight.Result{Name: "cnil_exempt " + sc.ID + ": " + c.Name, Status: preflight.Pass, Detail: c.Detail}
			switch {
			case !c.Met:
				row.Status = preflight.Fail
			case c.AtStart, c.Manual:
				row.Status = preflight.Warn
			}
			rep = append(rep, row)
		}
	}
	return rep
}
