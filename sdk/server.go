package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// grpcPlugin is the go-plugin glue. On the plugin side impl is set; on the
// host side host is.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl *Plugin
	host Host
}

// GRPCServer registers the plugin service (plugin side).
func (g *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if g.impl == nil {
		return fmt.Errorf("%w: no plugin to serve", ErrInvalidPlugin)
	}
	vigiev1.RegisterPluginServer(s, &pluginServer{p: g.impl, broker: broker})
	return nil
}

// GRPCClient returns a *Client (host side) and starts the Host service on
// the broker for the plugin to call back.
func (g *grpcPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	hs := &hostServer{host: g.host}
	id := broker.NextId()
	go broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		vigiev1.RegisterHostServer(s, hs)
		return s
	})
	return &Client{rpc: vigiev1.NewPluginClient(conn), hs: hs, hostID: id}, nil
}

// pluginServer serves the Plugin service in the plugin process.
type pluginServer struct {
	vigiev1.UnimplementedPluginServer
	p      *Plugin
	broker *plugin.GRPCBroker

	mu     sync.Mutex
	hostID uint32
	conn   *grpc.ClientConn
	host   Host
}

// currentHost returns the Host client, or noHost before the handshake.
func (s *pluginServer) currentHost() Host {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.host == nil {
		return noHost{}
	}
	return s.host
}

// Manifest connects to the host's Host service and returns the manifest.
func (s *pluginServer) Manifest(_ context.Context, req *vigiev1.ManifestRequest) (*vigiev1.Manifest, error) {
	if id := req.GetHostBrokerId(); id != 0 {
		s.mu.Lock()
		if id != s.hostID {
			conn, err := s.broker.Dial(id)
			if err != nil {
				s.mu.Unlock()
				return nil, toStatus(fmt.Errorf("%w: dial host services: %v", ErrNoHost, err))
			}
			if s.conn != nil {
				_ = s.conn.Close()
			}
			s.hostID, s.conn = id, conn
			s.host = &remoteHost{c: vigiev1.NewHostClient(conn)}
		}
		s.mu.Unlock()
	}
	return manifestToProto(&s.p.Manifest), nil
}

// Configure passes the configuration to the Configurer, if any.
func (s *pluginServer) Configure(ctx context.Context, req *vigiev1.ConfigureRequest) (*vigiev1.ConfigureResponse, error) {
	if s.p.Configurer != nil {
		if err := s.p.Configurer.Configure(withHost(ctx, s.currentHost()), req.GetConfig()); err != nil {
			return nil, toStatus(err)
		}
	}
	resp := &vigiev1.ConfigureResponse{}
	if pt, ok := s.p.Enricher.(PassThrougher); ok {
		resp.EnrichPassThrough = pt.PassThrough()
	}
	return resp, nil
}

// Enrich calls the Enricher with the whole batch.
func (s *pluginServer) Enrich(ctx context.Context, req *vigiev1.EnrichRequest) (*vigiev1.EnrichResponse, error) {
	if s.p.Enricher == nil {
		return nil, toStatus(ErrNotImplemented)
	}
	out, err := s.p.Enricher.Enrich(withHost(ctx, s.currentHost()), req.GetEvents())
	if err != nil {
		return nil, toStatus(err)
	}
	return &vigiev1.EnrichResponse{Events: out}, nil
}

// Segment calls the Segmenter once per item.
func (s *pluginServer) Segment(ctx context.Context, req *vigiev1.SegmentRequest) (*vigiev1.SegmentResponse, error) {
	if s.p.Segmenter == nil {
		return nil, toStatus(ErrNotImplemented)
	}
	ctx = withHost(ctx, s.currentHost())
	items := req.GetItems()
	results := make([]*vigiev1.SegmentOutput, len(items))
	for i, it := range items {
		out := &vigiev1.SegmentOutput{}
		res, err := s.p.Segmenter.Segment(ctx, it.GetEvent(), it.GetProfile())
		switch {
		case err != nil:
			out.Error = err.Error()
		case res != nil:
			out.Update, out.Changes = res.Update, res.Changes
		}
		results[i] = out
	}
	return &vigiev1.SegmentResponse{Results: results}, nil
}

