// Package sdk is what a Vigie plugin author imports: write a type with one
// method per hook (Enricher, Segmenter, Syncer), describe it in a Manifest
// and call Serve from main. The plugin runs as a separate process that Vigie
// launches and talks to over hashicorp/go-plugin's gRPC transport; nothing
// of gRPC shows in plugin code.
//
// During a hook, HostFrom(ctx) gives access to the host services the
// manifest declared: the subject's profile, a plugin-scoped key-value
// store, contact resolution, emitting derived events and structured logs.
//
// The host side (the Vigie plugin runtime) uses NewClientConfig, Connect
// and the Client type, which implements the same hook interfaces over gRPC.
// Package sdk/sdktest runs a plugin in-process against fake host services
// so that a plugin can be tested with go test and no running Vigie.
package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// ProtocolVersion is the plugin protocol version of this SDK, carried by
// the go-plugin handshake and by the Manifest. A host refuses a plugin
// built for another version with ErrProtocolVersion.
const ProtocolVersion = 1

// pluginName is the name the plugin is registered under in go-plugin.
const pluginName = "vigie"

// handshake is shared by Serve and NewClientConfig.
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "VIGIE_PLUGIN",
	MagicCookieValue: "e3c1d7a2-vigie-plugin-v1",
}

// Types of the event contract, aliased so plugin code needs no other import.
type (
	// Event is one event after consent, pseudonymization and scrubbing.
	Event = vigiev1.Event
	// Profile is what Vigie knows about one pseudonymous subject.
	Profile = vigiev1.Profile
	// ProfileUpdate is a change a segmenter makes to a profile.
	ProfileUpdate = vigiev1.ProfileUpdate
	// SegmentChange is a subject entering or leaving a segment.
	SegmentChange = vigiev1.SegmentChange
	// SyncItem is a segment change, identify event or privacy event to sync.
	SyncItem = vigiev1.SyncItem
	// Contact is personal data from the identity vault.
	Contact = vigiev1.Contact
	// PrivacyEvent is a consent change, erasure, objection, restriction or
	// rectification concerning one person's subjects.
	PrivacyEvent = vigiev1.PrivacyEvent
)

// Kind is a hook a plugin serves.
type Kind string

// Plugin kinds.
const (
	KindEnricher  Kind = "enricher"
	KindSegmenter Kind = "segmenter"
	KindSyncer    Kind = "syncer"
	// KindForgetter is listed for a plugin that serves the optional
	// Forgetter hook (alongside at least one of the others).
	KindForgetter Kind = "forgetter"
	// KindPrivacy is listed for a plugin that serves the optional
	// PrivacyListener hook (alongside at least one of the others).
	KindPrivacy Kind = "privacy"
)

// Capability is a host service a plugin may call back.
type Capability string

// Capabilities a manifest may declare. Log needs none.
const (
	CapProfilesRead    Capability = "profiles.read"
	CapKV              Capability = "kv"
	CapContactsResolve Capability = "contacts.resolve"
	CapEmit            Capability = "emit"
)

// capBit maps a capability to its bit in a capability mask.
func capBit(c Capability) uint8 {
	switch c {
	case CapProfilesRead:
		return 1 << 0
	case CapKV:
		return 1 << 1
	case CapContactsResolve:
		return 1 << 2
	case CapEmit:
		return 1 << 3
	}
	return 0
}

// Filter selects the events a plugin receives. An empty list matches
// everything; an entry ending in '*' matches by prefix.
type Filter struct {
	// Sites are site ids from the Vigie configuration.
	Sites []string
	// Types are event types: track, page, screen, identify, group, alias.
	Types []string
	// Names are track event names or page/screen names.
	Names []string
}

// Manifest describes a plugin to the host.
type Manifest struct {
	// Name identifies the plugin; required; ValidName: 1 to 64 of
	// lower-case letters, digits, '-' and '_'.
	Name string
	// Version is the plugin's own version; required.
	Version string
	// Description is one human-readable sentence.
	Description string
	// Kinds are the hooks the plugin serves. Serve fills it from the hooks
	// set on Plugin; a value set by the author is ignored.
	Kinds []Kind
	// Filter selects the events the plugin receives.
	Filter Filter
	// Purposes the plugin needs (e.g. "analytics", "marketing"): it only
	// receives events whose consent grants all of them.
	Purposes []string
	// Capabilities are the host services the plugin may call back.
	Capabilities []Capability
	// ConfigSchema is a JSON Schema for the plugin's configuration section;
	// optional, must be valid JSON when set.
	ConfigSchema []byte
	// ProtocolVersion is filled by Serve with the SDK's ProtocolVersion.
	ProtocolVersion int
}

