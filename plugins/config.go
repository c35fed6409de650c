package plugins

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/storage"
)

// Spec configures one plugin.
type Spec struct {
	// Name is the plugin's name; it must equal the name in the plugin's
	// manifest. Required.
	Name string
	// Path is the plugin binary for an external plugin; empty for a
	// built-in, which is started with Config.Builtin.
	Path string
	// Builtin names the built-in to run when it is not Name: one built-in
	// configured several times under names of its own (each CRM
	// destination is a "crm" built-in). Its manifest names the built-in.
	// Only without Path. Default Name.
	Builtin string
	// Purposes are purposes this configuration of the plugin needs besides
	// those of its manifest (a CRM destination's): the plugin receives,
	// and is given contacts for, only subjects granting all of them.
	Purposes []string
	// SHA256 is the hex SHA-256 of the binary at Path; required with Path
	// (go-plugin verifies it before starting the process).
	SHA256 string
	// Config is the plugin's configuration section as JSON, passed to its
	// Configure hook. Nil: none.
	Config []byte
	// Env is the plugin process's whole environment (the host's is never
	// passed on). Default: empty.
	Env []string
}

// Config configures the runtime. The zero value of each optional field
// selects its documented default.
type Config struct {
	// Plugins to run, in order: enrichers are applied to an event in this
	// order.
	Plugins []Spec
	// Builtin returns the command that starts the built-in plugin name
	// (Vigie re-executes itself with a hidden subcommand). Required when a
	// Spec has no Path.
	Builtin func(name string) (*exec.Cmd, error)
	// Store keeps profiles, plugin key-value data and emitted events.
	// Required.
	Store *storage.Store
	// JetStream is the bus. Required.
	JetStream jetstream.JetStream
	// Sites are the configured site ids; emitted events must name one.
	Sites []string
	// Partitions is, in cluster mode, this node's share of the
	// segmentation partitions (proxy/cluster.Leases): the enrich stage
	// then publishes on vigie.enriched.<site>.<partition>.<type>, the
	// segment stage consumes only the partitions it owns and keeps their
	// profiles in KV VIGIE_PROFILES (Store must have PortableProfiles).
	// Nil for a single node: one consumer per segmenter, Badger only.
	Partitions Partitions
	// Node is, in cluster mode, this node's id (cluster.node_id). A plugin
	// with a key-value space that is not a syncer then hears every privacy
	// event on a consumer of its own node ("privacy-<plugin>-<node>"):
	// its space is this node's Badger, so an erasure, withdrawal or
	// objection must reach its instance on every node, not the one that
	// took it from a shared consumer. Empty for a single node.
	Node string
	// Purposes are the known purpose names; a manifest naming another is
	// refused.
	Purposes []string
	// ProfilePurposes: an event is profiled (and given to segmenters) only
	// when its consent grants at least one of them; a subject whose later
	// event grants none loses its profile. Default [personalization,
	// marketing].
	ProfilePurposes []string
	// MaxDeliver is how many times a message is tried before it is
	// dead-lettered. Default 5.
	MaxDeliver int
	// Backoff is the delay before the n-th retry of a failed message (the
	// last value repeats). Default 1s, 5s, 30s, 2m.
	Backoff []time.Duration
	// CallTimeout bounds one hook call and one ping; a plugin that does
	// not answer in time is considered hung, killed (SIGKILL) and
	// restarted. Default 10s.
	CallTimeout time.Duration
	// AckWait is how long a delivered message may go unacknowledged before
	// JetStream delivers it again. It is short because a delivery can go
	// astray: one made to a pull request its client has just given up
	// (the client waits the request's expiry plus a second, which a
	// starved process can overrun) counts as delivered and comes back only
	// after AckWait. A message in hand is marked in progress every
	// AckWait/3, so a slow plugin call (up to CallTimeout, restarts
	// included) never gets it delivered twice. Default 10s.
	AckWait time.Duration
	// BatchSize is the most events given to a plugin in one call.
	// Default 100.
	BatchSize int
	// RestartBackoff is the first delay before restarting a crashed
	// plugin; it doubles with each consecutive crash up to
	// MaxRestartBackoff. Default 500ms.
	RestartBackoff time.Duration
	// MaxRestartBackoff caps the restart delay. Default 1m.
	MaxRestartBackoff time.Duration
	// MaxRestarts is how many consecutive crashes (without a successful
	// call in between) mark a plugin failed; a failed plugin is retried
	// every FailedRetry. Default 5.
	MaxRestarts int
	// FailedRetry is how often a failed plugin is tried again. Default 5m.
	FailedRetry time.Duration
	// PingInterval is how often each plugin process is checked. Default 5s.
	PingInterval time.Duration
	// Streams configures the streams the runtime declares (replicas,
	// duplicate window, max age): the same settings as the bus's, since
	// both declare the streams they share. The zero value selects package
	// streams' defaults.
	Streams streams.Settings
	// EmitTTL is the retention of events emitted by plugins. Default 395
	// days.
	EmitTTL time.Duration
	// ContactAudit, when set, is told of contact details before they are
	// given to a plugin (sync items and ContactResolve): the audit trail.
	// An error keeps the details from the plugin (the batch is retried,
	// the call fails). Default none.
	ContactAudit func(ctx context.Context, r ContactResolution) error
	// Privacy receives each plugin's acknowledgement of each erasure
	// (privacy.go). Default: none.
	Privacy PrivacyAcker
	// SyncHistoryTTL is how long the record of what a syncer was given
	// about a subject is kept (the marketing retention). Default 395 days.
	SyncHistoryTTL time.Duration
	// CheckManifest, when set, is asked about every plugin's manifest after
	// the runtime's own checks, at each start of its process: an error
	// refuses the plugin (it is marked failed and never fed), e.g. a plugin
	// that could receive identifiers of a site where none may go. Default:
	// none.
	CheckManifest func(Spec, sdk.Manifest) error
	// Registerer receives the runtime's Prometheus metrics. Default: none.
	Registerer prometheus.Registerer
	// Logger receives the runtime's and the plugins' logs. Default
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.ProfilePurposes == nil {
		c.ProfilePurposes = []string{"personalization", "marketing"}
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 10 * time.Second
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.RestartBackoff <= 0 {
		c.RestartBackoff = 500 * time.Millisecond
	}
	if c.MaxRestartBackoff <= 0 {
		c.MaxRestartBackoff = time.Minute
	}
	if c.MaxRestarts <= 0 {
		c.MaxRestarts = 5
	}
	if c.FailedRetry <= 0 {
		c.FailedRetry = 5 * time.Minute
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 5 * time.Second
	}
	if c.EmitTTL <= 0 {
		c.EmitTTL = 395 * 24 * time.Hour
	}
	if c.SyncHistoryTTL <= 0 {
		c.SyncHistoryTTL = 395 * 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate checks c (after defaults).
func (c Config) validate() error {
	seen := map[string]bool{}
	for _, s := range c.Plugins {
		if !sdk.ValidName(s.Name) {
			return fmt.Errorf("%w: plugin name %q must be %s", ErrInvalidConfig, s.Name, sdk.NameRule)
		}
		if seen[s.Name] {
			return fmt.Errorf("%w: plugin %q configured twice", ErrInvalidConfig, s.Name)
		}
		seen[s.Name] = true
		if s.Path == "" && c.Builtin == nil {
			return fmt.Errorf("%w: plugin %q: no path and no built-in launcher", ErrInvalidConfig, s.Name)
		}
		if s.Path != "" && s.Builtin != "" {
			return fmt.Errorf("%w: plugin %q: a built-in to run and a path", ErrInvalidConfig, s.Name)
		}
		if s.Builtin != "" && !sdk.ValidName(s.Builtin) {
			return fmt.Errorf("%w: plugin %q: built-in name %q must be %s", ErrInvalidConfig, s.Name, s.Builtin, sdk.NameRule)
		}
		if s.Path != "" {
			if sum, err := hex.DecodeString(s.SHA256); err != nil || len(sum) != 32 {
				return fmt.Errorf("%w: plugin %q: sha256 must be the 64 hex digits of the binary's SHA-256 (sha256sum %s)",
					ErrInvalidConfig, s.Name, s.Path)
			}
		}
	}
	for _, p := range c.ProfilePurposes {
		if len(c.Purposes) > 0 && !slices.Contains(c.Purposes, p) {
			return fmt.Errorf("%w: profile purpose %q is not a configured purpose", ErrInvalidConfig, p)
		}
	}
	if c.Store == nil || c.JetStream == nil {
		return fmt.Errorf("%w: Store and JetStream are required", ErrInvalidConfig)
	}
	return nil
}

// builtinName is the built-in that runs s.
func (s Spec) builtinName() string {
	if s.Builtin != "" {
		return s.Builtin
	}
	return s.Name
}

// backoff returns the delay before retry n (n ≥ 1).
func (c Config) backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > len(c.Backoff) {
		n = len(c.Backoff)
	}
	return c.Backoff[n-1]
}
