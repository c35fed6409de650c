// Package config is Vigie's configuration: one YAML file in which every
// field has a default, so that no file at all starts a working demo setup.
//
// Every field can also be set by an environment variable named VIGIE_ plus
// the field's YAML path in upper case joined by underscores, e.g.
// VIGIE_LISTEN, VIGIE_DATA_DIR, VIGIE_STORAGE_SYNC_WRITES, VIGIE_NATS_URL.
// Lists of strings take comma-separated values; structured fields (sites,
// purposes, retention) take YAML or JSON text. Environment variables win over
// the file, flags win over both.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/plugins/rollup"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/storage"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid configuration")

// Config is the whole configuration.
type Config struct {
	// Listen is the HTTP listen address. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// DataDir holds Badger, the JetStream store and the keyring (sealed
	// under the master key, which must live elsewhere). Default ./vigie-data.
	DataDir string `yaml:"data_dir"`
	// Production applies the key custody rules strictly: Vigie refuses to
	// start without a configured master key (no trial key), with a key or
	// token file inside data_dir, or readable by group or others. Default
	// false.
	Production bool `yaml:"production"`
	// Keys says where the master key and the first admin token come from.
	Keys Keys `yaml:"keys"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// TrustedProxies lists CIDRs whose X-Forwarded-For header is believed.
	// Default none: the connection's address is the client's.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Storage configures Badger.
	Storage Storage `yaml:"storage"`
	// NATS configures the event bus.
	NATS NATS `yaml:"nats"`
	// Cluster runs this node as one of several Vigie nodes sharing a NATS
	// JetStream cluster (cluster.go). Default: off (a single node).
	Cluster Cluster `yaml:"cluster"`
	// Limits bounds what one request may carry.
	Limits Limits `yaml:"limits"`
	// Auth bounds failed authentications per client network.
	Auth Auth `yaml:"auth"`
	// Purposes lists the processing purposes. Default: necessary,
	// analytics, personalization, marketing.
	Purposes []consent.PurposeInfo `yaml:"purposes"`
	// Retention is how long events are kept, per purpose, plus "anonymous"
	// for anonymous events. A pseudonymous event is kept for the longest
	// retention among its granted purposes. Default analytics 13 months
	// (395d), anonymous 25 months (760d), personalization and marketing 13
	// months, necessary 30 days. "imported" is the retention of imported
	// records (counted from each row's time, whatever their purposes;
	// default 13 months, 395d). Three more keys are not event retentions:
	// "audit", how long the audit trail is kept (default 3 years), and
	// "requests", how long a completed privacy request (an erasure's
	// receipt) is kept (default 3 years), and "rollups", how long the
	// console overview's aggregates are kept after their hour or day
	// (default 761 days, so that a month compares with the same month a
	// year before; at least 1h).
	Retention map[string]Duration `yaml:"retention"`
	// Organization is the controller, as the register of processing (Art.
	// 30) names it. With production: true, Vigie refuses to start without
	// its name and contact (OrganizationProblem).
	Organization Organization `yaml:"organization"`
	// StoreBots stores hits from bots as events. Default false: they are
	// only counted.
	StoreBots bool `yaml:"store_bots"`
	// GeoIP is the GeoIP database of ingestion: the country (and, if a
	// site asks, the region) of anonymous events is resolved from it in
	// memory, and only that is kept. The built-in geoip plugin uses it too
	// when its own config names no database.
	GeoIP GeoIP `yaml:"geoip"`
	// Sites are the tracked sites. Default: the demo site.
	Sites []Site `yaml:"sites"`
	// Plugins are the plugins to run, in order (enrichers apply to an
	// event in this order). Absent: the built-ins geoip (no database: it
	// passes events through) and segments (the demo segments). An empty
	// list runs none.
	Plugins []Plugin `yaml:"plugins"`
	// PluginRuntime tunes delivery to plugins.
	PluginRuntime PluginRuntime `yaml:"plugin_runtime"`
	// PublicURL is Vigie's public base URL as sites and e-mails reach it
	// (e.g. https://shop.example/t/), used for e-mail tracking links.
	// Default: the admin request's own scheme and host.
	PublicURL string `yaml:"public_url"`
	// SnippetPath is the first-party path the browser snippet is served
	// at. Default /s.js.
	SnippetPath string `yaml:"snippet_path"`
	// DemoPath is where the demo site is served; "off" serves none.
	// Default /demo/.
	DemoPath string `yaml:"demo_path"`
	// Console configures the web console's sessions.
	Console Console `yaml:"console"`
}

// Console configures the web console (/console/).
type Console struct {
	// SessionIdle ends a session after this long without a request.
	// Default 12h.
	SessionIdle Duration `yaml:"session_idle"`
	// SessionMax ends a session this long after sign-in, used or not.
	// Default 7d.
	SessionMax Duration `yaml:"session_max"`
}

// GeoIP names a MaxMind-format database (see plugins/geoip/geodb).
type GeoIP struct {
	// Database is the path of a .mmdb City or Country database (MaxMind
	// GeoLite2/GeoIP2, DB-IP Lite, ip-location-db). Default: none (anonymous
	// events have no location).
	Database string `yaml:"database"`
	// IPv6Database is a second file for databases split by address family
	// (ip-location-db), looked up after Database. Default: none.
	IPv6Database string `yaml:"ipv6_database"`
}

// Keys configures key custody. The master key comes from exactly one of
// VIGIE_MASTER_KEY, MasterKeyFile and MasterKeyCommand; with none of them
// (outside production) a trial key is made in SecretsDir.
type Keys struct {
	// MasterKeyFile is a file holding the master key ("vigie-mk-…"),
	// outside data_dir, mode 0600. Default none.
	MasterKeyFile string `yaml:"master_key_file"`
	// MasterKeyCommand is a command printing the master key on stdout,
	// e.g. [pass, show, vigie/master-key]: argv, run without a shell
	// ([sh, -c, "…"] for a pipeline), with Vigie's environment. Default
	// none.
	MasterKeyCommand []string `yaml:"master_key_command"`
	// CommandTimeout bounds MasterKeyCommand. Default 30s.
	CommandTimeout Duration `yaml:"command_timeout"`
	// SecretsDir is where a first run without a configured master key
	// makes its trial key (master.key, 0600, directory 0700); never inside
	// data_dir, never used in production. Default ./vigie-secrets.
	SecretsDir string `yaml:"secrets_dir"`
	// AdminTokenFile holds the admin token to adopt when the keyring is
	// created (instead of a random one); outside data_dir, mode 0600.
	// Default none.
	AdminTokenFile string `yaml:"admin_token_file"`

	// MasterKey is the master key itself, from the VIGIE_MASTER_KEY
	// environment variable only (never from the file).
	MasterKey Secret `yaml:"-"`
	// AdminToken is the admin token to adopt when the keyring is created,
	// from the VIGIE_ADMIN_TOKEN environment variable only.
	AdminToken Secret `yaml:"-"`
}

// Environment variables read only from the environment: secrets never sit
// in the configuration file.
const (
	EnvMasterKey  = "VIGIE_MASTER_KEY"
	EnvAdminToken = "VIGIE_ADMIN_TOKEN"
)

// Secret is a string that does not print itself: fmt, slog, YAML and JSON
// show "[secret]" (or "" when it is empty). Reveal returns the value.
type Secret string

// Reveal is the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String is "[secret]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[secret]"
}

// GoString is String.
func (s Secret) GoString() string { return s.String() }

// LogValue is String.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalYAML is String.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON is String.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// Plugin configures one plugin.
type Plugin struct {
	// Name must equal the name in the plugin's manifest; a built-in's name
	// (geoip, segments) without a path runs the built-in.
	Name string `yaml:"name"`
	// Builtin runs that built-in under Name, for a built-in configured
	// several times: each CRM destination is `builtin: crm` with a name
	// of its own. Not with Path. Default: Name.
	Builtin string `yaml:"builtin"`
	// Path of an external plugin binary.
	Path string `yaml:"path"`
	// SHA256 of the binary at Path (sha256sum); required with Path.
	SHA256 string `yaml:"sha256"`
	// Disabled keeps the entry without running the plugin.
	Disabled bool `yaml:"disabled"`
	// Env is the plugin process's whole environment: "KEY=value", or
	// "KEY" alone to pass on Vigie's own value of KEY (a secret the
	// plugin reads, kept out of vigie.yaml). Nothing else of Vigie's
	// environment is passed on. Default empty.
	Env []string `yaml:"env"`
	// Config is the plugin's own configuration, passed to it as JSON.
	Config map[string]any `yaml:"config"`
}

// PluginRuntime tunes the plugin runtime.
type PluginRuntime struct {
	// MaxDeliver is how many times a message is tried before it goes to
	// the dead-letter stream. Default 5.
	MaxDeliver int `yaml:"max_deliver"`
	// Backoff is the delay before each retry (the last repeats). Default
	// 1s, 5s, 30s, 2m.
	Backoff []Duration `yaml:"backoff"`
	// CallTimeout bounds one call (and one ping) to a plugin; past it the
	// plugin is hung: its process is killed outright (SIGKILL), a new one
	// is started and the batch in flight is delivered again. Default 10s.
	CallTimeout Duration `yaml:"call_timeout"`
	// AckWait is how long a delivered message may go unacknowledged before
	// JetStream delivers it again. A message being handled is marked in
	// progress every third of it, however long its plugin takes; the
	// wait only matters for a delivery that went astray (its pull request
	// was given up), which it bounds. Default 10s.
	AckWait Duration `yaml:"ack_wait"`
	// BatchSize is the most events per call. Default 100.
	BatchSize int `yaml:"batch_size"`
	// MaxRestarts is how many crashes in a row mark a plugin failed (it is
	// then retried every 5 minutes). Default 5.
	MaxRestarts int `yaml:"max_restarts"`
	// RestartBackoff is the delay before restarting a crashed plugin; it
	// doubles with each crash in a row up to MaxRestartBackoff. Default
	// 500ms.
	RestartBackoff Duration `yaml:"restart_backoff"`
	// MaxRestartBackoff caps the restart delay. Default 1m.
	MaxRestartBackoff Duration `yaml:"max_restart_backoff"`
	// ProfilePurposes: subjects are profiled (and segmented) only when
	// their consent grants at least one of these; a later event granting
	// none deletes the profile. Default [personalization, marketing].
	ProfilePurposes []consent.Purpose `yaml:"profile_purposes"`
	// ProfileTTL is how long a profile is kept after its last event.
	// Default 395d (13 months).
	ProfileTTL Duration `yaml:"profile_ttl"`
}

// DefaultPlugins are the plugins of a configuration without a plugins
// section: GeoIP (without a database it passes events through) and
// segments with the demo site's segments.
func DefaultPlugins() []Plugin {
	return []Plugin{
		{Name: "geoip", Config: map[string]any{"database": ""}},
		{Name: "segments", Config: map[string]any{
			"segments": []any{
				map[string]any{
					"name":        "pricing-interest",
					"description": "Viewed a pricing page at least 3 times in 7 days.",
					"when":        `profile.count("page", "/pricing*", "7d") >= 3`,
				},
				map[string]any{
					"name":        "hot-lead",
					"description": "Lead score of 20 or more.",
					"when":        `profile.score >= 20`,
					"purposes":    []any{"marketing"},
				},
			},
			"scoring": []any{
				map[string]any{"name": "pricing-view", "points": 3,
					"when": `event.type == "page" && event.page.path.startsWith("/pricing")`},
				map[string]any{"name": "demo-request", "points": 10,
					"when": `event.type == "track" && event.name == "Demo Requested"`},
				map[string]any{"name": "signed-up", "points": 15,
					"when": `event.type == "track" && event.name == "Signed Up"`},
			},
		}},
	}
}

// Storage configures Badger.
type Storage struct {
	// SyncWrites fsyncs every commit group. Default false: a process crash
	// loses nothing acknowledged, a machine crash may lose the last writes.
	SyncWrites bool `yaml:"sync_writes"`
	// DedupWindow is how long a messageId is remembered. Default 48h.
	DedupWindow Duration `yaml:"dedup_window"`
	// MaxOutbox bounds events waiting for NATS; past it ingestion answers
	// 503. Default 1000000.
	MaxOutbox int64 `yaml:"max_outbox"`
	// MinFreeBytes is the free-space reserve of the data dir's filesystem
	// (and the embedded JetStream store's): below it ingestion answers 503
	// disk_full and /readyz fails, until MinFreeBytes plus an eighth is free
	// again; Vigie does not start below it. Default
	// storage.DefaultMinFreeBytes (603979776, 576 MiB: what Badger may still
	// write after the last accepted event, see there).
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// NATS configures the event bus.
type NATS struct {
	// URL of an external NATS server or cluster (comma-separated). Empty
	// (default): an embedded server with JetStream in the data dir.
	URL string `yaml:"url"`
	// Listen opens a client port on the embedded server (e.g.
	// 127.0.0.1:4222). Default empty: in-process only, no port.
	Listen string `yaml:"listen"`
	// CredsFile is a NATS credentials file for an external server.
	CredsFile string `yaml:"creds_file"`
	// User and Password authenticate to an external server.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// Token authenticates to an external server.
	Token string `yaml:"token"`
	// TLSCA, TLSCert and TLSKey configure TLS to an external server.
	TLSCA   string `yaml:"tls_ca"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Replicas of every Vigie stream and KV bucket. Default 1 alone, 3
	// with cluster.node_id (DefaultClusterReplicas).
	Replicas int `yaml:"replicas"`
	// SyncInterval is the embedded JetStream's fsync interval; "always"
	// syncs every write. Default 2m (NATS's default). An external server
	// (each server of a cluster) takes it in its own configuration, and
	// cluster mode should use jetstream { sync_interval: always } there
	// (README: Running several nodes).
	SyncInterval string `yaml:"sync_interval"`
	// MaxInFlight bounds unacknowledged async publishes. Default 1024.
	MaxInFlight int `yaml:"max_in_flight"`
	// DuplicateWindow of VIGIE_EVENTS and VIGIE_ENRICHED (Nats-Msg-Id
	// dedup), the two streams every event crosses. Default 30s. JetStream
	// keeps every id of the window in memory (a 10-minute window held 144
	// MB after 1.2M events). The only events ever republished are those
	// published but not yet removed from the outbox when Vigie crashed
	// (republished as soon as it restarts), and those the enrich stage
	// published but had not acknowledged (delivered again within
	// plugin_runtime.ack_wait, which must be shorter). A Vigie that stays
	// down longer than the window may put those (at most max_in_flight, and
	// the enrich stage's batch in hand) in a stream twice; consumers see
	// the same event id.
	DuplicateWindow Duration `yaml:"duplicate_window"`
	// MaxAge is how long every stream keeps a message (JetStream's
	// MaxAge): the bus is a conduit, not a store, and an erasure or the
	// end of a retention reaches it within this time. At most the
	// shortest retention, at least an hour. Default 7d.
	MaxAge Duration `yaml:"max_age"`
}

