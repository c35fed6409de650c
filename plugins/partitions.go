package plugins

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// Partitioned segmentation (cluster mode, Config.Partitions set). The
// enrich stage publishes each event on
// vigie.enriched.<site>.<partition>.<type>, partition =
// streams.Partition(site, subject, Count()). For each partition it owns
// (a lease, proxy/cluster.Leases), a node runs one durable consumer per
// segmenter, "segment-<plugin>-p<n>", filtered on that partition, and
// stops it as soon as the lease is given up or lost. A subject's profile
// lives in KV VIGIE_PROFILES under <partition>.<site>.<subject>, with its
// idempotency markers (storage.Config.PortableProfiles): the owner reads
// it into its Badger on first use, writes it back after each batch (CAS on
// the revision it read; a conflict drops the local copy and naks the
// subject's messages, which are then applied to the shared copy), and
// forgets the partition's profiles when the partition leaves it. A message
// delivered again after its partition moved is applied once: the marker
// travelled with the profile.

// Partitions is this node's share of the segmentation partitions.
type Partitions interface {
	// Count is the number of partitions (cluster.partitions).
	Count() int
	// Owned returns the partitions this node holds now.
	Owned() []int
	// Changed returns a channel closed once Owned changes after the call
	// (every caller is woken); call it before Owned.
	Changed() <-chan struct{}
}

// partRun is one owned partition's consumers of one segmenter.
type partRun struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// enrichedSubject is the subject ev is published on by the enrich stage.
func (rt *Runtime) enrichedSubject(ev *vigiev1.Event) string {
	if rt.cfg.Partitions == nil {
		return streams.EnrichedSubject(ev.GetSite(), ev.GetType())
	}
	n := streams.Partition(ev.GetSite(), ev.GetSubject(), rt.cfg.Partitions.Count())
	return streams.EnrichedPartitionSubject(ev.GetSite(), n, ev.GetType())
}

// enrichedFilters returns the subject filters of a manifest filter on the
// enriched stream, of one partition (a number or "*") when partitioned.
func enrichedFilters(f sdk.Filter, partitioned bool, partition string) []string {
	if !partitioned {
		return subjectFilters(streams.EnrichedPrefix, f)
	}
	var out []string
	for _, s := range exactOrAll(f.Sites) {
		for _, t := range exactOrAll(f.Types) {
			out = append(out, streams.EnrichedFilter(s, t, true, partition))
		}
	}
	return out
}

// partitionDurable is the durable consumer of plugin on partition n.
func partitionDurable(plugin string, n int) string {
	return "segment-" + plugin + "-p" + strconv.Itoa(n)
}

// runPartitions runs p's segment consumers on the partitions this node
// owns, following the changes, until lctx is done.
func (rt *Runtime) runPartitions(lctx context.Context, p *proc, m sdk.Manifest) {
	running := map[int]*partRun{}
	st := &rt.stages[stageSegment]
	stop := func(n int, r *partRun) {
		r.cancel()
		r.wg.Wait()
		delete(running, n)
		rt.removeConsumers(p.spec.Name, r)
		rt.forgetPartition(context.WithoutCancel(lctx), n)
		rt.countRun(n, -1)
	}
	defer func() {
		// Stopping (the plugin or the stage): the stage's own cancel
		// stops the consumers; they are waited for before they stop
		// counting, so that a lease given up meanwhile is released only
		// once no batch of the partition is in flight here.
		for _, r := range running {
			r.cancel()
		}
		for n, r := range running {
			r.wg.Wait()
			delete(running, n)
			rt.countRun(n, -1)
		}
	}()
	tick := time.NewTicker(5 * time.Second) // a missed signal is caught up
	defer tick.Stop()
	for lctx.Err() == nil {
		changed := rt.cfg.Partitions.Changed()
		want := rt.cfg.Partitions.Owned()
		for n, r := range running {
			if !slices.Contains(want, n) {
				stop(n, r)
			}
		}
		for _, n := range want {
			if running[n] != nil {
				continue
			}
			rt.mu.Lock()
			if st.ctx.Err() != nil {
				rt.mu.Unlock()
				return
			}
			ctx, cancel := context.WithCancel(st.ctx)
			rt.mu.Unlock()
			first, owned := rt.claimRun(n)
			if !owned {
				cancel() // given up since Owned: the next round sees it
				continue
			}
			r := &partRun{ctx: ctx, cancel: cancel}
			running[n] = r
			if first {
				// Whatever this node kept of the partition is stale
				// now; another segmenter running it keeps it current.
				rt.forgetPartition(lctx, n)
			}
			c := &consumer{rt: rt, durable: partitionDurable(p.spec.Name, n), stream: streams.Enriched, stage: stageSegment,
				filters: enrichedFilters(m.Filter, true, strconv.Itoa(n)), owner: p, handle: rt.segmentPartition(p, n), part: r}
			// Opening may take a while (retried while NATS is away): not
			// in this loop, which must stop given-up partitions at once.
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				rt.startConsumers(ctx, p.spec.Name, c)
			}()
		}
		select {
		case <-lctx.Done():
		case <-changed:
		case <-tick.C:
		}
	}
}