// Sync calls the Syncer once per item.
func (s *pluginServer) Sync(ctx context.Context, req *vigiev1.SyncRequest) (*vigiev1.SyncResponse, error) {
	if s.p.Syncer == nil {
		return nil, toStatus(ErrNotImplemented)
	}
	ctx = withHost(ctx, s.currentHost())
	items := req.GetItems()
	results := make([]*vigiev1.SyncResult, len(items))
	if bs, ok := s.p.Syncer.(BatchSyncer); ok {
		outs := bs.SyncBatch(ctx, items)
		if len(outs) != len(items) {
			return nil, toStatus(fmt.Errorf("%w: SyncBatch returned %d outcomes for %d items", ErrInvalidPlugin, len(outs), len(items)))
		}
		for i, o := range outs {
			results[i] = syncResult(o)
		}
		return &vigiev1.SyncResponse{Results: results}, nil
	}
	for i, it := range items {
		results[i] = syncResult(SyncOutcome{Err: s.p.Syncer.Sync(ctx, it)})
	}
	return &vigiev1.SyncResponse{Results: results}, nil
}

// syncResult is the wire form of o.
func syncResult(o SyncOutcome) *vigiev1.SyncResult {
	if o.Err != nil {
		msg := o.Err.Error()
		if msg == "" {
			msg = "failed"
		}
		return &vigiev1.SyncResult{Error: msg, Permanent: o.Permanent, RetryAfterMs: o.RetryAfter.Milliseconds()}
	}
	return &vigiev1.SyncResult{NotSupported: o.NotSupported, Detail: o.Detail}
}

// Forget calls the PrivacyListener, else the Forgetter, with the whole
// batch.
func (s *pluginServer) Forget(ctx context.Context, req *vigiev1.ForgetRequest) (*vigiev1.ForgetResponse, error) {
	var err error
	ctx = withHost(ctx, s.currentHost())
	switch {
	case s.p.PrivacyListener != nil:
		err = s.p.PrivacyListener.PrivacyEvents(ctx, req.GetEvents())
	case s.p.Forgetter != nil:
		err = s.p.Forgetter.Forget(ctx, req.GetEvents())
	default:
		return nil, toStatus(ErrNotImplemented)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &vigiev1.ForgetResponse{}, nil
}

// remoteHost is the plugin's view of the host services, over the broker.
type remoteHost struct {
	c vigiev1.HostClient
}

func (h *remoteHost) ProfileGet(ctx context.Context, site, subject string) (*Profile, error) {
	p, err := h.c.ProfileGet(ctx, &vigiev1.ProfileGetRequest{Site: site, Subject: subject})
	return p, fromStatus(err)
}

func (h *remoteHost) KVGet(ctx context.Context, key string) ([]byte, error) {
	r, err := h.c.KVGet(ctx, &vigiev1.KVGetRequest{Key: key})
	if err != nil {
		return nil, fromStatus(err)
	}
	if !r.GetFound() {
		return nil, ErrNotFound
	}
	return r.GetValue(), nil
}

func (h *remoteHost) KVPut(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	_, err := h.c.KVPut(ctx, &vigiev1.KVPutRequest{Key: key, Value: value, TtlMs: ttl.Milliseconds()})
	return fromStatus(err)
}

func (h *remoteHost) KVDelete(ctx context.Context, key string) error {
	_, err := h.c.KVDelete(ctx, &vigiev1.KVDeleteRequest{Key: key})
	return fromStatus(err)
}

func (h *remoteHost) ContactResolve(ctx context.Context, site, subject string) (*Contact, error) {
	c, err := h.c.ContactResolve(ctx, &vigiev1.ContactResolveRequest{Site: site, Subject: subject})
	return c, fromStatus(err)
}

func (h *remoteHost) Emit(ctx context.Context, event *Event) error {
	_, err := h.c.Emit(ctx, &vigiev1.EmitRequest{Event: event})
	return fromStatus(err)
}

func (h *remoteHost) Log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	req := &vigiev1.LogRequest{Level: int32(level), Message: msg}
	if len(attrs) > 0 {
		req.Attrs = make([]*vigiev1.LogAttr, len(attrs))
		for i, a := range attrs {
			req.Attrs[i] = &vigiev1.LogAttr{Key: a.Key, Value: a.Value.String()}
		}
	}
	_, _ = h.c.Log(ctx, req) // a lost log line must not fail the hook
}