// Organization is who is responsible for the processing: the controller
// (Art. 4(7) GDPR), its representative in the Union and its data
// protection officer, as Art. 30(1)(a) asks the register to name them.
type Organization struct {
	// Name of the controller (legal name). Required in production.
	Name string `yaml:"name"`
	// Address is the controller's postal address.
	Address string `yaml:"address"`
	// Contact is how to reach the controller about personal data (an
	// e-mail address or a URL). Required in production.
	Contact string `yaml:"contact"`
	// Phone of the controller.
	Phone string `yaml:"phone"`
	// Representative is the controller's representative in the Union
	// (Art. 27), for a controller established outside it.
	Representative Party `yaml:"representative"`
	// DPO is the data protection officer, if one is designated.
	DPO Party `yaml:"dpo"`
	// JointControllers share the purposes and means (Art. 26).
	JointControllers []Party `yaml:"joint_controllers"`
}

// Party is a person or organization named in the register.
type Party struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// Contact is an e-mail address or URL.
	Contact string `yaml:"contact"`
	Phone   string `yaml:"phone"`
}

// IsZero reports whether nothing is set.
func (p Party) IsZero() bool { return p == Party{} }

// Limits bounds requests. Defaults are Segment's.
type Limits struct {
	// MaxEventBytes per event. Default 32 KB.
	MaxEventBytes int `yaml:"max_event_bytes"`
	// MaxBatchBytes per batch body, decompressed. Default 500 KB.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// MaxBatchEvents per batch. Default 2500.
	MaxBatchEvents int `yaml:"max_batch_events"`
	// MaxHeaderBytes bounds a request's line and headers, counted as
	// sent; larger requests get a JSON 431. Above 4 times this net/http
	// refuses them itself, with a plain-text 431. Default 64 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ReadTimeout is how long a client has to send a whole request (line,
	// headers and body); a body still arriving then is answered 408
	// body_timeout. Default 30s.
	ReadTimeout Duration `yaml:"read_timeout"`
}