// claimRun counts a run of partition n if this node still owns it, and
// reports whether it is the partition's first run here. Checked and
// counted together, under the lock WaitPartitions reads the runs with: a
// run is either counted before a lease given up is waited for, or sees
// that it was given up.
func (rt *Runtime) claimRun(n int) (first, owned bool) {
	rt.home.mu.Lock()
	defer rt.home.mu.Unlock()
	if !slices.Contains(rt.cfg.Partitions.Owned(), n) {
		return false, false
	}
	if rt.home.running == nil {
		rt.home.running = map[int]int{}
	}
	rt.home.running[n]++
	return rt.home.running[n] == 1, true
}

// countRun adds d to the runs of partition n.
func (rt *Runtime) countRun(n, d int) {
	rt.home.mu.Lock()
	defer rt.home.mu.Unlock()
	if rt.home.running == nil {
		rt.home.running = map[int]int{}
	}
	if rt.home.running[n] += d; rt.home.running[n] <= 0 {
		delete(rt.home.running, n)
	}
}

// WaitPartitions waits until no consumer of the partitions runs any more
// on this node (they were given up: Partitions.Owned no longer lists
// them), or until ctx is done: the leases call it before releasing a
// lease, so that the next owner does not start while this node still
// consumes.
func (rt *Runtime) WaitPartitions(ctx context.Context, parts []int) {
	for {
		busy := false
		rt.home.mu.Lock()
		for _, n := range parts {
			busy = busy || rt.home.running[n] > 0
		}
		rt.home.mu.Unlock()
		if !busy || ctx.Err() != nil {
			return
		}
		sleep(ctx, 20*time.Millisecond)
	}
}

// removeConsumers forgets the consumers of partition run r.
func (rt *Runtime) removeConsumers(plugin string, r *partRun) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.consumers[plugin] = slices.DeleteFunc(rt.consumers[plugin], func(c *consumer) bool { return c.part == r })
}

// profileHome is cluster mode's state of the shared profiles: per
// partition, the KV revision of every profile this node read (0: absent
// from KV), and a lock serializing that partition's batches on this node.
type profileHome struct {
	mu    sync.Mutex
	parts map[int]*partProfiles
	// running counts the partition runs of each partition (every
	// segmenter's), for WaitPartitions.
	running map[int]int
	// apply is held (read) from a batch's first profile write to its
	// write-back to KV, and (write) while segment changes are published:
	// a change is published only once its profile is in KV.
	apply sync.RWMutex
	// deleted is, by KV key, when this node deleted the profile
	// (ProfileDeleted), until the partition leaves or joins it or an hour
	// after it was noted: it bridges the time until the shared copy's
	// delete marker, which holds the same, is in KV.
	deleted map[string]deletedNote
}

