package proxy

import (
	"context"
	"os"
	"time"

	"github.com/vigie-dev/vigie/proxy/access"
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
