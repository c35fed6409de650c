package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/storage"
)

// Deleting, in cluster mode, a profile's shared copy (KV VIGIE_PROFILES)
// after any node deleted the profile: plugins.DeleteSharedProfile reads
// the copy and commits its segment exits and its KV delete to the outbox.
// When the copy cannot be read (NATS unreachable, not started yet) the
// deletion is kept in the node's store and retried until it is done, so a
// withdrawn person's profile does not stay shared, nor in its segments,
// because NATS was away at that moment.

// Where the deletions left to retry are kept: in the store's plugin-scoped
// KV under a space no plugin can have (plugin names have no dot), one
// value listing them all (there are few: they wait for NATS only).
const (
	sharedDeletesSpace = "vigie.profiles"
	sharedDeletesKey   = "pending-deletes"
)

// sharedDeletesRetry is how often the deletions left are retried.
const sharedDeletesRetry = 5 * time.Second

// sharedProfileDeleted is, in cluster mode, the store's OnProfileDelete:
// the profile's shared copy goes too, with its segment exits, whichever
// node deleted it; when that fails it is kept and retried.
func (s *Server) sharedProfileDeleted() func(ctx context.Context, site, subject, reason string) {
	if !s.cfg.Cluster.Enabled() {
		return nil
	}
	return func(ctx context.Context, site, subject, reason string) {
		d := plugins.ProfileDeletion{Site: site, Subject: subject, Reason: reason, AtMs: time.Now().UnixMilli()}
		err := s.deleteShared(ctx, d)
		if err == nil {
			return
		}
		if qerr := s.queueSharedDelete(context.WithoutCancel(ctx), d); qerr != nil {
			s.log.Warn("shared profile not deleted nor kept for a retry; it expires with VIGIE_PROFILES' TTL", "err", err, "queue_err", qerr)
			return
		}
		s.log.Warn("shared profile not deleted yet; retried while NATS is away", "err", err)
	}
}

// deleteShared deletes d's shared copy through plugins.DeleteSharedProfile.
func (s *Server) deleteShared(ctx context.Context, d plugins.ProfileDeletion) error {
	if plugins.InOwnerBatch(ctx) {
		return nil // the batch writes its profiles back itself
	}
	sites := s.siteIDs()
	// Noted at each attempt: it bridges the time until the delete
	// marker is in KV, which may be long after the deletion.
	s.profileRuntime.Load().ProfileDeleted(sites, d)
	b, st := s.profileBus.Load(), s.profileStore.Load()
	if b == nil || st == nil {
		return fmt.Errorf("proxy: delete shared profile: %w", plugins.ErrBusDown)
	}
	return plugins.DeleteSharedProfile(context.WithoutCancel(ctx), b.JetStream(), st,
		s.cfg.Cluster.PartitionCount(), sites, d)
}

// siteIDs are the configured sites' ids.
func (s *Server) siteIDs() []string {
	var sites []string
	for _, st := range s.cfg.Sites {
		sites = append(sites, st.ID)
	}
	return sites
}

// sharedDeletes returns the deletions left to retry.
func (s *Server) sharedDeletes(ctx context.Context, st *storage.Store) ([]plugins.ProfileDeletion, error) {
	v, err := st.KVGet(ctx, sharedDeletesSpace, sharedDeletesKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []plugins.ProfileDeletion
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, fmt.Errorf("proxy: shared profile deletions: %w", err)
	}
	return out, nil
}

// putSharedDeletes replaces the deletions left to retry.
func (s *Server) putSharedDeletes(ctx context.Context, st *storage.Store, ds []plugins.ProfileDeletion) error {
	if len(ds) == 0 {
		return st.KVDelete(ctx, sharedDeletesSpace, sharedDeletesKey)
	}
	v, err := json.Marshal(ds)
	if err != nil {
		return fmt.Errorf("proxy: shared profile deletions: %w", err)
	}
	return st.KVPut(ctx, sharedDeletesSpace, sharedDeletesKey, v, 0)
}

// queueSharedDelete keeps d for retrySharedDeletes.
func (s *Server) queueSharedDelete(ctx context.Context, d plugins.ProfileDeletion) error {
	st := s.profileStore.Load()
	if st == nil {
		return fmt.Errorf("proxy: delete shared profile: %w", storage.ErrClosed)
	}
	s.sharedDeletesMu.Lock()
	defer s.sharedDeletesMu.Unlock()
	ds, err := s.sharedDeletes(ctx, st)
	if err != nil {
		return err
	}
	if slices.Contains(ds, d) {
		return nil
	}
	return s.putSharedDeletes(ctx, st, append(ds, d))
}

// retrySharedDeletes retries the deletions left (those of a previous run
// too) until ctx is done.
func (s *Server) retrySharedDeletes(ctx context.Context) {
	t := time.NewTicker(sharedDeletesRetry)
	defer t.Stop()
	for {
		s.retrySharedDeletesOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retrySharedDeletesOnce tries each deletion left once and forgets those
// done. The attempts run without the lock, so that a deletion queued
// meanwhile does not wait for them.
func (s *Server) retrySharedDeletesOnce(ctx context.Context) {
	st := s.profileStore.Load()
	s.sharedDeletesMu.Lock()
	ds, err := s.sharedDeletes(ctx, st)
	s.sharedDeletesMu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("shared profile deletions to retry not read", "err", err)
		}
		return
	}
	var done []plugins.ProfileDeletion
	for _, d := range ds {
		if ctx.Err() != nil {
			break
		}
		if s.deleteShared(ctx, d) == nil {
			done = append(done, d)
		}
	}
	if len(done) == 0 {
		return
	}
	s.sharedDeletesMu.Lock()
	defer s.sharedDeletesMu.Unlock()
	ds, err = s.sharedDeletes(ctx, st)
	if err == nil {
		err = s.putSharedDeletes(ctx, st, slices.DeleteFunc(ds, func(d plugins.ProfileDeletion) bool { return slices.Contains(done, d) }))
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("shared profile deletions done not forgotten; they run again", "err", err)
		}
		return
	}
	s.log.Info("shared profile deletions left by a NATS outage done", "count", len(done))
}