// deletedNote is one entry of profileHome.deleted.
type deletedNote struct {
	at    int64     // the deletion's time (Unix ms)
	noted time.Time // when ProfileDeleted recorded it
}

// deletedNoteTTL is how long profileHome.deleted keeps an entry.
const deletedNoteTTL = time.Hour

// partProfiles is one partition's profiles known to this node.
type partProfiles struct {
	mu   sync.Mutex // held for a whole batch
	revs map[string]homeEntry
}

// homeEntry is what this node last read or wrote of one shared profile.
type homeEntry struct {
	rev  uint64 // 0: absent from KV
	hash uint64 // xxhash of the value written or read (0: none)
	// deletedAt is, for a copy read absent, its delete marker's time
	// (readShared): the subject's events received until then are not
	// applied.
	deletedAt int64
}

// part returns partition n's state.
func (rt *Runtime) part(n int) *partProfiles {
	rt.home.mu.Lock()
	defer rt.home.mu.Unlock()
	if rt.home.parts == nil {
		rt.home.parts = map[int]*partProfiles{}
	}
	pp := rt.home.parts[n]
	if pp == nil {
		pp = &partProfiles{revs: map[string]homeEntry{}}
		rt.home.parts[n] = pp
	}
	return pp
}

// profileKVKey is the VIGIE_PROFILES key of a profile.
func profileKVKey(n int, site, subject string) string {
	return strconv.Itoa(n) + "." + streams.KeyToken(site) + "." + streams.KeyToken(subject)
}

// forgetPartition drops what this node holds of partition n's profiles:
// the revisions it read and its Badger copies.
func (rt *Runtime) forgetPartition(ctx context.Context, n int) {
	pp := rt.part(n)
	pp.mu.Lock()
	defer pp.mu.Unlock()
	clear(pp.revs)
	prefix := strconv.Itoa(n) + "."
	rt.home.mu.Lock()
	maps.DeleteFunc(rt.home.deleted, func(k string, _ deletedNote) bool { return strings.HasPrefix(k, prefix) })
	rt.home.mu.Unlock()
	count := rt.cfg.Partitions.Count()
	if _, err := rt.cfg.Store.DropProfiles(ctx, func(site, subject string) bool {
		return streams.Partition(site, subject, count) == n
	}); err != nil {
		rt.log.Warn("profiles of a partition given up not dropped", "partition", n, "err", err)
	}
}

// profilesKV opens KV VIGIE_PROFILES (a handle opened less than
// streams.HandleTTL ago is reused).
func (rt *Runtime) profilesKV(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := streams.KeyValue(ctx, rt.cfg.JetStream, streams.BucketProfiles)
	if err != nil {
		return nil, fmt.Errorf("plugins: profiles bucket: %w", err)
	}
	return kv, nil
}

// ProfileDeleted records, in cluster mode, that this node deleted the
// profile of d.Subject on d.Site (each of sites when ""), at d.AtMs: if
// it owns the partition, the subject's events received until then are
// not applied any more (a redelivery of one the deleted profile had
// counted would start a new one), even before the shared copy's delete
// marker, which says the same to any owner, reaches KV. The server calls
// it with DeleteSharedProfile; nothing on a single node.
func (rt *Runtime) ProfileDeleted(sites []string, d ProfileDeletion) {
	if rt == nil || rt.cfg.Partitions == nil {
		return
	}
	if d.Site != "" {
		sites = []string{d.Site}
	}
	count := rt.cfg.Partitions.Count()
	now := time.Now()
	rt.home.mu.Lock()
	defer rt.home.mu.Unlock()
	if rt.home.deleted == nil {
		rt.home.deleted = map[string]deletedNote{}
	}
	maps.DeleteFunc(rt.home.deleted, func(_ string, e deletedNote) bool { return now.Sub(e.noted) > deletedNoteTTL })
	for _, s := range sites {
		key := profileKVKey(streams.Partition(s, d.Subject, count), s, d.Subject)
		rt.home.deleted[key] = deletedNote{at: max(rt.home.deleted[key].at, d.AtMs), noted: now}
	}
}