// Auth bounds failed authentications (an unknown write key, a wrong admin
// token) per client network: the /24 of an IPv4 address, the /48 of an
// IPv6 one, as seen through trusted_proxies. Once a network has used its
// budget, every authentication attempt from it is answered 429 with
// Retry-After before any key is checked, until the budget refills.
type Auth struct {
	// FailureBurst is how many failures a network may make in a row.
	// Default 20.
	FailureBurst int `yaml:"failure_burst"`
	// FailureRefill is the time after which one more failure is allowed.
	// Default 500ms (two per second).
	FailureRefill Duration `yaml:"failure_refill"`
	// MaxNetworks bounds the networks remembered; past it, the one whose
	// last failure is oldest is forgotten. Default 10000.
	MaxNetworks int `yaml:"max_networks"`
}

// Site is one tracked site.
type Site struct {
	// ID names the site in keys and subjects: [a-z0-9_-], 1–64 chars.
	ID string `yaml:"id"`
	// WriteKeys authenticate its hits.
	WriteKeys []string `yaml:"write_keys"`
	// Origins allowed for browser hits: exact origins, or with a "*" port
	// or subdomain wildcard ("http://localhost:*", "https://*.example.com").
	Origins []string `yaml:"origins"`
	// Consent is the site's consent policy.
	Consent ConsentPolicy `yaml:"consent"`
	// AllowParams are URL query parameters kept ("utm_*" style prefixes).
	// Default (pseudonymize.Config.AllowParams): utm_*, mtm_*, Matomo's
	// pk_ campaign parameters (not pk_vid), ref, source, campaign. Other
	// trackers' visitor ids are dropped even when listed.
	AllowParams []string `yaml:"allow_params"`
	// ClickIDParams are ad click ids kept only with marketing consent.
	ClickIDParams []string `yaml:"click_id_params"`
	// PIIKeys are property and trait names treated as personal data in
	// addition to the built-in list, which always applies.
	PIIKeys []string `yaml:"pii_keys"`
	// TestToken, when set (16 characters or more), lets a test client
	// through the bot filter: a hit whose TestHeader header carries it is
	// stored even if its user agent is a bot's (headless browsers, curl),
	// marked as a bot in its device. Default none.
	TestToken Secret `yaml:"test_token"`
	// ExportClickIDs are click-id parameters (of click_id_params) stored as
	// they came, for an ads integration that sends them back to the ad
	// platform; the others are stored as HMAC pseudonyms. Default none.
	ExportClickIDs []string `yaml:"export_click_ids"`
	// Mode is standard (default) or cnil_exempt: the conditions of the
	// CNIL's audience-measurement consent exemption are then enforced (see
	// CNILConditions) and checked by vigie check.
	Mode string `yaml:"mode"`
	// Anonymous tunes what anonymous events keep.
	Anonymous Anonymous `yaml:"anonymous"`
	// Sensitive is the handling of special categories of data (Art. 9):
	// actions per category, sensitive_paths, layers (sensitive.go).
	// Default: detected everywhere, kept anonymous.
	Sensitive SiteSensitive `yaml:"sensitive"`
}

