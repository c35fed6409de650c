package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// ClientConfig configures the launch of one plugin process by the host.
type ClientConfig struct {
	// Cmd starts the plugin; required. Its Env is all the plugin gets:
	// the host's environment is never passed on.
	Cmd *exec.Cmd
	// Host serves the plugin's callbacks, already scoped to this plugin
	// (its own key-value space). Capability checks against the manifest
	// are done by the SDK before Host is called. Nil: every callback
	// fails with ErrNoHost.
	Host Host
	// SecureConfig, when set, makes go-plugin verify the binary's checksum
	// before starting it; set it for external plugins. Default: none.
	SecureConfig *plugin.SecureConfig
	// Logger receives go-plugin's own logs and the plugin's stderr lines.
	// Default: discarded.
	Logger hclog.Logger
	// Stderr, when set, also receives the plugin's raw stderr.
	Stderr io.Writer
	// StartTimeout bounds the handshake. Default: 1 minute.
	StartTimeout time.Duration
}

// NewClientConfig returns a go-plugin client configuration for cfg: gRPC
// only, automatic mutual TLS, no host environment, and (on Linux) a child
// process killed if the host dies. Start it with plugin.NewClient and
// Connect.
func NewClientConfig(cfg ClientConfig) *plugin.ClientConfig {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	if cfg.Cmd != nil {
		setParentDeathSignal(cfg.Cmd)
	}
	return &plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          plugin.PluginSet{pluginName: &grpcPlugin{host: cfg.Host}},
		Cmd:              cfg.Cmd,
		SecureConfig:     cfg.SecureConfig,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		Logger:           logger,
		Stderr:           cfg.Stderr,
		StartTimeout:     timeout,
	}
}

// Connect starts the plugin process of pc if needed, performs the
// handshake and returns the plugin as a Client. A plugin built for another
// protocol version fails with ErrProtocolVersion. The caller still owns pc
// and stops the plugin with pc.Kill.
func Connect(ctx context.Context, pc *plugin.Client) (*Client, error) {
	rpc, err := pc.Client()
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "incompatible api version") {
			return nil, fmt.Errorf("%w: %v (this host speaks version %d)", ErrProtocolVersion, err, ProtocolVersion)
		}
		return nil, fmt.Errorf("sdk: start plugin: %w", err)
	}
	return Dispense(ctx, rpc)
}

// Dispense returns the plugin behind an established go-plugin connection
// (from plugin.Client.Client or plugin.TestPluginGRPCConn) and fetches its
// manifest. The connection must have been set up with NewClientConfig or
// PluginSet.
func Dispense(ctx context.Context, rpc plugin.ClientProtocol) (*Client, error) {
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		return nil, fmt.Errorf("sdk: dispense plugin: %w", err)
	}
	c, ok := raw.(*Client)
	if !ok {
		return nil, fmt.Errorf("%w: unexpected plugin type %T", ErrInvalidPlugin, raw)
	}
	m, err := c.rpc.Manifest(ctx, &vigiev1.ManifestRequest{HostBrokerId: c.hostID, ProtocolVersion: ProtocolVersion})
	if err != nil {
		return nil, fmt.Errorf("sdk: manifest: %w", fromStatus(err))
	}
	if m.GetProtocolVersion() != ProtocolVersion {
		return nil, fmt.Errorf("%w: plugin %q speaks version %d, this host speaks %d",
			ErrProtocolVersion, m.GetName(), m.GetProtocolVersion(), ProtocolVersion)
	}
	c.manifest = manifestFromProto(m)
	c.hs.caps.Store(uint32(c.manifest.capMask()))
	return c, nil
}

// PluginSet returns the go-plugin plugin set for serving p with host
// services host in one process, as sdktest does with
// plugin.TestPluginGRPCConn; Dispense then returns its Client.
func PluginSet(p Plugin, host Host) (plugin.PluginSet, error) {
	p, err := p.normalize()
	if err != nil {
		return nil, err
	}
	return plugin.PluginSet{pluginName: &grpcPlugin{impl: &p, host: host}}, nil
}

// Client is a running plugin seen from the host. It implements Configurer,
// Enricher, Segmenter, Syncer and Forgetter (and PrivacyListener, through
// Forget) over gRPC; a hook the plugin does not
// serve fails with ErrNotImplemented. It is safe for concurrent use.
type Client struct {
	rpc      vigiev1.PluginClient
	hs       *hostServer
	hostID   uint32
	manifest Manifest
	// passThrough is what the last Configure answered (PassThrougher).
	passThrough atomic.Bool
}

// Manifest returns the plugin's manifest, as fetched at connection.
func (c *Client) Manifest() Manifest { return c.manifest }

// Configure passes the plugin its configuration section as JSON.
func (c *Client) Configure(ctx context.Context, config []byte) error {
	r, err := c.rpc.Configure(ctx, &vigiev1.ConfigureRequest{Config: config})
	if err != nil {
		return fromStatus(err)
	}
	c.passThrough.Store(r.GetEnrichPassThrough())
	return nil
}

