package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/access"
	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/keyring"
)

// tokenReload is how often the keyring file is looked at for tokens
// created or revoked by `vigie tokens` (or `vigie admin token reset`)
// while the server runs: a revoked token stops working within it.
const tokenReload = time.Second

// checkToken returns the API token tok names, from the current list.
func (s *Server) checkToken(tok string) (keyring.Token, bool) {
	return keyring.MatchToken(*s.tokens.Load(), tok)
}

// tokenByID returns token id from the current list (false once revoked).
func (s *Server) tokenByID(id string) (keyring.Token, bool) {
	for _, t := range *s.tokens.Load() {
		if t.ID == id {
			return t, true
		}
	}
	return keyring.Token{}, false
}

// identity is the access identity of token t.
func identity(t keyring.Token) access.Identity {
	return access.Identity{TokenID: t.ID, Role: t.Role, Name: t.Name}
}

// watchTokens reloads the token list whenever the keyring file changes
// from prev, its state when the keyring was opened (it is replaced by a
// rename at every save), until ctx is done. A file that does not open
// keeps the current list, with a warning.
func (s *Server) watchTokens(ctx context.Context, prev os.FileInfo) {
	path := s.keyring.Path()
	t := time.NewTicker(tokenReload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := os.Stat(path)
		if err != nil || (prev != nil && os.SameFile(prev, cur) && cur.ModTime().Equal(prev.ModTime()) && cur.Size() == prev.Size()) {
			continue
		}
		tokens, err := s.keyring.ReadTokens()
		if err != nil {
			s.log.Warn("the keyring changed but does not open; keeping the API tokens read before", "err", err)
			prev = cur
			continue
		}
		prev = cur
		s.tokens.Store(&tokens)
		s.log.Info("API tokens reloaded from the keyring", "tokens", len(tokens))
	}
}

// tokenChangeAttempts bounds how often ChangeSharedTokens reads the shared
// keyring again after another writer changed it first.
const tokenChangeAttempts = 5

// watchSharedTokens is watchTokens in cluster mode: the API tokens are the
// shared keyring's (KV VIGIE_KEYRING), so every node applies a token
// created, revoked or reset on any other within a second or so. A list
// applied here takes effect at once, and is saved to this node's keyring
// so that a start while NATS is away has the last one known. While the
// bucket is unreachable the node keeps the list it has.
func (s *Server) watchSharedTokens(ctx context.Context) {
	log := s.log.With("component", "cluster")
	cluster.SharedKeyring{JS: s.bus}.Watch(ctx, log, func(_ context.Context, sealed []byte, rev uint64) error {
		o, err := s.keyring.OpenSealed(sealed)
		if err != nil {
			log.Warn("cluster: the shared keyring does not open; keeping the API tokens read before", "revision", rev, "err", err)
			return nil
		}
		if !o.TokensShared || keyring.SameTokens(*s.tokens.Load(), o.Tokens) {
			return nil
		}
		tokens := o.Tokens
		s.tokens.Store(&tokens)
		if err := s.keyring.AdoptTokens(tokens); err != nil {
			log.Warn("cluster: the cluster's API tokens apply, but this node's keyring file was not saved; "+
				"a restart while NATS is away would use the list it holds", "err", err)
		}
		log.Info("cluster: API tokens updated from the shared keyring", "revision", rev, "tokens", len(tokens))
		return nil
	})
}

// ChangeSharedTokens is `vigie tokens create|revoke` and `vigie admin
// token reset` in cluster mode, where the API tokens are the cluster's:
// change is applied to the shared keyring's token list (this node's, if
// the shared keyring holds none yet), and the result replaces the shared
// keyring in KV VIGIE_KEYRING by a compare-and-set on its revision; if
// another writer changed it first, change runs again on the new list. So
// a change is never made on a stale list: a token revoked elsewhere stays
// revoked. Every running node applies the result within seconds; on a
// stopped node the data directory's keyring is updated too. It returns
// the new list. The bucket unreachable is ErrSharedKeyringUnavailable, and
// nothing is changed.
func ChangeSharedTokens(ctx context.Context, cfg config.Config, log *slog.Logger, change func(*keyring.Keyring) error) ([]keyring.Token, error) {
	kr, err := nodeKeyring(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	conn, sk := sharedKeyring(cfg, log)
	defer conn.close()
	var next *keyring.Keyring
	for attempt := 1; ; attempt++ {
		shared, rev, err := getShared(ctx, sk, sharedKeyringCheckWait)
		if err != nil {
			return nil, fmt.Errorf("%w, so no token was changed (%w): in cluster mode the API tokens are the cluster's; try again once NATS answers", ErrSharedKeyringUnavailable, err)
		}
		if next, err = openShared(kr, shared); err != nil {
			return nil, err
		}
		if kr.CompareKeys(next) == keyring.Diverged {
			return nil, fmt.Errorf("proxy: cluster mode: %w (KV %s); no token was changed", ErrKeyringDiverged, streams.BucketKeyring)
		}
		clusterTokens(next, kr)
		if err := change(next); err != nil {
			return nil, err
		}
		sealed, err := next.Sealed()
		if err != nil {
			return nil, err
		}
		err = sk.Update(ctx, sealed, rev)
		if err == nil {
			break
		}
		if !errors.Is(err, cluster.ErrKeyringChanged) {
			return nil, fmt.Errorf("%w, so no token was changed (%w)", ErrSharedKeyringUnavailable, err)
		}
		if attempt == tokenChangeAttempts {
			return nil, fmt.Errorf("proxy: cluster mode: the shared keyring kept changing; no token was changed: %w", err)
		}
	}
	// A running node applies it from the shared keyring (and saves it);
	// a stopped one gets it now.
	lock, err := lockDataDir(cfg.DataDir)
	if err == nil {
		defer func() { _ = lock.release(false) }()
		if err := kr.AdoptTokens(next.Tokens); err != nil {
			log.Warn("the cluster's tokens were changed, but this node's keyring file was not saved; the node adopts them at its start", "err", err)
		}
	}
	return next.Tokens, nil
}

// SharedTokens is `vigie tokens list` in cluster mode: the cluster's API
// tokens, read from the shared keyring (this node's own if it holds none
// yet); ErrSharedKeyringUnavailable if it cannot be read.
func SharedTokens(ctx context.Context, cfg config.Config, log *slog.Logger) ([]keyring.Token, error) {
	kr, err := nodeKeyring(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	conn, sk := sharedKeyring(cfg, log)
	defer conn.close()
	shared, _, err := getShared(ctx, sk, sharedKeyringCheckWait)
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", ErrSharedKeyringUnavailable, err)
	}
	o, err := openShared(kr, shared)
	if err != nil {
		return nil, err
	}
	clusterTokens(o, kr)
	return o.Tokens, nil
}

// nodeKeyring opens the keyring of cfg's data directory, which must have
// one (a CLI never makes one in cluster mode: the node installs the
// cluster's at its first start).
func nodeKeyring(ctx context.Context, cfg config.Config, log *slog.Logger) (*keyring.Keyring, error) {
	st, err := keyring.Stat(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if !st.Exists {
		return nil, fmt.Errorf("%w: %s has no keyring yet: start this node once (it installs the cluster's keyring)", keyring.ErrNoKeyring, cfg.DataDir)
	}
	kr, _, err := OpenKeyring(ctx, cfg, log)
	return kr, err
}