// Site modes.
const (
	ModeStandard   = "standard"
	ModeCNILExempt = "cnil_exempt"
)

// CNILExempt reports whether the site runs in CNIL exemption mode.
func (s Site) CNILExempt() bool { return s.Mode == ModeCNILExempt }

// Anonymous tunes anonymous events, which keep the event name, the path
// (identifier-like parts replaced by [id]), the referrer host, the device
// class, the country and a coarse time.
type Anonymous struct {
	// TimeGranularity is what their times (event, receipt, id) are rounded
	// down to; it must divide 24h. Default 1h (pipeline.DefaultTimeGranularity).
	TimeGranularity Duration `yaml:"time_granularity"`
	// Region keeps the GeoIP region besides the country. Default false.
	Region bool `yaml:"region"`
	// IDPathPatterns are the site's own identifier patterns (Go regular
	// expressions, matched against each path segment): matches become
	// [id], besides the built-in rules. Default none.
	IDPathPatterns []string `yaml:"id_path_patterns"`
}

// Defaults and bounds of the site settings above.
const (
	// DefaultCookieLifetime is ConsentPolicy.CookieLifetime's default:
	// 13 months.
	DefaultCookieLifetime = 395 * 24 * time.Hour
	// MaxCookieLifetime bounds ConsentPolicy.CookieLifetime: the consent
	// ledger keeps a choice that long (storage.ConsentTTL).
	MaxCookieLifetime = storage.ConsentTTL
)

// CookieLifetime is how long the site's recorded consent choices and
// vigie_id cookies last, defaulted.
func (s Site) CookieLifetime() time.Duration {
	if s.Consent.CookieLifetime <= 0 {
		return DefaultCookieLifetime
	}
	return time.Duration(s.Consent.CookieLifetime)
}

// TestHeader is the request header carrying a site's TestToken.
const TestHeader = "X-Vigie-Test"

