package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/bus"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

// How long a start in cluster mode waits for KV VIGIE_KEYRING: a node
// without a keyring cannot start without it; a node with one starts
// unchecked past the shorter wait (NATS down does not block a start).
var (
	sharedKeyringWait      = 30 * time.Second
	sharedKeyringCheckWait = 10 * time.Second
)

// sharedJS is the JetStream context of a short connection made for KV
// VIGIE_KEYRING alone (Start opens the keyring before the bus); it
// declares that bucket when it is missing (cluster.Ensurer).
type sharedJS struct {
	cfg config.Config
	log *slog.Logger

	mu sync.Mutex
	nc *nats.Conn
	js jetstream.JetStream
}

// JetStream connects (again) if needed; nil while no server answers.
func (s *sharedJS) JetStream() jetstream.JetStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nc != nil && !s.nc.IsClosed() {
		return s.js
	}
	n := s.cfg.NATS
	nc, err := bus.Dial(bus.Config{URL: n.URL, CredsFile: n.CredsFile, User: n.User, Password: n.Password, Token: n.Token,
		TLSCA: n.TLSCA, TLSCert: n.TLSCert, TLSKey: n.TLSKey})
	if err != nil {
		s.log.Debug("cluster: shared keyring: nats not reachable yet", "err", err)
		return nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil
	}
	s.nc, s.js = nc, js
	return js
}

// EnsureStreams declares KV VIGIE_KEYRING.
func (s *sharedJS) EnsureStreams(ctx context.Context) error {
	js := s.JetStream()
	if js == nil {
		return bus.ErrNotReady
	}
	_, err := js.CreateOrUpdateKeyValue(ctx, streams.BucketConfigs(streamSettingsOf(s.cfg), streams.BucketKeyring)[0])
	return err
}

// close closes the connection.
func (s *sharedJS) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nc != nil {
		s.nc.Close()
	}
}

// sharedKeyring is the cluster's keyring over a short connection of its
// own; call close after use.
func sharedKeyring(cfg config.Config, log *slog.Logger) (*sharedJS, cluster.SharedKeyring) {
	j := &sharedJS{cfg: cfg, log: log}
	return j, cluster.SharedKeyring{JS: j}
}