// deletedAt is when this node deleted the profile of key (0: not known).
func (rt *Runtime) deletedAt(key string) int64 {
	rt.home.mu.Lock()
	defer rt.home.mu.Unlock()
	return rt.home.deleted[key].at
}

// segmentPartition is p's segment handler for partition n: the profiles
// of the batch's subjects are read from KV (first use), the batch is
// segmented as on a single node, and every profile it touched is written
// back; a subject whose write conflicts has its local copy dropped and its
// messages naked.
func (rt *Runtime) segmentPartition(p *proc, n int) handler {
	inner := rt.segmentWith(p, false)
	return func(ctx context.Context, msgs []jetstream.Msg) []error {
		errs := rt.segmentPartitionBatch(ctx, inner, n, msgs)
		if err := rt.flushChanges(ctx); err != nil {
			rt.log.Warn("segment changes not published yet", "err", err)
			rt.recover(ctx, err)
		}
		return errs
	}
}

// segmentPartitionBatch is segmentPartition's work before the segment
// changes are published.
func (rt *Runtime) segmentPartitionBatch(ctx context.Context, inner handler, n int, msgs []jetstream.Msg) []error {
	pp := rt.part(n)
	pp.mu.Lock()
	defer pp.mu.Unlock()
	rt.home.apply.RLock()
	defer rt.home.apply.RUnlock()
	errs := make([]error, len(msgs))
	type subj struct{ site, subject string }
	bySubject := map[subj][]int{}
	var order []subj
	for i, msg := range msgs {
		ev, err := decode(msg)
		if err != nil || ev.GetSubject() == "" || ev.GetMode() != vigiev1.Mode_MODE_PSEUDONYMOUS {
			continue
		}
		k := subj{ev.GetSite(), ev.GetSubject()}
		if _, ok := bySubject[k]; !ok {
			order = append(order, k)
		}
		bySubject[k] = append(bySubject[k], i)
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := rt.profilesKV(kctx)
	if err != nil && len(order) > 0 {
		for i := range errs {
			errs[i] = fmt.Errorf("%w: %w", ErrNotRunning, err)
		}
		return errs
	}
	// Load what this node has not read yet.
	for _, k := range order {
		key := profileKVKey(n, k.site, k.subject)
		if _, ok := pp.revs[key]; ok {
			continue
		}
		var ent homeEntry
		v, rev, deletedAt, err := readShared(kctx, rt.cfg.JetStream, key)
		switch {
		case err != nil:
			for i := range errs {
				errs[i] = fmt.Errorf("%w: read profile: %w", ErrNotRunning, err)
			}
			return errs
		case v != nil:
			ent = homeEntry{rev: rev, hash: xxhash.Sum64(v)}
		default:
			ent.deletedAt = deletedAt
		}
		if err := rt.cfg.Store.PutProfileValue(kctx, k.site, k.subject, v); err != nil {
			for i := range errs {
				errs[i] = err
			}
			return errs
		}
		pp.revs[key] = ent
	}
	// A deleted copy's events received until its deletion are not
	// applied (acknowledged as they are): a redelivery of one it had
	// counted would start a new profile, its markers gone with it.
	skip := make([]bool, len(msgs))
	skipped := 0
	for k, idx := range bySubject {
		key := profileKVKey(n, k.site, k.subject)
		at := max(pp.revs[key].deletedAt, rt.deletedAt(key))
		if at == 0 {
			continue
		}
		for _, i := range idx {
			if ev, err := decode(msgs[i]); err == nil && ev.GetReceivedAtMs() > 0 && ev.GetReceivedAtMs() <= at {
				skip[i] = true
				skipped++
			}
		}
	}
	// The owner deletes shared copies itself (saveProfile, after the
	// batch): no KV round trip for each event of a refusing visitor.
	octx := context.WithValue(ctx, ownerKey{}, true)
	if skipped == 0 {
		errs = inner(octx, msgs)
	} else {
		var rest []jetstream.Msg
		var at []int
		for i, m := range msgs {
			if !skip[i] {
				rest, at = append(rest, m), append(at, i)
			}
		}
		errs = make([]error, len(msgs))
		if len(rest) > 0 {
			for j, err := range inner(octx, rest) {
				errs[at[j]] = err
			}
		}
	}
	// Write back every profile of the batch.
	var failed []subj
	for _, k := range order {
		key := profileKVKey(n, k.site, k.subject)
		ent := pp.revs[key]
		err := rt.saveProfile(kctx, kv, key, k.site, k.subject, &ent)
		if err == nil {
			pp.revs[key] = ent
			continue
		}
		// Another node wrote it (the partition moved meanwhile) or KV
		// is unreachable: forget our copy; the messages come back
		// and are applied to the shared one.
		delete(pp.revs, key)
		failed = append(failed, k)
		_ = rt.cfg.Store.PutProfileValue(context.WithoutCancel(ctx), k.site, k.subject, nil)
		rt.log.Warn("profile not written to the cluster; its events will be applied again", "partition", n, "err", err)
		for _, i := range bySubject[k] {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("%w: write profile: %w", ErrNotRunning, err)
			}
		}
	}
	if len(failed) > 0 {
		// Their segment changes were decided on a profile that is not
		// the shared one: take them back; the events come again.
		drop := map[subj]bool{}
		for _, k := range failed {
			drop[k] = true
		}
		rt.discardChanges(context.WithoutCancel(ctx), func(c *vigiev1.SegmentChange) bool {
			return drop[subj{c.GetSite(), c.GetSubject()}]
		})
	}
	return errs
}