// ConsentPolicy is the YAML form of consent.Policy.
type ConsentPolicy struct {
	// Unconsented is what traffic without consent gets: anonymous
	// (default) or drop.
	Unconsented string `yaml:"unconsented"`
	// Defaults are purposes granted without a signal. Default [necessary].
	Defaults []consent.Purpose `yaml:"defaults"`
	// HonorGPC makes Sec-GPC: 1 deny marketing. Default true.
	HonorGPC *bool `yaml:"honor_gpc"`
	// HonorDNT makes DNT: 1 deny marketing. Default true.
	HonorDNT *bool `yaml:"honor_dnt"`
	// Categories maps consent categories (Segment's categoryPreferences
	// keys) to purposes; merged over the built-in map.
	Categories map[string][]consent.Purpose `yaml:"categories"`
	// TCF maps IAB TCF v2.2 consent strings (from __tcfapi, gdpr_consent,
	// or the TCF section of a GPP string) to purposes.
	TCF TCFPolicy `yaml:"tcf"`
	// ConsentMode maps Google Consent Mode v2 signals to purposes: a
	// purpose is granted when all its signals are granted. Default
	// analytics: [analytics_storage]; marketing: [ad_storage, ad_user_data,
	// ad_personalization]; personalization: [personalization_storage].
	ConsentMode map[consent.Purpose][]string `yaml:"consent_mode"`
	// ConsentManagement maps the consent ids of RudderStack's
	// context.consentManagement to purposes, per consent manager
	// (oneTrust, ketch, iubenda, custom); merged over the built-in map per
	// provider. An id not found there is looked up in Categories (OneTrust
	// C0001–C0005, plain names). Default: iubenda 1 → necessary, 2 and 3
	// → personalization, 4 → analytics, 5 → marketing.
	ConsentManagement map[string]map[string][]consent.Purpose `yaml:"consent_management"`
	// PseudonymRotation is never (default), daily or monthly: the
	// pseudonyms of events granting analytics but neither personalization
	// nor marketing change every UTC day or month (a key derived from the
	// site key and the period), so they cannot be linked across periods.
	// Events granting personalization or marketing keep stable pseudonyms.
	PseudonymRotation string `yaml:"pseudonym_rotation"`
	// CookieLifetime is how long a recorded choice, and the vigie_id
	// cookie set with it, last: counted from the choice, never extended by
	// later hits; then consent is asked again. At most 395d. Default 395d
	// (13 months).
	CookieLifetime Duration `yaml:"cookie_lifetime"`
}

// TCFPolicy is the YAML form of consent.TCFMapping.
type TCFPolicy struct {
	// VendorID is this site's own IAB vendor id, if it has one: its vendor
	// consent (and publisher restrictions) then also count. Default 0: none.
	VendorID int `yaml:"vendor_id"`
	// PublisherTC reads the publisher segment instead of the purposes of
	// the core segment. Default false.
	PublisherTC bool `yaml:"publisher_tc"`
	// Purposes lists the TCF purpose ids each purpose needs (all of them).
	// Default analytics [1, 8, 9, 10], personalization [1, 5, 6],
	// marketing [1, 2, 3, 4, 7].
	Purposes map[consent.Purpose][]int `yaml:"purposes"`
	// LegitimateInterest lists TCF purposes for which legitimate interest
	// counts like consent (never 1 or 3–6). Default none.
	LegitimateInterest []int `yaml:"legitimate_interest"`
}

// Duration is a time.Duration that also reads days ("30d") and months of
// 30.44 days ("13mo").
type Duration time.Duration

// UnmarshalYAML reads a duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes a duration.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ParseDuration parses Go durations plus "d" (days) and "mo" (months).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	mult := time.Duration(0)
	num := s
	switch {
	case strings.HasSuffix(s, "mo"):
		mult, num = time.Duration(30.44*24*float64(time.Hour)), strings.TrimSuffix(s, "mo")
	case strings.HasSuffix(s, "d"):
		mult, num = 24*time.Hour, strings.TrimSuffix(s, "d")
	}
	if mult == 0 {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%w: duration %q: use e.g. 90s, 48h, 30d, 13mo", ErrInvalid, s)
		}
		return d, nil
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: duration %q: use e.g. 90s, 48h, 30d, 13mo", ErrInvalid, s)
	}
	return time.Duration(n * float64(mult)), nil
}

// Default returns the configuration used when there is no file.
func Default() Config {
	return Config{
		Listen:   "127.0.0.1:8080",
		DataDir:  "./vigie-data",
		LogLevel: "info",
		Keys:     Keys{SecretsDir: "./vigie-secrets", CommandTimeout: Duration(30 * time.Second)},
		Storage: Storage{
			DedupWindow:  Duration(48 * time.Hour),
			MaxOutbox:    1_000_000,
			MinFreeBytes: storage.DefaultMinFreeBytes,
		},
		NATS: NATS{
			MaxInFlight:     1024,
			DuplicateWindow: Duration(30 * time.Second),
			MaxAge:          Duration(7 * 24 * time.Hour),
		},
		Limits: Limits{MaxEventBytes: 32 << 10, MaxBatchBytes: 500 << 10, MaxBatchEvents: 2500,
			MaxHeaderBytes: 64 << 10, ReadTimeout: Duration(30 * time.Second)},
		Auth:     Auth{FailureBurst: 20, FailureRefill: Duration(500 * time.Millisecond), MaxNetworks: 10_000},
		Purposes: consent.DefaultPurposes(),
		Retention: map[string]Duration{
			"necessary":       Duration(30 * 24 * time.Hour),
			"analytics":       Duration(395 * 24 * time.Hour),
			"personalization": Duration(395 * 24 * time.Hour),
			"marketing":       Duration(395 * 24 * time.Hour),
			"anonymous":       Duration(760 * 24 * time.Hour),
			RetentionImported: Duration(395 * 24 * time.Hour),
			RetentionAudit:    Duration(storage.DefaultAuditRetention),
			RetentionRequests: Duration(storage.DefaultRequestRetention),
			RetentionRollups:  Duration(rollup.DefaultRetention),
		},
		Sites:       []Site{DemoSite()},
		SnippetPath: "/s.js",
		DemoPath:    "/demo/",
		Console:     Console{SessionIdle: Duration(12 * time.Hour), SessionMax: Duration(7 * 24 * time.Hour)},
		PluginRuntime: PluginRuntime{
			MaxDeliver:        5,
			Backoff:           []Duration{Duration(time.Second), Duration(5 * time.Second), Duration(30 * time.Second), Duration(2 * time.Minute)},
			CallTimeout:       Duration(10 * time.Second),
			AckWait:           Duration(10 * time.Second),
			BatchSize:         100,
			MaxRestarts:       5,
			RestartBackoff:    Duration(500 * time.Millisecond),
			MaxRestartBackoff: Duration(time.Minute),
			ProfilePurposes:   []consent.Purpose{"personalization", "marketing"},
			ProfileTTL:        Duration(395 * 24 * time.Hour),
		},
	}
}

