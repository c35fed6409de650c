package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// A full resync pushes every consented subject to one syncer again: a job
// lists the profiles of the plugin's sites page by page and publishes, for
// each subject whose profile grants the plugin's purposes, a Resync item on
// vigie.sync.<plugin>.<site>, read by the plugin's "sync-<plugin>-resync"
// consumer. There the item is gated again on the subject's current consent
// and given the contact and profile (syncItem), so it arrives with the
// subject's current segments and score; its retries and dead letters are
// the plugin's own, like any other item. The job's state (counts, and the
// position it has reached) is stored after every page (storage rs/): a job
// interrupted by a stop resumes at the next start.

// Resync job states.
const (
	ResyncRunning = "running"
	ResyncDone    = "done"
)

// resyncPage is how many profiles one page of a resync lists.
const resyncPage = 256

// ErrResyncRunning is returned by Resync while the plugin's last resync
// has not finished.
var ErrResyncRunning = errors.New("plugins: a resync of this plugin is running")

// ErrNotSyncer is returned by Resync for a plugin that is not a syncer (or
// has not started yet, so that its kinds are unknown).
var ErrNotSyncer = errors.New("plugins: not a running syncer")

// ResyncJob is the state of a syncer's full resync.
type ResyncJob struct {
	// Run identifies the run; resync items carry it.
	Run string `json:"run"`
	// State is running or done.
	State string `json:"state"`
	// StartedAt and FinishedAt (once done).
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Listed is how many profiles were looked at, Published how many
	// subjects granting the plugin's purposes were queued to it; the
	// plugin's own status says how many it has delivered.
	Listed    int `json:"listed"`
	Published int `json:"published"`
}

// resyncState is a ResyncJob as stored: with where it has got to.
type resyncState struct {
	ResyncJob
	// Site is the index, in the plugin's sites, of the site being listed;
	// Cursor the last subject listed there (cleared once done).
	Site   int    `json:"site"`
	Cursor string `json:"cursor,omitempty"`
}

// Resync starts a full resync of syncer plugin and returns its job.
func (rt *Runtime) Resync(ctx context.Context, plugin string) (ResyncJob, error) {
	p := rt.procs[plugin]
	if p == nil {
		return ResyncJob{}, fmt.Errorf("%w: %q", ErrUnknownPlugin, plugin)
	}
	if _, m, _, _ := p.snapshot(); !slices.Contains(m.Kinds, sdk.KindSyncer) {
		return ResyncJob{}, fmt.Errorf("%w: %q", ErrNotSyncer, plugin)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.jobCtx == nil || rt.jobCtx.Err() != nil {
		return ResyncJob{}, ErrNotRunning
	}
	if rt.resyncing[plugin] {
		st, err := rt.loadResync(ctx, plugin)
		if err != nil {
			return ResyncJob{}, err
		}
		return st.ResyncJob, ErrResyncRunning
	}
	now := time.Now().UTC()
	st := &resyncState{ResyncJob: ResyncJob{
		Run:   ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String(),
		State: ResyncRunning, StartedAt: now.Truncate(time.Millisecond),
	}}
	if err := rt.saveResync(ctx, plugin, st); err != nil {
		return ResyncJob{}, err
	}
	rt.startResyncLocked(p, st)
	rt.log.Info("resync started", "plugin", plugin, "run", st.Run)
	return st.ResyncJob, nil
}

// ResyncStatus returns plugin's last resync, nil when there was none.
func (rt *Runtime) ResyncStatus(ctx context.Context, plugin string) (*ResyncJob, error) {
	if rt.procs[plugin] == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPlugin, plugin)
	}
	st, err := rt.loadResync(ctx, plugin)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &st.ResyncJob, nil
}

// resumeResync resumes p's resync if a stop interrupted it.
func (rt *Runtime) resumeResync(ctx context.Context, p *proc) {
	st, err := rt.loadResync(ctx, p.spec.Name)
	if err != nil || st.State != ResyncRunning {
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			rt.log.Warn("resync state not read", "plugin", p.spec.Name, "err", err)
		}
		return
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.jobCtx == nil || rt.jobCtx.Err() != nil || rt.resyncing[p.spec.Name] {
		return
	}
	rt.log.Info("resync resumed", "plugin", p.spec.Name, "run", st.Run, "listed", st.Listed)
	rt.startResyncLocked(p, st)
}