// getShared reads the shared keyring, retrying while the bucket cannot be
// reached, for at most wait.
func getShared(ctx context.Context, sk cluster.SharedKeyring, wait time.Duration) ([]byte, uint64, error) {
	deadline := time.Now().Add(wait)
	for {
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		b, rev, err := sk.Get(octx)
		cancel()
		if err == nil || !errors.Is(err, cluster.ErrUnavailable) || time.Now().After(deadline) {
			return b, rev, err
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// openClusterKeyring is OpenKeyring in cluster mode, with the cluster's
// keyring in KV VIGIE_KEYRING (sealed under the master key every node
// shares): a node without a keyring installs the shared one; if there is
// none yet, the node makes its keyring and publishes it (the first writer
// wins: a node that loses uses the winner's, never its own). A node whose
// keys differ from the shared ones refuses (ErrKeyringDiverged), unless the
// shared keyring only adds to them (rotated or retired since): it then
// adopts those keys.
func openClusterKeyring(ctx context.Context, cfg config.Config, log *slog.Logger) (*keyring.Keyring, keyring.Opened, error) {
	st, err := keyring.Stat(cfg.DataDir)
	if err != nil {
		return nil, keyring.Opened{}, err
	}
	conn, sk := sharedKeyring(cfg, log)
	defer conn.close()
	wait := sharedKeyringWait
	if st.Exists {
		wait = sharedKeyringCheckWait
	}
	shared, rev, err := getShared(ctx, sk, wait)
	switch {
	case errors.Is(err, cluster.ErrNoSharedKeyring):
		shared = nil
	case err != nil && st.Exists:
		log.Warn("cluster: the shared keyring (KV VIGIE_KEYRING) cannot be read; starting with this node's keyring, unchecked", "err", err)
		return OpenKeyring(ctx, cfg, log)
	case err != nil:
		return nil, keyring.Opened{}, fmt.Errorf("proxy: cluster mode: this node has no keyring yet and the cluster's (KV %s) cannot be read: %w", streams.BucketKeyring, err)
	}
	installed := false
	if !st.Exists && shared != nil && !dirHasEntries(filepath.Join(cfg.DataDir, "badger")) {
		if err := installShared(ctx, cfg, shared); err != nil {
			return nil, keyring.Opened{}, err
		}
		installed = true
		log.Info("cluster: installed the cluster's shared keyring")
	}
	kr, op, err := OpenKeyring(ctx, cfg, log)
	if err != nil {
		return nil, op, err
	}
	if shared == nil {
		first := kr.Detached()
		clusterTokens(first, kr) // this node's tokens are the cluster's
		sealed, err := first.Sealed()
		if err != nil {
			return nil, op, err
		}
		err = sk.Publish(ctx, sealed)
		switch {
		case err == nil:
			log.Info("cluster: published this node's keyring as the cluster's shared keyring")
			return kr, op, nil
		case errors.Is(err, cluster.ErrKeyringTaken):
			if shared, rev, err = sk.Get(ctx); err != nil {
				return nil, op, fmt.Errorf("proxy: cluster mode: shared keyring: %w", err)
			}
		case op.Created:
			// Not published (maybe applied but unanswered): a keyring made
			// now is not kept, so that no node ever runs on one of its own.
			_ = os.Remove(kr.Path())
			return nil, op, fmt.Errorf("proxy: cluster mode: the keyring made now could not be shared (KV %s): %w", streams.BucketKeyring, err)
		default:
			log.Warn("cluster: this node's keyring could not be published as the shared keyring; starting unchecked", "err", err)
			return kr, op, nil
		}
		if op.Created { // lost the race with a keyring made just now: use the winner's
			if err := os.Remove(kr.Path()); err != nil {
				return nil, op, fmt.Errorf("proxy: keyring: %w", err)
			}
			if err := installShared(ctx, cfg, shared); err != nil {
				return nil, op, err
			}
			kr, _, err = OpenKeyring(ctx, cfg, log)
			if err != nil {
				return nil, op, err
			}
			op.AdminToken = "" // the winner's admin token holds
			log.Info("cluster: another node shared its keyring first; using it")
			return kr, op, nil
		}
	}
	if installed {
		return kr, op, nil
	}
	o, err := adoptShared(kr, shared, log)
	if err != nil {
		return nil, op, err
	}
	if err := adoptSharedTokens(ctx, kr, o, sk, rev, log); err != nil {
		return nil, op, err
	}
	return kr, op, nil
}

// adoptSharedTokens gives kr the API tokens of the shared keyring o (at
// revision rev), the cluster's. A shared keyring from an earlier version,
// whose tokens are only the first node's at its first start, gets this
// node's tokens instead (compare-and-set: the first node started since
// sets the cluster's tokens; the others adopt them). Unreachable, the node
// keeps its own.
func adoptSharedTokens(ctx context.Context, kr, o *keyring.Keyring, sk cluster.SharedKeyring, rev uint64, log *slog.Logger) error {
	if !o.TokensShared {
		next := o.Detached()
		clusterTokens(next, kr)
		sealed, err := next.Sealed()
		if err != nil {
			return err
		}
		err = sk.Update(ctx, sealed, rev)
		if err == nil {
			log.Info("cluster: the shared keyring had no API tokens of the cluster yet; this node's are now the cluster's", "tokens", len(kr.Tokens))
			return nil
		}
		if !errors.Is(err, cluster.ErrKeyringChanged) {
			log.Warn("cluster: this node's API tokens could not be shared; keeping them", "err", err)
			return nil
		}
		b, _, err := sk.Get(ctx)
		if err == nil {
			o, err = kr.OpenSealed(b)
		}
		if err != nil || !o.TokensShared {
			log.Warn("cluster: the shared keyring changed meanwhile and could not be read again; keeping this node's API tokens", "err", err)
			return nil
		}
	}
	if keyring.SameTokens(kr.Tokens, o.Tokens) {
		return nil
	}
	if err := kr.AdoptTokens(o.Tokens); err != nil {
		return fmt.Errorf("proxy: adopt the cluster's API tokens: %w", err)
	}
	log.Info("cluster: adopted the cluster's API tokens (created, revoked or reset on another node)", "tokens", len(o.Tokens))
	return nil
}

// clusterTokens makes o's API tokens the cluster's: a shared keyring o
// holds them once shared; one from an earlier version, whose tokens were
// only the first node's at its first start, gets kr's, this node's.
func clusterTokens(o, kr *keyring.Keyring) {
	if !o.TokensShared {
		o.Tokens = kr.Tokens
	}
	o.TokensShared = true
}

// installShared writes the shared keyring into cfg's data directory.
func installShared(ctx context.Context, cfg config.Config, shared []byte) error {
	mk, _, err := keyCustody(cfg, cfg.Production).Source.Load(ctx, false)
	if err != nil {
		return fmt.Errorf("proxy: master key: %w (cluster mode: every node needs the master key that sealed the shared keyring)", err)
	}
	if err := keyring.Install(cfg.DataDir, shared, mk); err != nil {
		if errors.Is(err, keyring.ErrWrongMasterKey) {
			return fmt.Errorf("proxy: cluster mode: the shared keyring (KV %s) is sealed under another master key than this node's %s: %w; every node needs the same master key",
				streams.BucketKeyring, mk.ID(), err)
		}
		return fmt.Errorf("proxy: cluster mode: shared keyring: %w", err)
	}
	return nil
}

// openShared opens the shared keyring with kr's master key.
func openShared(kr *keyring.Keyring, shared []byte) (*keyring.Keyring, error) {
	o, err := kr.OpenSealed(shared)
	if err != nil {
		if errors.Is(err, keyring.ErrWrongMasterKey) {
			return nil, fmt.Errorf("proxy: cluster mode: the shared keyring (KV %s) is sealed under another master key than this node's %s: %w; every node needs the same master key",
				streams.BucketKeyring, kr.MasterKeyID(), err)
		}
		return nil, fmt.Errorf("proxy: cluster mode: shared keyring: %w", err)
	}
	return o, nil
}

// adoptShared checks kr against the shared keyring: the same keys pass,
// newer shared keys are adopted, others refuse. It returns the shared
// keyring, opened.
func adoptShared(kr *keyring.Keyring, shared []byte, log *slog.Logger) (*keyring.Keyring, error) {
	o, err := openShared(kr, shared)
	if err != nil {
		return nil, err
	}
	switch kr.CompareKeys(o) {
	case keyring.SameKeys:
		return o, nil
	case keyring.OtherIsNewer:
		if err := kr.AdoptKeys(o); err != nil {
			return nil, fmt.Errorf("proxy: adopt the shared keyring's keys: %w", err)
		}
		log.Info("cluster: adopted the shared keyring's newer keys (rotated or retired on another node)", "active_key", kr.Active()[0].ID)
		return o, nil
	}
	return nil, fmt.Errorf("proxy: cluster mode: %w (KV %s): it would pseudonymize differently from the other nodes. "+
		"Give this node the cluster's keyring (remove %s from an empty data directory and start: it is installed from the cluster), "+
		"or if this node's data is what counts, empty the bucket first", ErrKeyringDiverged, streams.BucketKeyring, keyring.FileName)
}

// ChangeSharedKeys is `vigie keys rotate` and `retire` in cluster mode:
// change is applied to a detached copy of this node's keyring (which must
// hold the shared keys, or older ones that are adopted first), the result
// replaces the shared keyring in KV VIGIE_KEYRING by a compare-and-set on
// its revision (ErrKeyringChanged-wrapped if another node changed it
// meanwhile: run again), and only then is it saved here. The other nodes
// adopt the new keys at their next start.
func ChangeSharedKeys(ctx context.Context, cfg config.Config, log *slog.Logger, change func(*keyring.Keyring) error) (*keyring.Keyring, error) {
	kr, _, err := openClusterKeyring(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	conn, sk := sharedKeyring(cfg, log)
	defer conn.close()
	shared, rev, err := getShared(ctx, sk, sharedKeyringCheckWait)
	if err != nil {
		return nil, fmt.Errorf("proxy: cluster mode: the shared keyring (KV %s) cannot be read, so the keys are not changed: %w", streams.BucketKeyring, err)
	}
	o, err := adoptShared(kr, shared, log)
	if err != nil {
		return nil, err
	}
	next := kr.Detached()
	if o.TokensShared { // the cluster's tokens stay as they are
		next.Tokens, next.TokensShared = o.Tokens, true
	}
	if err := change(next); err != nil {
		return nil, err
	}
	sealed, err := next.Sealed()
	if err != nil {
		return nil, err
	}
	if err := sk.Update(ctx, sealed, rev); err != nil {
		return nil, fmt.Errorf("proxy: cluster mode: shared keyring not changed: %w", err)
	}
	if err := kr.AdoptKeys(next); err != nil {
		return nil, fmt.Errorf("proxy: the shared keyring was changed but this node's copy was not saved (it adopts it at its next start): %w", err)
	}
	return kr, nil
}
