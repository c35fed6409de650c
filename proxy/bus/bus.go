// Package bus connects Vigie to NATS JetStream: it runs the embedded NATS
// server (or connects to an external one), keeps the streams the outbox is
// published to (VIGIE_EVENTS and VIGIE_PRIVACY, declared again whenever
// NATS lost them), and drains the storage outbox into them with a
// Publisher.
package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
)

// ErrNotReady is returned when the server or stream cannot be reached yet.
var ErrNotReady = errors.New("bus: not ready")

// Config configures the bus.
type Config struct {
	// URL of an external NATS server; empty runs an embedded server.
	URL string
	// StoreDir is the embedded server's JetStream directory (required
	// when URL is empty).
	StoreDir string
	// Listen opens a client port on the embedded server ("host:port");
	// empty (default) opens none.
	Listen string
	// CredsFile, User, Password, Token, TLSCA, TLSCert, TLSKey
	// authenticate to an external server.
	CredsFile, User, Password, Token string
	TLSCA, TLSCert, TLSKey           string
	// Streams configures the streams (replicas, duplicate window, max
	// age); the zero value selects package streams' defaults.
	Streams streams.Settings
	// Buckets are the KV buckets declared with the streams (cluster mode);
	// default none.
	Buckets []string
	// SyncInterval of the embedded JetStream store: a duration, "always",
	// or empty for NATS's default (2m).
	SyncInterval string
	// Logger receives the server's warnings. Default slog.Default().
	Logger *slog.Logger
}

// Bus is a NATS connection with JetStream, and the embedded server when
// there is one.
type Bus struct {
	cfg Config
	log *slog.Logger

	// decl declares the streams the publisher writes to.
	decl *streams.Declarer

	mu  sync.Mutex
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

// published are the streams the bus declares: those the outbox is
// published to.
var published = []string{streams.Events, streams.Privacy}

// New returns a Bus; nothing starts until Start.
func New(cfg Config) (*Bus, error) {
	if cfg.URL == "" && cfg.StoreDir == "" {
		return nil, fmt.Errorf("bus: embedded server needs a StoreDir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Bus{cfg: cfg, log: cfg.Logger, decl: streams.NewDeclarer(cfg.Streams, published...).WithBuckets(cfg.Buckets...)}, nil
}

// Start starts the embedded server if configured and connects. With an
// external server that is down, Start still succeeds: the connection keeps
// retrying and the publisher waits.
func (b *Bus) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	opts := []nats.Option{
		nats.Name("vigie"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { b.log.Info("nats reconnected") }),
	}
	url := b.cfg.URL
	if url == "" {
		srv, err := b.startServer()
		if err != nil {
			return err
		}
		b.srv = srv
		opts = append(opts, nats.InProcessServer(srv))
	} else {
		more, err := b.authOptions()
		if err != nil {
			return err
		}
		opts = append(opts, more...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.shutdownServer()
		return fmt.Errorf("bus: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		b.shutdownServer()
		return fmt.Errorf("bus: jetstream: %w", err)
	}
	b.nc, b.js = nc, js
	if nc.IsConnected() {
		if err := b.decl.Ensure(ctx, js); err != nil {
			b.log.Warn("jetstream streams not ready yet", "err", err)
		}
	}
	return nil
}

func (b *Bus) startServer() (*server.Server, error) {
	o := &server.Options{
		ServerName: "vigie",
		JetStream:  true,
		StoreDir:   b.cfg.StoreDir,
		DontListen: b.cfg.Listen == "",
		NoSigs:     true,
		NoLog:      true,
	}
	if b.cfg.Listen != "" {
		host, port, err := net.SplitHostPort(b.cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: nats.listen %q: %w", b.cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("bus: nats.listen port %q: %w", port, err)
		}
		o.Host, o.Port = host, p
	}
	switch b.cfg.SyncInterval {
	case "":
	case "always":
		o.SyncAlways = true
	default:
		d, err := time.ParseDuration(b.cfg.SyncInterval)
		if err != nil {
			return nil, fmt.Errorf("bus: sync_interval %q: %w", b.cfg.SyncInterval, err)
		}
		o.SyncInterval = d
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("bus: embedded nats did not start: %w", ErrNotReady)
	}
	return srv, nil
}

func (b *Bus) authOptions() ([]nats.Option, error) {
	var o []nats.Option
	if b.cfg.CredsFile != "" {
		o = append(o, nats.UserCredentials(b.cfg.CredsFile))
	}
	if b.cfg.User != "" {
		o = append(o, nats.UserInfo(b.cfg.User, b.cfg.Password))
	}
	if b.cfg.Token != "" {
		o = append(o, nats.Token(b.cfg.Token))
	}
	if b.cfg.TLSCA != "" || b.cfg.TLSCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if b.cfg.TLSCA != "" {
			pem, err := os.ReadFile(b.cfg.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("bus: tls_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("bus: tls_ca %s holds no certificate", b.cfg.TLSCA)
			}
			tc.RootCAs = pool
		}
		if b.cfg.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(b.cfg.TLSCert, b.cfg.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("bus: tls_cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		o = append(o, nats.Secure(tc))
	}
	return o, nil
}

// EnsureStreams creates or updates the streams the outbox is published to,
// unless that already succeeded (a failure is retried at most once per
// second).
func (b *Bus) EnsureStreams(ctx context.Context) error {
	js := b.JetStream()
	if js == nil {
		return ErrNotReady
	}
	return b.decl.Ensure(ctx, js)
}

// Redeclare creates or updates the streams again, after an error said one
// is missing (streams.IsMissing), unless that was done less than a second
// ago; it reports whether it declared them.
func (b *Bus) Redeclare(ctx context.Context) (bool, error) {
	js := b.JetStream()
	if js == nil {
		return false, ErrNotReady
	}
	return b.decl.Redeclare(ctx, js)
}

// JetStream returns the JetStream context (nil before Start).
func (b *Bus) JetStream() jetstream.JetStream {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.js
}

// Conn returns the NATS connection (nil before Start).
func (b *Bus) Conn() *nats.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nc
}

// Connected reports whether the connection is up.
func (b *Bus) Connected() bool {
	nc := b.Conn()
	return nc != nil && nc.IsConnected()
}

// ClientURL is the embedded server's client URL when it listens on a port,
// else the external URL.
func (b *Bus) ClientURL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil && b.cfg.Listen != "" {
		return b.srv.ClientURL()
	}
	return b.cfg.URL
}

// Close drains and closes the connection and shuts the embedded server
// down. It is safe to call more than once.
func (b *Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nc != nil {
		_ = b.nc.Drain()
		deadline := time.Now().Add(5 * time.Second)
		for !b.nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		b.nc.Close()
		b.nc, b.js = nil, nil
	}
	b.shutdownServer()
	return nil
}

func (b *Bus) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
}