// startResyncLocked runs st in the background; rt.mu is held.
func (rt *Runtime) startResyncLocked(p *proc, st *resyncState) {
	if rt.resyncing == nil {
		rt.resyncing = map[string]bool{}
	}
	rt.resyncing[p.spec.Name] = true
	rt.jobs.Add(1)
	go func() {
		defer rt.jobs.Done()
		rt.runResync(rt.jobCtx, p, st)
		rt.mu.Lock()
		delete(rt.resyncing, p.spec.Name)
		rt.mu.Unlock()
	}()
}

// runResync lists and publishes until the job is done or ctx ends (the job
// then stays running, to be resumed).
func (rt *Runtime) runResync(ctx context.Context, p *proc, st *resyncState) {
	_, m, _, _ := p.snapshot()
	var sites []string
	for _, s := range rt.cfg.Sites {
		if matchAny(m.Filter.Sites, s) {
			sites = append(sites, s)
		}
	}
	for st.Site < len(sites) && ctx.Err() == nil {
		site := sites[st.Site]
		page, err := rt.cfg.Store.ListProfiles(ctx, site, st.Cursor, resyncPage)
		if err == nil && len(page) > 0 {
			var n int
			if n, err = rt.publishResync(ctx, p.spec.Name, st.Run, page, m.Purposes); err == nil {
				st.Listed += len(page)
				st.Published += n
				st.Cursor = page[len(page)-1].Subject
			}
		} else if err == nil {
			st.Site, st.Cursor = st.Site+1, ""
		}
		if err == nil {
			err = rt.saveResync(ctx, p.spec.Name, st)
		}
		if err != nil && ctx.Err() == nil {
			// NATS or the store unavailable: the page is listed and
			// published again (Nats-Msg-Id drops what got through).
			rt.log.Warn("resync page not done; retrying", "plugin", p.spec.Name, "err", err)
			rt.recover(ctx, err)
			sleep(ctx, 2*time.Second)
		}
	}
	if ctx.Err() != nil {
		return
	}
	st.State, st.FinishedAt, st.Cursor = ResyncDone, time.Now().UTC().Truncate(time.Millisecond), ""
	if err := rt.saveResync(context.WithoutCancel(ctx), p.spec.Name, st); err != nil {
		rt.log.Warn("resync end not recorded", "plugin", p.spec.Name, "err", err)
	}
	rt.log.Info("resync queued", "plugin", p.spec.Name, "run", st.Run, "listed", st.Listed, "published", st.Published)
}

// publishResync publishes a Resync item for every profile of page that
// grants purposes and returns how many.
func (rt *Runtime) publishResync(ctx context.Context, plugin, run string, page []*storage.Profile, purposes []string) (int, error) {
	if !rt.connected() {
		return 0, ErrBusDown
	}
	at := time.Now().UnixMilli()
	var futs []jetstream.PubAckFuture
	for _, prof := range page {
		if !grantsAll(prof.Purposes, purposes) {
			continue
		}
		data, err := proto.Marshal(&vigiev1.Resync{Site: prof.Site, Subject: prof.Subject, RunId: run, AtMs: at})
		if err != nil {
			return 0, err
		}
		msg := nats.NewMsg(streams.SyncSubject(plugin, prof.Site))
		msg.Data = data
		msg.Header.Set(nats.MsgIdHdr, "resync:"+run+":"+prof.Site+":"+prof.Subject)
		f, err := rt.cfg.JetStream.PublishMsgAsync(msg)
		if err != nil {
			return 0, err
		}
		futs = append(futs, f)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, fmt.Errorf("publish resync item: %w", err)
		case <-timeout.C:
			return 0, errors.New("publish resync item: timed out")
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return len(futs), nil
}

func (rt *Runtime) loadResync(ctx context.Context, plugin string) (*resyncState, error) {
	v, err := rt.cfg.Store.ResyncJob(ctx, plugin)
	if err != nil {
		return nil, err
	}
	st := &resyncState{}
	if err := json.Unmarshal(v, st); err != nil {
		return nil, fmt.Errorf("%w: resync job: %v", storage.ErrCorrupt, err)
	}
	return st, nil
}

func (rt *Runtime) saveResync(ctx context.Context, plugin string, st *resyncState) error {
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return rt.cfg.Store.PutResyncJob(ctx, plugin, v)
}
