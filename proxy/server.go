// Package proxy is Vigie's HTTP edge: the Segment-compatible collect API,
// the no-JS pixel, the admin API, health and metrics, and the wiring of the
// ingestion path (decode → consent → pseudonymize → Badger → NATS).
//
// A Server follows a configure, start, stop lifecycle: New validates the
// configuration and starts nothing; Start opens the keyring, Badger and NATS,
// starts the outbox publisher and the listener; Shutdown stops accepting,
// finishes in-flight requests, flushes the outbox and closes everything.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/plugins/segments"
	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/bus"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/console"
	"github.com/vigie-dev/vigie/proxy/email"
	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/proxy/keyring"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/proxy/privacy"
	"github.com/vigie-dev/vigie/proxy/pseudonymize"
	"github.com/vigie-dev/vigie/proxy/reaction"
	"github.com/vigie-dev/vigie/storage"
)

// answerTimeout is how long a request may take to be stored and answered
// once its body is read.
const answerTimeout = 30 * time.Second

// Version is the build's version, set with -ldflags "-X github.com/vigie-dev/vigie/proxy.Version=…".
var Version = "0.1.0-dev"

// ErrNotStarted is returned by calls that need a started server.
var ErrNotStarted = errors.New("proxy: server not started")

// site is a configured site at run time.
type site struct {
	cfg     config.Site
	origins []originPattern
	pipe    *pipeline.Site
	// stored: added at run time (console, vigie sites add), kept in Badger.
	stored  bool
	created time.Time
}

// Server is a Vigie instance.
type Server struct {
	cfg config.Config
	log *slog.Logger

	dirLock    *dirLock
	keyring    *keyring.Keyring
	firstStart bool
	store      *storage.Store
	bus        *bus.Bus
	pub        *bus.Publisher
	plugins    *plugins.Runtime
	ledger     *ledger.Ledger
	privacy    *privacy.Service
	imports    *imports.Service
	// importCallsStop stops answering, in cluster mode, the calls other
	// nodes pass on for this node's import jobs.
	importCallsStop func()
	blind           *blind.Index
	// segmentDefs are the segments of the built-in segments plugin,
	// compiled once by New.
	segmentDefs []segments.SegmentInfo
	// configured is what each built-in plugin's configuration adds to its
	// manifest (a CRM destination's purposes), by plugin name.
	configured  map[string]builtin.Configured
	email       *email.Handler
	emailSigner *email.Signer
	// dedup is the cluster's shared messageId dedup (nil: a single node).
	dedup *cluster.Dedup
	// members is the cluster's membership (nil: a single node).
	members *cluster.Membership
	leases  *cluster.Leases // cluster mode: this node's segmentation partitions
	// profileBus is s.bus once started, for the store's OnProfileDelete
	// (which the store's purge may call before).
	profileBus atomic.Pointer[bus.Bus]
	// profileRuntime and profileStore are s.plugins and s.store once
	// set, for the same (and profileRuntime for the privacy service's
	// NodeScoped, which starts before the runtime).
	profileRuntime atomic.Pointer[plugins.Runtime]
	profileStore   atomic.Pointer[storage.Store]
	// sharedDeletesMu serializes the changes of the shared profile
	// deletions left to retry (shared_deletes.go).
	sharedDeletesMu sync.Mutex
	// sensitive counts special-category detections (sensitive_data.go).
	sensitive *sensitiveTally
	// rights: the audit trail and the preference page (rights.go).
	auditor privacy.StoreAuditor
	prefs   *privacy.Preferences
	pipe    *pipeline.Pipeline
	// sites is the current site table (sites.go), swapped whole when a
	// site is added; sitesMu serializes the adders.
	sites   atomic.Pointer[siteTable]
	sitesMu sync.Mutex
	// tokens are the API tokens, reloaded when the keyring file changes
	// (tokens.go).
	tokens atomic.Pointer[[]keyring.Token]
	// rollups are the overview's aggregates and decision counters
	// (rollups.go).
	rollups *rollups
	// console is the web console (console.go).
	console        *console.Console
	consoleSources ConsoleSources
	trusted        []netip.Prefix
	proxyWarn      untrustedProxies
	authLim        *authLimiter
	metrics        *metrics

	httpSrv  *http.Server
	ln       net.Listener
	pubStop  context.CancelFunc
	wg       sync.WaitGroup
	ready    atomic.Bool
	shutOnce sync.Once
	shutErr  error

	// newAdminToken is the admin token Start generated, until
	// NewAdminToken hands it out.
	newAdminToken atomic.Pointer[string]

	// reactions reads the response plugin's model; retention caches the
	// retention outlook (response.go).
	reactions *reaction.Reader
	retention retentionCache
}