// Has reports whether the manifest declares capability c.
func (m *Manifest) Has(c Capability) bool {
	for _, have := range m.Capabilities {
		if have == c {
			return true
		}
	}
	return false
}

// capMask returns the manifest's capabilities as a bit mask.
func (m *Manifest) capMask() uint8 {
	var mask uint8
	for _, c := range m.Capabilities {
		mask |= capBit(c)
	}
	return mask
}

// Enricher adds fields to events (e.g. geo data).
type Enricher interface {
	// Enrich returns the enriched events. It may modify and return the
	// events it is given; events it returns are matched to the input by
	// id, and an input event it leaves out is passed on unchanged.
	Enrich(ctx context.Context, events []*Event) ([]*Event, error)
}

// PassThrougher is an optional interface of an Enricher. PassThrough
// reports, once Configure has returned, whether the configuration leaves the
// plugin nothing to add: its Enrich would return every event unchanged (as
// GeoIP does without a database). The host then stops calling Enrich until
// it configures the plugin again (at its next start), which saves a call
// and a copy of every event.
type PassThrougher interface {
	PassThrough() bool
}

// SegmentResult is what a Segmenter decides for one event.
type SegmentResult struct {
	// Update changes the subject's profile; nil for no change.
	Update *ProfileUpdate
	// Changes are the segments the subject entered or left.
	Changes []*SegmentChange
}

// Segmenter updates profiles and segment membership from events.
type Segmenter interface {
	// Segment looks at one event and its subject's profile. A returned
	// error fails this event only (the host retries it).
	Segment(ctx context.Context, event *Event, profile *Profile) (*SegmentResult, error)
}

// Syncer performs side effects in an external system (a CRM, a webhook).
type Syncer interface {
	// Sync handles one item. A returned error fails this item only (the
	// host retries it).
	Sync(ctx context.Context, item *SyncItem) error
}

// BatchSyncer is an optional extension of Syncer for a plugin that sends
// items downstream in batches and tells the host more than success or
// failure: when the Syncer set on Plugin implements it, the host's batches
// go to SyncBatch instead of one Sync call per item.
type BatchSyncer interface {
	// SyncBatch handles items and returns one outcome per item, in order.
	SyncBatch(ctx context.Context, items []*SyncItem) []SyncOutcome
}

// SyncOutcome is what became of one sync item (BatchSyncer).
type SyncOutcome struct {
	// Err is nil when the item is done (or not supported).
	Err error
	// Permanent (with Err): retrying cannot help; the host dead-letters the
	// item at once, Err being the dead letter's reason.
	Permanent bool
	// RetryAfter (with Err): the failure is the destination's, not the
	// item's (it is down, throttling or paused); the host delivers the
	// item again after this delay without counting the failure towards
	// plugin_runtime.max_deliver. A plugin must bound how long it answers
	// so (by the item's age), or the item is retried until the stream
	// drops it.
	RetryAfter time.Duration
	// NotSupported (without Err): the plugin cannot carry out this item,
	// e.g. an erasure its destination cannot delete; the item is
	// acknowledged, and a privacy request's step says "not supported".
	NotSupported bool
	// Detail (without Err) says what was done, in words without
	// identifiers; a privacy request's step shows it.
	Detail string
}

// SyncError is the error of a failed item as the host sees it: the
// plugin's message and how to retry.
type SyncError struct {
	// Message is the plugin's error text.
	Message string
	// Permanent and RetryAfter are as in SyncOutcome.
	Permanent  bool
	RetryAfter time.Duration
}

// Error implements error.
func (e *SyncError) Error() string { return e.Message }

