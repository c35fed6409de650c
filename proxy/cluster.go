package proxy

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/proxy/cluster"
	"github.com/vigie-dev/vigie/storage"
)

// clusterBuckets are the KV buckets the bus declares: those of package
// cluster in cluster mode, none for a single node.
func (s *Server) clusterBuckets() []string {
	if !s.cfg.Cluster.Enabled() {
		return nil
	}
	return append(cluster.Buckets(), cluster.PartitionBuckets()...)
}

// sharedVault is the store's SharedVault: in cluster mode KV VIGIE_VAULT
// over the bus once started; nil for a single node (no KV call).
func (s *Server) sharedVault() storage.SharedVault {
	if !s.cfg.Cluster.Enabled() {
		return nil
	}
	return cluster.VaultBucket{JS: startedBus{s}}
}

// startedBus is the server's bus once started (no JetStream before).
type startedBus struct{ s *Server }

// JetStream implements cluster.JetStreamer.
func (b startedBus) JetStream() jetstream.JetStream {
	if bb := b.s.profileBus.Load(); bb != nil {
		return bb.JetStream()
	}
	return nil
}

// startCluster starts, in cluster mode, the shared dedup, the membership
// heartbeat and the watch that applies the other nodes' consent ledger
// entries; it stops with ctx.
func (s *Server) startCluster(ctx context.Context) {
	if !s.cfg.Cluster.Enabled() {
		return
	}
	s.dedup = cluster.NewDedup(s.bus, s.cfg.Cluster.NodeID)
	s.members = &cluster.Membership{JS: s.bus, Node: s.cfg.Cluster.NodeID, Logger: s.log.With("component", "cluster")}
	w := &cluster.LedgerWatcher{JS: s.bus, Store: s.store, Forget: s.ledger.Forget, Applied: s.ledger.Applied,
		Node: s.cfg.Cluster.NodeID, Marks: s.store, Enqueue: s.store.Enqueue, Logger: s.log.With("component", "cluster"),
		Erase: func(ctx context.Context, site, subject string) error {
			_, err := s.store.EraseSubjects(ctx, site, []string{subject})
			return err
		}}
	s.leases = &cluster.Leases{JS: s.bus, Node: s.cfg.Cluster.NodeID, Partitions: s.cfg.Cluster.PartitionCount(),
		Live: s.members.Live, Logger: s.log.With("component", "cluster")}
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		s.leases.Run(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.retrySharedDeletes(ctx)
	}()
	go func() {
		defer s.wg.Done()
		w.Run(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.members.Run(ctx)
	}()
}

// appendShared is store.Append behind, in cluster mode, the cluster's
// dedup: a record whose key is claimed and stored by another node (or an
// earlier request) is a duplicate without reaching the store; a fresh one
// is stored with the message marking its key stored; a key another
// request is storing right now fails the request with cluster.ErrBusy.
// The claims of records then not stored are released.
func (s *Server) appendShared(ctx context.Context, recs []storage.Record) ([]bool, error) {
	if s.dedup == nil {
		return s.store.Append(ctx, recs)
	}
	keys := make([]string, len(recs))
	for i, r := range recs {
		if len(r.Dedup) > 0 {
			keys[i] = cluster.DedupKey(r.Site, r.Dedup)
		}
	}
	claims, err := s.dedup.Claim(ctx, keys)
	if err != nil {
		return nil, err
	}
	dups := make([]bool, len(recs))
	fresh := make([]storage.Record, 0, len(recs))
	var claimed []string
	busy := false
	for i, r := range recs {
		switch claims[i] {
		case cluster.Duplicate:
			dups[i] = true
			continue
		case cluster.Busy:
			busy = true
			continue
		}
		if keys[i] != "" {
			claimed = append(claimed, keys[i])
			r.Messages = append(r.Messages[:len(r.Messages):len(r.Messages)], cluster.StoredMessage(s.cfg.Cluster.NodeID, keys[i]))
		}
		fresh = append(fresh, r)
	}
	release := func() { s.dedup.Release(context.WithoutCancel(ctx), claimed) }
	if busy {
		release()
		return nil, cluster.ErrBusy
	}
	if len(fresh) == 0 {
		return dups, nil
	}
	freshDups, err := s.store.Append(ctx, fresh)
	if err != nil {
		release()
		return nil, err
	}
	j := 0
	for i := range recs {
		if claims[i] == cluster.Claimed {
			dups[i] = freshDups[j]
			j++
		}
	}
	return dups, nil
}