// New validates cfg and returns a server that has not started.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log}
	for _, c := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("%w: trusted_proxies: %q: %v", config.ErrInvalid, c, err)
		}
		s.trusted = append(s.trusted, p)
	}
	defs, configured, err := checkPlugins(cfg.Plugins)
	if err != nil {
		return nil, err
	}
	s.configured = configured
	if s.authLim, err = newAuthLimiter(cfg.Auth); err != nil {
		return nil, fmt.Errorf("%w: auth: %v", config.ErrInvalid, err)
	}
	s.segmentDefs = defs
	t := &siteTable{byID: map[string]*site{}, byKey: map[string]*site{}}
	for _, sc := range cfg.Sites {
		t = t.with(&site{cfg: sc, origins: parseOrigins(sc.Origins)})
	}
	s.sites.Store(t)
	return s, nil
}

// Start opens the data directory, Badger and NATS, starts the publisher and
// begins serving. On error everything started is stopped again.
func (s *Server) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			if s.plugins != nil {
				s.plugins.Stop(context.Background())
			}
			_ = s.stopImports(context.Background())
			if s.privacy != nil {
				_ = s.privacy.Stop(context.Background())
			}
			if s.pubStop != nil {
				s.pubStop()
			}
			s.wg.Wait()
			s.closeBackends()
			_ = s.dirLock.release(true)
		}
	}()
	if s.dirLock, err = lockDataDir(s.cfg.DataDir); err != nil {
		return err
	}
	openKeys := OpenKeyring
	if s.cfg.Cluster.Enabled() {
		openKeys = openClusterKeyring
	}
	kr, opened, err := openKeys(ctx, s.cfg, s.log)
	if err != nil {
		return err
	}
	s.keyring, s.firstStart = kr, opened.Created
	tokens := kr.Tokens
	s.tokens.Store(&tokens)
	keyringFile, _ := os.Stat(kr.Path()) // watchTokens reloads when it changes
	if err := s.checkOrganization(); err != nil {
		return err
	}
	if opened.AdminToken != "" {
		s.newAdminToken.Store(&opened.AdminToken)
	}

	jsDir := filepath.Join(s.cfg.DataDir, "jetstream")
	var watch []string
	if s.cfg.NATS.URL == "" {
		watch = append(watch, jsDir) // the embedded JetStream store shares the reserve
	}
	s.store, err = storage.Open(storage.Config{
		Dir:           filepath.Join(s.cfg.DataDir, "badger"),
		SyncWrites:    s.cfg.Storage.SyncWrites,
		DedupWindow:   time.Duration(s.cfg.Storage.DedupWindow),
		MaxOutbox:     s.cfg.Storage.MaxOutbox,
		MinFreeBytes:  s.cfg.Storage.MinFreeBytes,
		WatchDirs:     watch,
		ProfileTTL:    time.Duration(s.cfg.PluginRuntime.ProfileTTL),
		VaultKey:      kr.VaultKey,
		Logger:        s.log.With("component", "storage"),
		Retention:     s.storageRetention(),
		PurgeInterval: purgeInterval,
		// Cluster mode: profiles move with their partition (proxy/cluster.go).
		PortableProfiles: s.cfg.Cluster.Enabled(),
		// Sizes and recent changes: folded from VIGIE_SEGMENTS (segfold.go).
		SharedSegments:  s.cfg.Cluster.Enabled(),
		OnProfileDelete: s.sharedProfileDeleted(),
		// The vault's sealed entries, shared in KV VIGIE_VAULT.
		SharedVault: s.sharedVault(),
	})
	if err != nil {
		return fmt.Errorf("proxy: storage: %w", err)
	}
	s.profileStore.Store(s.store)

	var lb ledger.Backend = s.store
	if s.cfg.Cluster.Enabled() {
		lb = cluster.LedgerBackend{Store: s.store, Node: s.cfg.Cluster.NodeID}
	}
	lc := ledger.Config{
		Backend: lb, ProfilePurposes: s.cfg.PluginRuntime.ProfilePurposes,
		Logger: s.log.With("component", "ledger"),
		OnDrop: func(ctx context.Context, site, subject string) {
			// Consent for every profile purpose withdrawn: the profile goes
			// at once, and its segment exits are published by the plugin
			// runtime.
			if _, err := s.store.DeleteProfile(ctx, site, subject, "consent-withdrawn"); err != nil {
				s.log.Warn("profile not deleted after consent withdrawal; the next event deletes it", "err", err)
			}
		},
	}
	for _, p := range s.cfg.Purposes {
		lc.Purposes = append(lc.Purposes, p.Name)
	}
	lc.Lifetime = s.consentLifetimes()
	s.ledger = ledger.New(lc)

	keys := make([]pseudonymize.Key, 0, len(kr.Keys))
	for _, k := range kr.Active() {
		keys = append(keys, pseudonymize.Key{ID: k.ID, Secret: k.Secret})
	}
	if s.blind, err = blind.New(kr.BlindIndexKey); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	pc := pipeline.Config{Keys: keys, StoreBots: s.cfg.StoreBots, Retention: map[string]time.Duration{}, Blind: s.blind}
	for k, v := range s.cfg.Retention {
		pc.Retention[k] = time.Duration(v)
	}
	if pc.GeoIP, err = s.openGeoIP(); err != nil {
		return err
	}
	for _, sc := range s.cfg.Sites {
		site, err := pipelineSite(sc)
		if err != nil {
			return err
		}
		pc.Sites = append(pc.Sites, site)
	}
	if s.pipe, err = pipeline.New(pc); err != nil {
		return err
	}
	for id, st := range s.sites.Load().byID {
		if st.pipe, err = s.pipe.Site(id); err != nil {
			return err
		}
	}
	if err := s.loadStoredSites(ctx); err != nil {
		return fmt.Errorf("proxy: stored sites: %w", err)
	}

	n := s.cfg.NATS
	s.bus, err = bus.New(bus.Config{
		URL: n.URL, StoreDir: jsDir, Listen: n.Listen,
		CredsFile: n.CredsFile, User: n.User, Password: n.Password, Token: n.Token,
		TLSCA: n.TLSCA, TLSCert: n.TLSCert, TLSKey: n.TLSKey,
		Streams: s.streamSettings(), SyncInterval: n.SyncInterval, Buckets: s.clusterBuckets(),
		Logger: s.log.With("component", "nats"),
	})
	if err != nil {
		return err
	}
	if err := s.bus.Start(ctx); err != nil {
		return err
	}
	s.profileBus.Store(s.bus)
	var outbox bus.Outbox = s.store
	if n.URL == "" {
		outbox = diskGatedOutbox{s.store}
	}
	s.pub, err = bus.NewPublisher(bus.PublisherConfig{
		Bus: s.bus, Outbox: outbox, MaxInFlight: n.MaxInFlight,
		Logger: s.log.With("component", "publisher"),
	})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(context.Background())
	s.pubStop = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.pub.Run(pctx)
	}()
	if pc.GeoIP != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			pc.GeoIP.Watch(pctx, geoIPPollInterval, s.log.With("component", "geoip"))
		}()
	}
	go func() {
		defer s.wg.Done()
		if s.cfg.Cluster.Enabled() {
			s.watchSharedTokens(pctx)
			return
		}
		s.watchTokens(pctx, keyringFile)
	}()
	s.startCluster(pctx)

	s.metrics = newMetrics()
	s.startSensitive(pctx)
	if err := s.startEmail(); err != nil {
		return err
	}
	if err := s.startRights(); err != nil {
		return err
	}
	s.startResponse(pctx)
	if err := s.startPrivacy(ctx); err != nil {
		return err
	}
	if err := s.startConsole(); err != nil {
		return err
	}
	if err := s.startImports(ctx); err != nil {
		return err
	}
	if err := s.startPlugins(ctx); err != nil {
		return err
	}
	if err := s.startRollups(pctx); err != nil {
		return err
	}
	s.startSegmentFold(pctx)
	s.metrics.gaugeFunc("vigie_outbox_depth", "Events stored but not yet acknowledged by JetStream.",
		func() float64 { return float64(s.store.OutboxLen()) })
	s.metrics.counterFunc("vigie_published_total", "Events acknowledged by JetStream.",
		func() float64 { return float64(s.pub.Published()) })
	s.metrics.counterFunc("vigie_publish_errors_total", "Failed JetStream publish attempts.",
		func() float64 { return float64(s.pub.Failures()) })
	s.registerDiskMetrics()

	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen: %w", err)
	}
	s.ln = ln
	readTimeout := time.Duration(s.cfg.Limits.ReadTimeout)
	s.httpSrv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: min(10*time.Second, readTimeout),
		ReadTimeout:       readTimeout,
		// Counted from the end of the headers: the body's time to arrive,
		// then answerTimeout to store it and answer (a 408 for a body
		// that did not arrive must still go out).
		WriteTimeout: readTimeout + answerTimeout,
		IdleTimeout:  120 * time.Second,
		// guard answers JSON 431 above Limits.MaxHeaderBytes; net/http's
		// own plain-text 431 only above headerHardCap times that.
		MaxHeaderBytes: headerHardCap * s.cfg.Limits.MaxHeaderBytes,
		// net/http names the client's address in some messages ("http:
		// panic serving 203.0.113.9:5555"): addresses are redacted.
		ErrorLog: log.New(redactIPs{h: s.log.Handler()}, "", 0),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	s.ready.Store(true)
	s.log.Info("vigie started", "listen", ln.Addr().String(), "version", Version,
		"sites", len(s.sites.Load().list), "nats", natsMode(n.URL))
	return nil
}