// Forgetter is an optional hook for a plugin that keeps something about
// subjects (in its key-value space, its own files or an external system):
// Vigie calls it with each erasure (GDPR Art. 17) and records the plugin's
// acknowledgement as a step of the privacy request. A plugin without it
// and without the kv capability is taken to keep nothing; one with kv but
// without Forget is reported as not supporting erasure.
type Forgetter interface {
	// Forget deletes whatever the plugin holds about the subjects of
	// events (each event's Subjects; Action PRIVACY_ACTION_ERASURE). It
	// must be idempotent: an event may come again. An error fails the
	// batch, which the host retries.
	Forget(ctx context.Context, events []*PrivacyEvent) error
}

// PrivacyListener is an optional hook for a plugin that must act on every
// privacy event of its sites, not only erasures: consent changes
// (PRIVACY_ACTION_CONSENT_CHANGED, Purposes granted after the change),
// objections (PRIVACY_ACTION_OBJECT, GDPR Art. 21: Objected names the
// purposes, Lifted an objection lifted), restrictions (Art. 18),
// rectifications and erasures (Art. 17). A model or a cache built for a
// purpose stops using a subject's data when the person objects to it,
// which events alone do not tell: an objection only removes the purpose
// from the person's later events, as a never-given consent would.
//
// Vigie gives such a plugin each privacy event of its sites, in order,
// through this hook, erasures included (its acknowledgement of an erasure
// is recorded as for Forget); a plugin serving it is not given erasures
// through Forget as well. Syncers get the same events through Sync.
type PrivacyListener interface {
	// PrivacyEvents handles a batch of privacy events (each event's
	// Subjects are every pseudonym of the person). It must be idempotent:
	// an event may come again. An error fails the batch, which the host
	// retries.
	PrivacyEvents(ctx context.Context, events []*PrivacyEvent) error
}

// Configurer receives the plugin's configuration section before any hook.
type Configurer interface {
	// Configure is given the plugin's configuration section as JSON
	// (nil when there is none). An error stops the plugin from loading.
	Configure(ctx context.Context, config []byte) error
}

// Plugin is what Serve serves: a manifest and at least one hook. One value
// may implement several hooks: set it on each field.
type Plugin struct {
	// Manifest describes the plugin; Name and Version are required.
	Manifest Manifest
	// Configurer is optional.
	Configurer Configurer
	// Enricher, Segmenter and Syncer are the hooks; at least one is set.
	Enricher  Enricher
	Segmenter Segmenter
	Syncer    Syncer
	// Forgetter is optional: the plugin forgets erased subjects.
	Forgetter Forgetter
	// PrivacyListener is optional: the plugin is given every privacy
	// event (erasures included, instead of through Forgetter).
	PrivacyListener PrivacyListener
}

// normalize validates p and returns it with Kinds and ProtocolVersion
// filled in.
func (p Plugin) normalize() (Plugin, error) {
	m := p.Manifest
	if !ValidName(m.Name) {
		return p, fmt.Errorf("%w: manifest name %q must be %s", ErrInvalidPlugin, m.Name, NameRule)
	}
	if m.Version == "" {
		return p, fmt.Errorf("%w: manifest version is required", ErrInvalidPlugin)
	}
	for _, c := range m.Capabilities {
		if capBit(c) == 0 {
			return p, fmt.Errorf("%w: unknown capability %q", ErrInvalidPlugin, c)
		}
	}
	if len(m.ConfigSchema) > 0 && !json.Valid(m.ConfigSchema) {
		return p, fmt.Errorf("%w: config schema is not valid JSON", ErrInvalidPlugin)
	}
	m.Kinds = nil
	if p.Enricher != nil {
		m.Kinds = append(m.Kinds, KindEnricher)
	}
	if p.Segmenter != nil {
		m.Kinds = append(m.Kinds, KindSegmenter)
	}
	if p.Syncer != nil {
		m.Kinds = append(m.Kinds, KindSyncer)
	}
	if len(m.Kinds) == 0 {
		return p, fmt.Errorf("%w: no hook set (Enricher, Segmenter or Syncer)", ErrInvalidPlugin)
	}
	if p.Forgetter != nil {
		m.Kinds = append(m.Kinds, KindForgetter)
	}
	if p.PrivacyListener != nil {
		m.Kinds = append(m.Kinds, KindPrivacy)
	}
	m.ProtocolVersion = ProtocolVersion
	p.Manifest = m
	return p, nil
}