// DemoSite is the site of the first run: write key "demo", localhost origins.
func DemoSite() Site {
	return Site{
		ID:        "demo",
		WriteKeys: []string{"demo"},
		Origins:   []string{"http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"},
	}
}

// Load reads the file at path (none if empty), applies the environment and
// validates.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	cfg.fillDefaults()
	return cfg, cfg.Validate()
}

// fillDefaults restores defaults for fields a file left empty.
func (c *Config) fillDefaults() {
	d := Default()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.LogLevel == "" {
		c.LogLevel = d.LogLevel
	}
	if c.Keys.SecretsDir == "" {
		c.Keys.SecretsDir = d.Keys.SecretsDir
	}
	if c.Keys.CommandTimeout <= 0 {
		c.Keys.CommandTimeout = d.Keys.CommandTimeout
	}
	if c.Storage.DedupWindow <= 0 {
		c.Storage.DedupWindow = d.Storage.DedupWindow
	}
	if c.Storage.MaxOutbox <= 0 {
		c.Storage.MaxOutbox = d.Storage.MaxOutbox
	}
	if c.Storage.MinFreeBytes <= 0 {
		c.Storage.MinFreeBytes = d.Storage.MinFreeBytes
	}
	c.NATS.Replicas = c.StreamReplicas()
	if c.Cluster.Partitions <= 0 {
		c.Cluster.Partitions = DefaultPartitions
	}
	if c.NATS.MaxInFlight <= 0 {
		c.NATS.MaxInFlight = d.NATS.MaxInFlight
	}
	if c.NATS.DuplicateWindow <= 0 {
		c.NATS.DuplicateWindow = d.NATS.DuplicateWindow
	}
	if c.NATS.MaxAge <= 0 {
		c.NATS.MaxAge = d.NATS.MaxAge
	}
	if c.Limits.MaxEventBytes <= 0 {
		c.Limits.MaxEventBytes = d.Limits.MaxEventBytes
	}
	if c.Limits.MaxBatchBytes <= 0 {
		c.Limits.MaxBatchBytes = d.Limits.MaxBatchBytes
	}
	if c.Limits.MaxBatchEvents <= 0 {
		c.Limits.MaxBatchEvents = d.Limits.MaxBatchEvents
	}
	if c.Limits.MaxHeaderBytes <= 0 {
		c.Limits.MaxHeaderBytes = d.Limits.MaxHeaderBytes
	}
	if c.Limits.ReadTimeout <= 0 {
		c.Limits.ReadTimeout = d.Limits.ReadTimeout
	}
	if c.Auth.FailureBurst <= 0 {
		c.Auth.FailureBurst = d.Auth.FailureBurst
	}
	if c.Auth.FailureRefill <= 0 {
		c.Auth.FailureRefill = d.Auth.FailureRefill
	}
	if c.Auth.MaxNetworks <= 0 {
		c.Auth.MaxNetworks = d.Auth.MaxNetworks
	}
	if c.Console.SessionIdle <= 0 {
		c.Console.SessionIdle = d.Console.SessionIdle
	}
	if c.Console.SessionMax <= 0 {
		c.Console.SessionMax = d.Console.SessionMax
	}
	if len(c.Purposes) == 0 {
		c.Purposes = d.Purposes
	}
	for k, v := range d.Retention {
		if _, ok := c.Retention[k]; !ok {
			if c.Retention == nil {
				c.Retention = map[string]Duration{}
			}
			c.Retention[k] = v
		}
	}
	if len(c.Sites) == 0 {
		c.Sites = d.Sites
	}
	if c.Plugins == nil {
		c.Plugins = DefaultPlugins()
	}
	if c.SnippetPath == "" {
		c.SnippetPath = d.SnippetPath
	}
	if c.DemoPath == "" {
		c.DemoPath = d.DemoPath
	}
	r, dr := &c.PluginRuntime, d.PluginRuntime
	if r.MaxDeliver <= 0 {
		r.MaxDeliver = dr.MaxDeliver
	}
	if len(r.Backoff) == 0 {
		r.Backoff = dr.Backoff
	}
	if r.CallTimeout <= 0 {
		r.CallTimeout = dr.CallTimeout
	}
	if r.AckWait <= 0 {
		r.AckWait = dr.AckWait
	}
	if r.BatchSize <= 0 {
		r.BatchSize = dr.BatchSize
	}
	if r.MaxRestarts <= 0 {
		r.MaxRestarts = dr.MaxRestarts
	}
	if r.RestartBackoff <= 0 {
		r.RestartBackoff = dr.RestartBackoff
	}
	if r.MaxRestartBackoff <= 0 {
		r.MaxRestartBackoff = dr.MaxRestartBackoff
	}
	if r.ProfilePurposes == nil {
		r.ProfilePurposes = dr.ProfilePurposes
	}
	if r.ProfileTTL <= 0 {
		r.ProfileTTL = dr.ProfileTTL
	}
}