// checkPlugins refuses what would only fail once the plugins start: a
// built-in that does not exist, an invalid segments configuration
// (reported with the segment's name and the position in its expression),
// a built-in's configuration its own check refuses (a CRM destination's,
// naming the field), and an env entry naming a variable Vigie's
// environment lacks or a secret's variable the entry does not pass on. It
// returns the segments configured for the built-in segments plugin, for
// GET /admin/v1/segments, and what each built-in's configuration adds to
// its manifest.
func checkPlugins(ps []config.Plugin) ([]segments.SegmentInfo, map[string]builtin.Configured, error) {
	var defs []segments.SegmentInfo
	configured := map[string]builtin.Configured{}
	for i, p := range ps {
		if p.Disabled {
			continue
		}
		if _, missing := p.Environment(); len(missing) > 0 {
			return nil, nil, fmt.Errorf("%w: plugins[%d].env: %s is not set in Vigie's environment (a bare name passes on Vigie's own value)",
				config.ErrInvalid, i, missing[0])
		}
		name := p.BuiltinName()
		if name == "" {
			continue
		}
		if !builtin.Has(name) {
			return nil, nil, fmt.Errorf("%w: plugins[%d]: %q is not a built-in plugin (built-ins: %s); give the path and sha256 of an external plugin",
				config.ErrInvalid, i, name, strings.Join(builtin.Names(), ", "))
		}
		var raw []byte
		if p.Config != nil {
			var err error
			if raw, err = json.Marshal(p.Config); err != nil {
				return nil, nil, fmt.Errorf("%w: plugins[%d].config: %v", config.ErrInvalid, i, err)
			}
		}
		c, err := builtin.Check(name, raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: plugins[%d].config.%v", config.ErrInvalid, i, err)
		}
		for _, v := range c.Env {
			if !slices.ContainsFunc(p.Env, func(e string) bool { return e == v || strings.HasPrefix(e, v+"=") }) {
				return nil, nil, fmt.Errorf("%w: plugins[%d].env: list %s, which the configuration reads a secret from (plugins get no other environment)",
					config.ErrInvalid, i, v)
			}
		}
		configured[p.Name] = c
		if name == "segments" {
			infos, err := segments.Names(raw)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: plugins[%d].config: %w", config.ErrInvalid, i, err)
			}
			defs = append(defs, infos...)
		}
	}
	return defs, configured, nil
}