// EnrichPassThrough reports whether the plugin answered its last Configure
// that its Enrich returns every event unchanged (PassThrougher): the host
// need not call it.
func (c *Client) EnrichPassThrough() bool { return c.passThrough.Load() }

// Enrich sends a batch of events to the plugin and returns its result.
func (c *Client) Enrich(ctx context.Context, events []*Event) ([]*Event, error) {
	r, err := c.rpc.Enrich(ctx, &vigiev1.EnrichRequest{Events: events})
	if err != nil {
		return nil, fromStatus(err)
	}
	return r.GetEvents(), nil
}

// Segment sends one event and its profile; prefer SegmentBatch for
// throughput.
func (c *Client) Segment(ctx context.Context, event *Event, profile *Profile) (*SegmentResult, error) {
	res, errs, err := c.SegmentBatch(ctx, []*vigiev1.SegmentInput{{Event: event, Profile: profile}})
	if err != nil {
		return nil, err
	}
	if errs[0] != nil {
		return nil, errs[0]
	}
	return &res[0], nil
}

// SegmentBatch sends a batch in one call. It returns one result and one
// error (nil on success) per item, in order; err is set when the whole
// call failed.
func (c *Client) SegmentBatch(ctx context.Context, items []*vigiev1.SegmentInput) (results []SegmentResult, errs []error, err error) {
	r, err := c.rpc.Segment(ctx, &vigiev1.SegmentRequest{Items: items})
	if err != nil {
		return nil, nil, fromStatus(err)
	}
	outs := r.GetResults()
	if len(outs) != len(items) {
		return nil, nil, fmt.Errorf("%w: %d segment results for %d items", ErrInvalidPlugin, len(outs), len(items))
	}
	results = make([]SegmentResult, len(outs))
	errs = make([]error, len(outs))
	for i, o := range outs {
		if o.GetError() != "" {
			errs[i] = errors.New(o.GetError())
			continue
		}
		results[i] = SegmentResult{Update: o.GetUpdate(), Changes: o.GetChanges()}
	}
	return results, errs, nil
}

// Sync sends one item; prefer SyncBatch for throughput.
func (c *Client) Sync(ctx context.Context, item *SyncItem) error {
	errs, err := c.SyncBatch(ctx, []*SyncItem{item})
	if err != nil {
		return err
	}
	return errs[0]
}

// SyncBatch sends a batch in one call. It returns one error (nil on
// success) per item, in order, a *SyncError for a failed item; err is set
// when the whole call failed.
func (c *Client) SyncBatch(ctx context.Context, items []*SyncItem) (errs []error, err error) {
	outs, err := c.SyncOutcomes(ctx, items)
	if err != nil {
		return nil, err
	}
	errs = make([]error, len(outs))
	for i, o := range outs {
		errs[i] = o.Err
	}
	return errs, nil
}

// SyncOutcomes sends a batch in one call and returns one outcome per item,
// in order (Err a *SyncError for a failed item); err is set when the whole
// call failed.
func (c *Client) SyncOutcomes(ctx context.Context, items []*SyncItem) ([]SyncOutcome, error) {
	r, err := c.rpc.Sync(ctx, &vigiev1.SyncRequest{Items: items})
	if err != nil {
		return nil, fromStatus(err)
	}
	res := r.GetResults()
	if len(res) != len(items) {
		return nil, fmt.Errorf("%w: %d sync results for %d items", ErrInvalidPlugin, len(res), len(items))
	}
	outs := make([]SyncOutcome, len(res))
	for i, o := range res {
		if o.GetError() != "" {
			se := &SyncError{Message: o.GetError(), Permanent: o.GetPermanent(), RetryAfter: time.Duration(o.GetRetryAfterMs()) * time.Millisecond}
			outs[i] = SyncOutcome{Err: se, Permanent: se.Permanent, RetryAfter: se.RetryAfter}
			continue
		}
		outs[i] = SyncOutcome{NotSupported: o.GetNotSupported(), Detail: o.GetDetail()}
	}
	return outs, nil
}

// Forget sends erasure events to a plugin that serves the Forgetter hook
// (its manifest lists KindForgetter), or any privacy events to one that
// serves the PrivacyListener hook (KindPrivacy); other plugins answer
// ErrNotImplemented.
func (c *Client) Forget(ctx context.Context, events []*PrivacyEvent) error {
	_, err := c.rpc.Forget(ctx, &vigiev1.ForgetRequest{Events: events})
	return fromStatus(err)
}

// hostServer serves the Host service to the plugin, checking each call
// against the manifest's capabilities.
type hostServer struct {
	vigiev1.UnimplementedHostServer
	host Host
	caps atomic.Uint32 // capability mask; 0 until the manifest is known
}

// check returns nil when the plugin may use capability c.
func (s *hostServer) check(c Capability) error {
	if uint32(capBit(c))&s.caps.Load() == 0 {
		return toStatus(fmt.Errorf("%w: %s", ErrCapability, c))
	}
	if s.host == nil {
		return toStatus(ErrNoHost)
	}
	return nil
}