// Describe returns p's manifest as Serve declares it to the host (Kinds
// and ProtocolVersion filled in), or why Serve would refuse p. It lets the
// host describe a built-in plugin without starting it.
func (p Plugin) Describe() (Manifest, error) {
	n, err := p.normalize()
	return n.Manifest, err
}

// NameRule says in words what ValidName accepts, for error messages, and
// NamePattern as a regular expression (JSON Schema "pattern").
const (
	NameRule    = "1-64 characters of a-z, 0-9, _ and -"
	NamePattern = "^[a-z0-9_-]{1,64}$"
)

// ValidName reports whether s is a valid plugin name: 1 to 64 of a-z, 0-9,
// '_' and '-'. This is the one rule on plugin names, for the SDK (Serve
// refuses a manifest that breaks it), the host's configuration and the
// plugin runtime: names end up as NATS subject tokens, consumer names and
// metric labels, where '.' separates tokens, so it is not allowed.
func ValidName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// Serve runs the plugin until the host stops it. It is called from the
// plugin's main and does not return: an invalid Plugin is reported on
// stderr and the process exits with status 1. Started by hand rather than
// by Vigie, it prints a notice and exits.
func Serve(p Plugin) {
	p, err := p.normalize()
	if err != nil {
		slog.Error("vigie plugin not served", "err", err)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         plugin.PluginSet{pluginName: &grpcPlugin{impl: &p}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// Host is the set of host services. A plugin gets one from HostFrom during
// a hook; the Vigie runtime (and sdktest) implements it for each plugin,
// scoping the key-value store to that plugin. Calls a manifest did not
// declare the capability for fail with ErrCapability.
type Host interface {
	// ProfileGet returns a subject's profile, or ErrNotFound
	// (capability profiles.read).
	ProfileGet(ctx context.Context, site, subject string) (*Profile, error)
	// KVGet returns the value stored under key, or ErrNotFound
	// (capability kv).
	KVGet(ctx context.Context, key string) ([]byte, error)
	// KVPut stores value under key; ttl 0 keeps it until deleted
	// (capability kv).
	KVPut(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// KVDelete deletes key; deleting a missing key is not an error
	// (capability kv).
	KVDelete(ctx context.Context, key string) error
	// ContactResolve returns a subject's contact details when consent
	// allows it, or ErrNotFound (capability contacts.resolve).
	ContactResolve(ctx context.Context, site, subject string) (*Contact, error)
	// Emit publishes a derived event (capability emit).
	Emit(ctx context.Context, event *Event) error
	// Log writes a structured line into the host's log, attributed to the
	// plugin. Never log identifiers, addresses or secrets.
	Log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr)
}

// hostKey is the context key of the Host.
type hostKey struct{}

// withHost returns ctx carrying h.
func withHost(ctx context.Context, h Host) context.Context {
	return context.WithValue(ctx, hostKey{}, h)
}

// ContextWithHost returns ctx carrying h, for calling a hook method
// directly in a unit test; h is used as is, without capability checks
// (sdktest.Start checks them as Vigie does).
func ContextWithHost(ctx context.Context, h Host) context.Context {
	return withHost(ctx, h)
}

// HostFrom returns the host services available to the hook running with
// ctx. Outside a hook it returns a Host whose calls fail with ErrNoHost;
// it never returns nil.
func HostFrom(ctx context.Context) Host {
	if h, ok := ctx.Value(hostKey{}).(Host); ok && h != nil {
		return h
	}
	return noHost{}
}

// noHost is the Host outside of a hook.
type noHost struct{}

func (noHost) ProfileGet(context.Context, string, string) (*Profile, error) { return nil, ErrNoHost }
func (noHost) KVGet(context.Context, string) ([]byte, error)                { return nil, ErrNoHost }
func (noHost) KVPut(context.Context, string, []byte, time.Duration) error   { return ErrNoHost }
func (noHost) KVDelete(context.Context, string) error                       { return ErrNoHost }
func (noHost) ContactResolve(context.Context, string, string) (*Contact, error) {
	return nil, ErrNoHost
}
func (noHost) Emit(context.Context, *Event) error                    { return ErrNoHost }
func (noHost) Log(context.Context, slog.Level, string, ...slog.Attr) {}