// startPlugins starts the plugin runtime with the enabled plugins (none:
// the enrich stage alone).
func (s *Server) startPlugins(ctx context.Context) error {
	r := s.cfg.PluginRuntime
	pc := plugins.Config{
		Builtin:           builtin.Command,
		Store:             s.store,
		JetStream:         s.bus.JetStream(),
		MaxDeliver:        r.MaxDeliver,
		CallTimeout:       time.Duration(r.CallTimeout),
		AckWait:           time.Duration(r.AckWait),
		BatchSize:         r.BatchSize,
		MaxRestarts:       r.MaxRestarts,
		RestartBackoff:    time.Duration(r.RestartBackoff),
		MaxRestartBackoff: time.Duration(r.MaxRestartBackoff),
		EmitTTL:           time.Duration(s.cfg.Retention["analytics"]),
		SyncHistoryTTL:    time.Duration(s.cfg.Retention["marketing"]),
		Privacy:           s.privacy,
		CheckManifest:     s.checkManifestForSites,
		Streams:           s.streamSettings(),
		ContactAudit:      s.contactAudit,
		Registerer:        s.metrics.reg,
		Logger:            s.log.With("component", "plugins"),
	}
	if s.leases != nil {
		pc.Partitions = s.leases
	}
	if s.cfg.Cluster.Enabled() {
		pc.Node = s.cfg.Cluster.NodeID
	}
	for _, b := range r.Backoff {
		pc.Backoff = append(pc.Backoff, time.Duration(b))
	}
	for _, p := range r.ProfilePurposes {
		pc.ProfilePurposes = append(pc.ProfilePurposes, string(p))
	}
	for _, p := range s.cfg.Purposes {
		pc.Purposes = append(pc.Purposes, string(p.Name))
	}
	pc.Sites = s.siteIDs()
	for _, p := range s.cfg.Plugins {
		if p.Disabled {
			continue
		}
		env, _ := p.Environment()
		spec := plugins.Spec{Name: p.Name, Builtin: p.Builtin, Path: p.Path, SHA256: p.SHA256, Env: env,
			Purposes: s.configured[p.Name].Purposes}
		if p.Config != nil || s.isBuiltinGeoIP(p) {
			b, err := json.Marshal(s.pluginConfig(p))
			if err != nil {
				return fmt.Errorf("%w: plugins: %s: config: %v", config.ErrInvalid, p.Name, err)
			}
			spec.Config = b
		}
		pc.Plugins = append(pc.Plugins, spec)
	}
	// With no plugin the runtime still runs its enrich stage, as a
	// pass-through to the enriched stream that the rollups read.
	rt, err := plugins.New(pc)
	if err != nil {
		return err
	}
	if err := rt.Start(ctx); err != nil {
		return err
	}
	s.plugins = rt
	s.profileRuntime.Store(rt)
	if s.leases != nil {
		// A partition given up is released once its consumers stopped.
		s.leases.SetQuiesce(rt.WaitPartitions)
	}
	s.registerDestinationMetrics()
	return nil
}