// Validate checks the configuration; errors wrap ErrInvalid and name the
// field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...)))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.GeoIP.Database == "" && c.GeoIP.IPv6Database != "" {
		bad("geoip.ipv6_database", "is set but geoip.database is not")
	}
	if len(c.Keys.MasterKeyCommand) > 0 && strings.TrimSpace(c.Keys.MasterKeyCommand[0]) == "" {
		bad("keys.master_key_command", "the first element must name the program to run")
	}
	if c.Keys.AdminTokenFile != "" && c.Keys.AdminToken != "" {
		bad("keys.admin_token_file", "%s is set too; keep one", EnvAdminToken)
	}
	for i, p := range c.Purposes {
		if err := consent.Register(p.Name); err != nil {
			bad(fmt.Sprintf("purposes[%d]", i), "%v", err)
		}
	}
	// Before the sites' consent policies, which may name it.
	errs = append(errs, c.validateSensitive()...)
	seenSite, seenKey := map[string]bool{}, map[string]string{}
	for i, s := range c.Sites {
		f := fmt.Sprintf("sites[%d]", i)
		if !validSiteID(s.ID) {
			bad(f+".id", "%q must be 1-64 characters of a-z, 0-9, _ and -", s.ID)
		}
		if seenSite[s.ID] {
			bad(f+".id", "%q is used twice", s.ID)
		}
		seenSite[s.ID] = true
		if len(s.WriteKeys) == 0 {
			bad(f+".write_keys", "at least one write key is needed")
		}
		for _, k := range s.WriteKeys {
			if k == "" {
				bad(f+".write_keys", "empty write key")
			}
			if other, ok := seenKey[k]; ok {
				bad(f+".write_keys", "a write key is shared with site %q", other)
			}
			seenKey[k] = s.ID
		}
		if _, err := s.Policy(); err != nil {
			bad(f+".consent", "%v", err)
		}
		if s.TestToken != "" && len(s.TestToken) < 16 {
			bad(f+".test_token", "must be at least 16 characters (it lets its bearer past the bot filter)")
		}
		c.validateSiteMinimisation(f, s, bad)
	}
	if !strings.HasPrefix(c.SnippetPath, "/") || strings.ContainsAny(c.SnippetPath, " {}") || strings.HasPrefix(c.SnippetPath, "/v1/") || strings.HasPrefix(c.SnippetPath, "/admin/") {
		bad("snippet_path", "%q must be an absolute path outside /v1/ and /admin/", c.SnippetPath)
	}
	if c.DemoPath != "off" && (!strings.HasPrefix(c.DemoPath, "/") || !strings.HasSuffix(c.DemoPath, "/") ||
		strings.ContainsAny(c.DemoPath, " {}") || strings.HasPrefix(c.DemoPath, "/v1/") || strings.HasPrefix(c.DemoPath, "/admin/")) {
		bad("demo_path", "%q must be a path ending in / outside /v1/ and /admin/, or off", c.DemoPath)
	}
	seenPlugin := map[string]bool{}
	for i, p := range c.Plugins {
		f := fmt.Sprintf("plugins[%d]", i)
		if !sdk.ValidName(p.Name) {
			bad(f+".name", "%q must be %s", p.Name, sdk.NameRule)
		}
		if seenPlugin[p.Name] {
			bad(f+".name", "%q is configured twice", p.Name)
		}
		seenPlugin[p.Name] = true
		if p.Path != "" && len(p.SHA256) != 64 {
			bad(f+".sha256", "the 64 hex digits of the binary's SHA-256 are required with a path (sha256sum %s)", p.Path)
		}
		if p.Path == "" && p.SHA256 != "" {
			bad(f+".sha256", "set only for an external plugin (with path)")
		}
		if p.Builtin != "" && p.Path != "" {
			bad(f+".builtin", "a built-in to run, or a path: not both")
		}
		if p.Builtin != "" && !sdk.ValidName(p.Builtin) {
			bad(f+".builtin", "%q must be %s", p.Builtin, sdk.NameRule)
		}
		for j, e := range p.Env {
			if name, _, _ := strings.Cut(e, "="); !envName(name) {
				bad(fmt.Sprintf("%s.env[%d]", f, j), "must be NAME=value, or NAME to pass on Vigie's own value (NAME: letters, digits and _, not starting with a digit)")
			}
		}
	}
	if c.PluginRuntime.AckWait >= c.NATS.DuplicateWindow {
		bad("plugin_runtime.ack_wait", "%s must be shorter than nats.duplicate_window (%s): the enrich stage republishes an event it had not acknowledged under the same id when it is delivered again",
			time.Duration(c.PluginRuntime.AckWait), time.Duration(c.NATS.DuplicateWindow))
	}
	for i, p := range c.PluginRuntime.ProfilePurposes {
		if !slices.ContainsFunc(c.Purposes, func(pi consent.PurposeInfo) bool { return pi.Name == p }) {
			bad(fmt.Sprintf("plugin_runtime.profile_purposes[%d]", i), "%q is not a configured purpose", p)
		}
	}
	for k, v := range c.Retention {
		switch {
		case v < 0:
			bad("retention."+k, "must not be negative")
		case k == RetentionRollups && time.Duration(v) < MinRollupRetention:
			bad("retention."+k, "must be at least %s (the overview's aggregates are not kept forever)", MinRollupRetention)
		}
	}
	if c.Console.SessionIdle > c.Console.SessionMax {
		bad("console.session_idle", "must not be longer than console.session_max (%s)", time.Duration(c.Console.SessionMax))
	}
	errs = append(errs, c.validateRights()...)
	errs = append(errs, c.validateCluster()...)
	return errors.Join(errs...)
}