// discardChanges deletes the pending segment changes for which drop holds.
func (rt *Runtime) discardChanges(ctx context.Context, drop func(*vigiev1.SegmentChange) bool) {
	pend, err := rt.cfg.Store.PendingChanges(ctx, 1<<16)
	if err != nil {
		rt.log.Warn("segment changes of a conflicting write not taken back", "err", err)
		return
	}
	var keys [][]byte
	for _, pc := range pend {
		if drop(pc.Change) {
			keys = append(keys, pc.Key)
		}
	}
	if err := rt.cfg.Store.AckPendingChanges(keys); err != nil {
		rt.log.Warn("segment changes of a conflicting write not taken back", "err", err)
	}
}

// saveProfile writes this node's copy of a profile to KV on the revision
// of ent (updated), deletes the shared copy when the local one is gone,
// and does nothing when the value did not change.
func (rt *Runtime) saveProfile(ctx context.Context, kv jetstream.KeyValue, key, site, subject string, ent *homeEntry) error {
	v, err := rt.cfg.Store.ProfileValue(ctx, site, subject)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if ent.rev == 0 {
			return nil
		}
		// Deleted here (consent withdrawn): unconditionally, since
		// DeleteSharedProfile may have deleted it already. The marker
		// holds the deletion's time when this node deleted it outside
		// a batch (ProfileDeleted), as DeleteSharedProfile's does; not
		// for a deletion by an event of the batch, whose time is not
		// known here (the batch's time would skip the events of a
		// visitor who accepted again since).
		at := rt.deletedAt(key)
		m := nats.NewMsg(streams.KVSubject(streams.BucketProfiles, key))
		m.Header.Set(streams.KVOperationHeader, streams.KVOperationDelete)
		if at != 0 {
			m.Data = strconv.AppendInt(nil, at, 10)
		}
		if _, err := rt.cfg.JetStream.PublishMsg(ctx, m, jetstream.WithExpectStream(streams.KVStream(streams.BucketProfiles))); err != nil {
			return err
		}
		*ent = homeEntry{deletedAt: at}
		return nil
	case err != nil:
		return err
	}
	h := xxhash.Sum64(v)
	if ent.hash == h && ent.rev != 0 {
		return nil
	}
	var rev uint64
	if ent.rev == 0 {
		rev, err = kv.Create(ctx, key, v)
	} else {
		rev, err = kv.Update(ctx, key, v, ent.rev)
	}
	if err != nil {
		var ok bool
		if rev, ok = landed(ctx, rt.cfg.JetStream, key, h); !ok {
			return err
		}
	}
	*ent = homeEntry{rev: rev, hash: h}
	return nil
}