// streamSettings are the settings of every stream, the same for the bus and
// the plugin runtime (both declare the streams they share).
func (s *Server) streamSettings() streams.Settings { return streamSettingsOf(s.cfg) }

// streamSettingsOf is the stream and bucket settings of cfg.
func streamSettingsOf(cfg config.Config) streams.Settings {
	return streams.Settings{Replicas: cfg.StreamReplicas(), DuplicateWindow: time.Duration(cfg.NATS.DuplicateWindow),
		MaxAge: time.Duration(cfg.NATS.MaxAge), DedupTTL: time.Duration(cfg.Storage.DedupWindow),
		DecisionsTTL: cfg.RetentionOf(config.RetentionRollups), ImportsTTL: storage.ImportJobTTL}
}

// Plugins is the plugin runtime (nil before Start).
func (s *Server) Plugins() *plugins.Runtime { return s.plugins }

func natsMode(url string) string {
	if url == "" {
		return "embedded"
	}
	return "external"
}

// Addr is the address the server listens on ("" before Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// NewAdminToken returns, once, the admin token Start generated for a new
// keyring, to be shown to the operator; "" when none was generated (the
// keyring existed, or the token was chosen) and on every later call. The
// keyring keeps only its hash.
func (s *Server) NewAdminToken() string {
	if p := s.newAdminToken.Swap(nil); p != nil {
		return *p
	}
	return ""
}