// ValidSiteID reports whether s is a valid site id: 1–64 characters of
// a-z, 0-9, _ and - (site ids end up in keys and NATS subjects).
func ValidSiteID(s string) bool { return validSiteID(s) }

// envName reports whether s is an environment variable name.
func envName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// Environment is p's process environment: its env entries, each bare NAME
// replaced by NAME=<Vigie's value>, with the names of those Vigie's
// environment lacks.
func (p Plugin) Environment() (env, missing []string) {
	for _, e := range p.Env {
		if strings.Contains(e, "=") {
			env = append(env, e)
			continue
		}
		if v, ok := os.LookupEnv(e); ok {
			env = append(env, e+"="+v)
		} else {
			missing = append(missing, e)
		}
	}
	return env, missing
}

// BuiltinName is the built-in p runs (Builtin, or Name), "" for an
// external plugin.
func (p Plugin) BuiltinName() string {
	switch {
	case p.Path != "":
		return ""
	case p.Builtin != "":
		return p.Builtin
	}
	return p.Name
}

func validSiteID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Policy turns the site's YAML consent policy into a consent.Policy.
func (s Site) Policy() (consent.Policy, error) {
	p := consent.DefaultPolicy()
	if s.Consent.Unconsented != "" {
		o, err := consent.ParseOutcome(s.Consent.Unconsented)
		if err != nil {
			return p, err
		}
		p.Unconsented = o
	}
	if len(s.Consent.Defaults) > 0 {
		names := make([]string, len(s.Consent.Defaults))
		for i, d := range s.Consent.Defaults {
			names[i] = string(d)
		}
		set, err := consent.ParseSet(names...)
		if err != nil {
			return p, err
		}
		p.Defaults = set
	}
	if t := s.Consent.TCF; t.VendorID != 0 || t.PublisherTC || len(t.Purposes) > 0 || len(t.LegitimateInterest) > 0 {
		p.TCF.VendorID, p.TCF.PublisherTC = t.VendorID, t.PublisherTC
		if len(t.Purposes) > 0 {
			p.TCF.Purposes = t.Purposes
		}
		if len(t.LegitimateInterest) > 0 {
			p.TCF.LegitimateInterest = t.LegitimateInterest
		}
	}
	if len(s.Consent.ConsentMode) > 0 {
		p.ConsentMode = s.Consent.ConsentMode
	}
	for prov, ids := range s.Consent.ConsentManagement {
		key := prov
		for k := range p.ConsentManagement {
			if strings.EqualFold(k, prov) {
				key = k
			}
		}
		merged := make(map[string][]consent.Purpose, len(p.ConsentManagement[key])+len(ids))
		for id, ps := range p.ConsentManagement[key] {
			merged[id] = ps
		}
		for id, ps := range ids {
			merged[id] = ps
		}
		p.ConsentManagement[key] = merged
	}
	if s.Consent.HonorGPC != nil {
		p.HonorGPC = *s.Consent.HonorGPC
	}
	if s.Consent.HonorDNT != nil {
		p.HonorDNT = *s.Consent.HonorDNT
	}
	if len(s.Consent.Categories) > 0 {
		cats := make(map[string][]consent.Purpose, len(p.Categories)+len(s.Consent.Categories))
		for k, v := range p.Categories {
			cats[k] = v
		}
		for k, v := range s.Consent.Categories {
			cats[strings.ToLower(k)] = v
		}
		p.Categories = cats
	}
	return p, p.Validate()
}

// applyEnv sets fields from VIGIE_* variables.
func applyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, "VIGIE_") {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	cfg.Keys.MasterKey = Secret(env[EnvMasterKey])
	cfg.Keys.AdminToken = Secret(env[EnvAdminToken])
	return walkEnv(reflect.ValueOf(cfg).Elem(), "VIGIE", env)
}

var durationType = reflect.TypeOf(Duration(0))

func walkEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := walkEnv(fv, name, env); err != nil {
				return err
			}
			continue
		}
		raw, ok := env[name]
		if !ok {
			continue
		}
		if err := setFromEnv(fv, raw); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
		}
	}
	return nil
}

func setFromEnv(fv reflect.Value, raw string) error {
	switch {
	case fv.Type() == durationType:
		d, err := ParseDuration(raw)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	case fv.Kind() == reflect.String:
		fv.SetString(raw)
		return nil
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", raw)
		}
		fv.SetBool(b)
		return nil
	case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		fv.SetInt(n)
		return nil
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(strings.TrimSpace(raw), "["):
		parts := strings.Split(raw, ",")
		s := reflect.MakeSlice(fv.Type(), 0, len(parts))
		for _, p := range parts {
			if p = strings.TrimSpace(p); p != "" {
				s = reflect.Append(s, reflect.ValueOf(p).Convert(fv.Type().Elem()))
			}
		}
		fv.Set(s)
		return nil
	}
	// Structured fields: YAML (JSON is YAML too).
	ptr := reflect.New(fv.Type())
	if err := yaml.Unmarshal([]byte(raw), ptr.Interface()); err != nil {
		return err
	}
	fv.Set(ptr.Elem())
	return nil
}