// landed reports whether key holds the value hashed h (read from the
// leader), and its revision, after a write that failed without saying
// whether it applied (its context ended at a stop, or its answer was lost
// in a failover): taken for a conflict, an applied write would have its
// segment changes discarded while its events, already marked in the
// shared profile, are skipped when they come again, so the changes were
// never published.
func landed(ctx context.Context, js jetstream.JetStream, key string, h uint64) (uint64, bool) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	v, rev, _, err := readShared(rctx, js, key)
	if err != nil || v == nil || xxhash.Sum64(v) != h {
		return 0, false
	}
	return rev, true
}

// ownerKey marks the context of a partition owner's segment batch.
type ownerKey struct{}

// InOwnerBatch reports whether ctx is that of a partition owner's segment
// batch, which writes its profiles back itself, deletions included.
func InOwnerBatch(ctx context.Context) bool { return ctx.Value(ownerKey{}) != nil }

// ProfileDeletion is one deletion of a profile (storage.Config's
// OnProfileDelete) whose shared copy DeleteSharedProfile deletes.
type ProfileDeletion struct {
	// Site of the profile; "" for every site.
	Site string `json:"site,omitempty"`
	// Subject is the profile's subject.
	Subject string `json:"subject"`
	// Reason is the EventId of the segment exits; "" for none.
	Reason string `json:"reason,omitempty"`
	// AtMs is when the profile was deleted (Unix ms; 0: now): the exits'
	// AtMs, and the time before which the subject's events are no longer
	// applied to the shared profile (a delivery after the deletion of an
	// event the deleted copy had counted would start a new profile).
	AtMs int64 `json:"at_ms,omitempty"`
}