// FirstStart reports whether Start created the keyring (a new data dir).
func (s *Server) FirstStart() bool { return s.firstStart }

// Store is the server's storage (nil before Start).
func (s *Server) Store() *storage.Store { return s.store }

// Bus is the server's NATS bus (nil before Start).
func (s *Server) Bus() *bus.Bus { return s.bus }

// Shutdown stops accepting requests, waits for those in flight, flushes the
// outbox to JetStream (until ctx is done) and closes NATS and Badger. What
// could not be published stays in the outbox for the next start.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.ready.Store(false)
		var errs []error
		if s.httpSrv != nil {
			if err := s.httpSrv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http: %w", err))
			}
		}
		// The import worker stops at its next batch; its job resumes from
		// the last committed one at the next start.
		if err := s.stopImports(ctx); err != nil {
			errs = append(errs, err)
		}
		if s.pubStop != nil {
			s.pubStop()
		}
		s.wg.Wait()
		if s.pub != nil && s.store != nil && s.store.OutboxLen() > 0 && !s.bus.Connected() {
			s.log.Warn("nats unreachable; the outbox will be published at next start", "remaining", s.store.OutboxLen())
		} else if s.pub != nil && s.store != nil {
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := s.pub.Flush(fctx); err != nil {
				s.log.Warn("outbox not fully flushed; it will be published at next start",
					"remaining", s.store.OutboxLen(), "err", err)
			}
			cancel()
		}
		// Plugins stop after the last events reached the bus, stage by
		// stage, so that what is in flight is redelivered at the next start.
		if s.plugins != nil {
			if err := s.plugins.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if s.privacy != nil {
			if err := s.privacy.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, s.closeBackends(), s.dirLock.release(false))
		s.shutErr = errors.Join(errs...)
		s.log.Info("vigie stopped")
	})
	return s.shutErr
}

func (s *Server) closeBackends() error {
	var errs []error
	if s.bus != nil {
		errs = append(errs, s.bus.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}

// ipPattern matches IPv4 and IPv6 addresses (with an optional port).
var ipPattern = regexp.MustCompile(`\[?(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})\]?(?::\d+)?`)

// redactIPs is the http.Server's error log: it logs through slog at warn
// level with every IP address replaced by "[ip]".
type redactIPs struct{ h slog.Handler }

func (r redactIPs) Write(p []byte) (int, error) {
	msg := ipPattern.ReplaceAllString(strings.TrimSpace(string(p)), "[ip]")
	rec := slog.NewRecord(time.Now(), slog.LevelWarn, msg, 0)
	rec.AddAttrs(slog.String("component", "http"))
	return len(p), r.h.Handle(context.Background(), rec)
}