func (s *hostServer) ProfileGet(ctx context.Context, req *vigiev1.ProfileGetRequest) (*vigiev1.Profile, error) {
	if err := s.check(CapProfilesRead); err != nil {
		return nil, err
	}
	p, err := s.host.ProfileGet(ctx, req.GetSite(), req.GetSubject())
	if err == nil && p == nil {
		err = ErrNotFound
	}
	return p, toStatus(err)
}

func (s *hostServer) KVGet(ctx context.Context, req *vigiev1.KVGetRequest) (*vigiev1.KVGetResponse, error) {
	if err := s.check(CapKV); err != nil {
		return nil, err
	}
	v, err := s.host.KVGet(ctx, req.GetKey())
	if errors.Is(err, ErrNotFound) {
		return &vigiev1.KVGetResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &vigiev1.KVGetResponse{Value: v, Found: true}, nil
}

func (s *hostServer) KVPut(ctx context.Context, req *vigiev1.KVPutRequest) (*vigiev1.KVPutResponse, error) {
	if err := s.check(CapKV); err != nil {
		return nil, err
	}
	ttl := time.Duration(max(req.GetTtlMs(), 0)) * time.Millisecond
	if err := s.host.KVPut(ctx, req.GetKey(), req.GetValue(), ttl); err != nil {
		return nil, toStatus(err)
	}
	return &vigiev1.KVPutResponse{}, nil
}

func (s *hostServer) KVDelete(ctx context.Context, req *vigiev1.KVDeleteRequest) (*vigiev1.KVDeleteResponse, error) {
	if err := s.check(CapKV); err != nil {
		return nil, err
	}
	if err := s.host.KVDelete(ctx, req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	return &vigiev1.KVDeleteResponse{}, nil
}

func (s *hostServer) ContactResolve(ctx context.Context, req *vigiev1.ContactResolveRequest) (*vigiev1.Contact, error) {
	if err := s.check(CapContactsResolve); err != nil {
		return nil, err
	}
	c, err := s.host.ContactResolve(ctx, req.GetSite(), req.GetSubject())
	if err == nil && c == nil {
		err = ErrNotFound
	}
	return c, toStatus(err)
}

func (s *hostServer) Emit(ctx context.Context, req *vigiev1.EmitRequest) (*vigiev1.EmitResponse, error) {
	if err := s.check(CapEmit); err != nil {
		return nil, err
	}
	if req.GetEvent() == nil {
		return nil, toStatus(fmt.Errorf("%w: emit without an event", ErrInvalidPlugin))
	}
	if err := s.host.Emit(ctx, req.GetEvent()); err != nil {
		return nil, toStatus(err)
	}
	return &vigiev1.EmitResponse{}, nil
}

func (s *hostServer) Log(ctx context.Context, req *vigiev1.LogRequest) (*vigiev1.LogResponse, error) {
	if s.host != nil {
		attrs := make([]slog.Attr, len(req.GetAttrs()))
		for i, a := range req.GetAttrs() {
			attrs[i] = slog.String(a.GetKey(), a.GetValue())
		}
		s.host.Log(ctx, slog.Level(req.GetLevel()), req.GetMessage(), attrs...)
	}
	return &vigiev1.LogResponse{}, nil
}

// manifestToProto converts a Manifest to its wire form.
func manifestToProto(m *Manifest) *vigiev1.Manifest {
	pm := &vigiev1.Manifest{
		Name:            m.Name,
		Version:         m.Version,
		Description:     m.Description,
		Filter:          &vigiev1.EventFilter{Sites: m.Filter.Sites, Types: m.Filter.Types, Names: m.Filter.Names},
		Purposes:        m.Purposes,
		ConfigSchema:    m.ConfigSchema,
		ProtocolVersion: uint32(m.ProtocolVersion),
	}
	for _, k := range m.Kinds {
		pm.Kinds = append(pm.Kinds, string(k))
	}
	for _, c := range m.Capabilities {
		pm.Capabilities = append(pm.Capabilities, string(c))
	}
	return pm
}

// manifestFromProto converts a wire manifest to a Manifest.
func manifestFromProto(pm *vigiev1.Manifest) Manifest {
	m := Manifest{
		Name:            pm.GetName(),
		Version:         pm.GetVersion(),
		Description:     pm.GetDescription(),
		Filter:          Filter{Sites: pm.GetFilter().GetSites(), Types: pm.GetFilter().GetTypes(), Names: pm.GetFilter().GetNames()},
		Purposes:        pm.GetPurposes(),
		ConfigSchema:    pm.GetConfigSchema(),
		ProtocolVersion: int(pm.GetProtocolVersion()),
	}
	for _, k := range pm.GetKinds() {
		m.Kinds = append(m.Kinds, Kind(k))
	}
	for _, c := range pm.GetCapabilities() {
		m.Capabilities = append(m.Capabilities, Capability(c))
	}
	return m
}