// DeleteSharedProfile deletes, in cluster mode, the shared copy in KV
// VIGIE_PROFILES of the profile of d.Subject on d.Site ("" for each of
// sites) among partitions: the server calls it
// (storage.Config.OnProfileDelete) after any profile deletion, on any
// node, whether or not that node owns the partition. It reads each copy
// (from the stream's leader) and commits to out's outbox, in one
// transaction, an EXITED change for
// every segment the copy is in (EventId d.Reason, none when it is "")
// and the copy's KV delete (its marker holding d.AtMs: the owner then
// skips the subject's events received until then), so both reach NATS
// even after an outage. Their
// Nats-Msg-Ids derive from the copy (the segment changes' own, and key and
// revision for the delete): the owner's exits of its local copy and every
// other node deleting the same copy publish the same messages, which the
// streams keep once. A copy that cannot be read (NATS unreachable) gives
// an error wrapping ErrBusDown or the read's: the caller retries later.
// Within the owner's segment stage it does nothing: the stage writes the
// batch's profiles, deletions included, back itself.
func DeleteSharedProfile(ctx context.Context, js jetstream.JetStream, out *storage.Store, partitions int, sites []string, d ProfileDeletion) error {
	if InOwnerBatch(ctx) {
		return nil
	}
	if js == nil {
		return fmt.Errorf("plugins: delete shared profile: %w", ErrBusDown)
	}
	site, subject, reason := d.Site, d.Subject, d.Reason
	if site != "" {
		sites = []string{site}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	now := d.AtMs
	if now == 0 {
		now = time.Now().UnixMilli()
	}
	var msgs []storage.Message
	for _, s := range sites {
		key := profileKVKey(streams.Partition(s, subject, partitions), s, subject)
		// From the leader (readShared): a follower without the owner's
		// last write would miss the copy, or the segments it entered.
		v, rev, _, err := readShared(ctx, js, key)
		if err != nil {
			return fmt.Errorf("plugins: delete shared profile: %w", err)
		}
		if v == nil {
			continue // none, or deleted already
		}
		if reason != "" {
			// Undecodable (p nil): no exits, the copy goes all the same.
			p, _ := storage.DecodeProfileValue(v, s, subject)
			for _, seg := range profileSegments(p) {
				c := &vigiev1.SegmentChange{Site: s, Subject: subject, Segment: seg,
					Transition: vigiev1.Transition_TRANSITION_EXITED, AtMs: now, EventId: reason}
				data, err := proto.Marshal(c)
				if err != nil {
					return fmt.Errorf("plugins: delete shared profile: %w", err)
				}
				msgs = append(msgs, storage.Message{Topic: streams.SegmentSubject(c), ID: changeID(c), Data: data})
			}
		}
		msgs = append(msgs, storage.Message{Topic: streams.KVSubject(streams.BucketProfiles, key),
			ID: "profile-del:" + key + ":" + strconv.FormatUint(rev, 10), KVDelete: true,
			Data: strconv.AppendInt(nil, now, 10)})
	}
	if err := out.Enqueue(context.WithoutCancel(ctx), msgs...); err != nil {
		return fmt.Errorf("plugins: delete shared profile: %w", err)
	}
	return nil
}

// profileSegments returns p's segments (none for nil).
func profileSegments(p *storage.Profile) []string {
	if p == nil {
		return nil
	}
	return p.Segments
}

// Profile returns the profile of subject on site as the plugins see it
// (see profile): in cluster mode the shared copy, whichever node owns the
// subject's partition. storage.ErrNotFound when there is none.
func (rt *Runtime) Profile(ctx context.Context, site, subject string) (*storage.Profile, error) {
	return rt.profile(ctx, site, subject)
}

// profile returns the profile of subject on site: this node's copy for a
// single node; in cluster mode the shared copy in KV, read from the
// stream's leader (a syncer or a host call on any node sees the owner's
// latest write). ErrNotFound when there is none.
func (rt *Runtime) profile(ctx context.Context, site, subject string) (*storage.Profile, error) {
	if rt.cfg.Partitions == nil {
		return rt.cfg.Store.Profile(ctx, site, subject)
	}
	kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// From the leader (readShared): a syncer given a segment change, which
	// is published once its profile is in KV, must see that profile.
	v, _, _, err := readShared(kctx, rt.cfg.JetStream, profileKVKey(streams.Partition(site, subject, rt.cfg.Partitions.Count()), site, subject))
	if err != nil {
		return nil, fmt.Errorf("%w: read profile: %w", ErrNotRunning, err)
	}
	if v == nil {
		return nil, storage.ErrNotFound
	}
	return storage.DecodeProfileValue(v, site, subject)
}

// readShared reads key's shared copy, as KeyValue.Get does, from the last
// message of its subject in the bucket's stream, as the stream's leader
// has it (a follower answering a direct get may not have the previous
// owner's last write yet: the write back would then conflict and the
// subject's events be segmented again): its value and revision; absent
// (v nil), the time its delete marker holds (a ProfileDeletion's AtMs; 0
// when none, e.g. never written).
func readShared(ctx context.Context, js jetstream.JetStream, key string) (v []byte, rev uint64, deletedAt int64, err error) {
	m, err := streams.LeaderLastMsg(ctx, js, streams.KVStream(streams.BucketProfiles), streams.KVSubject(streams.BucketProfiles, key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, 0, nil
	}
	if err != nil {
		return nil, 0, 0, err
	}
	if op := m.Header.Get(streams.KVOperationHeader); op != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		if op == streams.KVOperationDelete {
			deletedAt, _ = strconv.ParseInt(string(m.Data), 10, 64)
		}
		return nil, 0, deletedAt, nil
	}
	return m.Data, m.Sequence, 0, nil
}
